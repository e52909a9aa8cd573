"""Fidelity: SSIM and PSNR against bits per method, under either protocol.

*Generations* (ours): shipped results show at once; the sidebar's settings are computed live point by point
(cached), the curves growing as each point lands. *The paper's protocol*: the shipped velocity sweep, with
the paper's claimed numbers as markers beside the methods they are about (the paper's own quantizers)."""

from __future__ import annotations

import io
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fmq import results
from fmq.plots import ssim_range, ssim_values
from fmq.quant import BITS
from views import _shared as sh

CLAIM_SYMBOL = {"≈": "star", ">": "triangle-up", "<": "triangle-down"}
PROTOCOLS = {"generation": "What you see: generated pictures", "velocity": "The paper's number: its protocol"}
WHAT = {
    "generation": "Each point quantizes the whole model at that bit width, generates pictures from the same noise "
                  "as FP32 and measures how close they are (SSIM: 1 = identical; PSNR: higher = closer). "
                  "Bars: 95% intervals.",
    "velocity": "The paper's protocol, computed exactly as its code does: each quantized network predicts the "
                "velocity once, at t = 0 on the first 64 test images, and that raw output is compared with FP32's "
                "(11×11-window SSIM, PSNR with peak 1). It says how close the networks are on one input, not how "
                "close the pictures are.",
}

sett, key, ck, dataset = sh.page_model()
st.title("Fidelity: how many bits does it take?")
protocol = st.radio("Measure", list(PROTOCOLS), format_func=PROTOCOLS.get, horizontal=True, key="fidelity_protocol",
                    label_visibility="collapsed")
st.markdown(WHAT[protocol])
if not sh.need_methods(sett, key, ck):
    st.stop()

claims = [c for c in results.paper_claims(dataset) if c.get("protocol", "velocity") == protocol]
methods = list(sett.methods)
if protocol == "velocity":  # the paper's own quantizers, which its claims are about, beside the sidebar's
    methods += [m for m in dict.fromkeys(c["method"] for c in claims) if m not in methods]
    found = results.shipped_results(dataset, results.Wanted(methods=tuple(methods), protocol="velocity"))
else:
    found = sh.shipped_results(dataset, sett)  # none for an upload, whatever its metadata says
row_name = dataset or sh.model_refs().get(sett.model_id, "")  # what the CSV's dataset column says
shipped = pd.DataFrame(found.rows if found else [])
color = sh.method_color


def figure(metric: str, live: list[dict]) -> go.Figure:
    fig = go.Figure()
    for m in methods:
        if not shipped.empty and metric in shipped:
            s = shipped[shipped["method"] == m].sort_values("bits")
            if len(s):
                fig.add_trace(go.Scatter(x=s["bits"], y=s[metric], mode="lines+markers", name=f"{m} shipped",
                                         line={"color": color(m), "dash": "dot"}, marker={"symbol": "circle-open"}))
        pts = sorted((r for r in live if r["method"] == m), key=lambda r: r["bits"])
        if pts:
            fig.add_trace(go.Scatter(
                x=[r["bits"] for r in pts], y=[r[metric] for r in pts], mode="lines+markers", name=f"{m} live",
                line={"color": color(m)}, error_y={"type": "data", "symmetric": False,
                                                   "array": [r[f"{metric}_hi"] - r[metric] for r in pts],
                                                   "arrayminus": [r[metric] - r[f"{metric}_lo"] for r in pts]}))
    cl = [c for c in claims if c["metric"] == metric and c["method"] in methods]
    if cl:
        fig.add_trace(go.Scatter(
            x=[c["bits"] for c in cl], y=[c["value"] for c in cl], mode="markers", name="paper's claims",
            marker={"symbol": [CLAIM_SYMBOL.get(c.get("relation", "≈"), "star") for c in cl], "size": 14,
                    "color": "black", "line": {"color": "white", "width": 1}},
            text=[f"paper: {c['method']} {c.get('relation', '≈')} {c['value']}" for c in cl],
            hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(xaxis_title="bits per weight", yaxis_title=metric.upper() + (" (dB)" if metric == "psnr" else ""),
                      height=400, margin={"t": 30}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(tickvals=list(BITS), range=[0.6, 8.4])
    if metric == "ssim":
        fig.update_yaxes(range=ssim_range(ssim_values([*live, *shipped.to_dict("records")])))
    return fig


def claims_table() -> pd.DataFrame:
    """Each of the paper's claims beside what the shipped sweep measured at that point."""
    got = {(r["method"], r["bits"]): r for r in shipped.to_dict("records")} if not shipped.empty else {}
    out = []
    for c in claims:
        r = got.get((c["method"], c["bits"]))
        out.append({"method": c["method"], "bits": c["bits"], "measure": c["metric"].upper(),
                    "paper": f"{c['relation']} {c['value']:g}",
                    "measured here": None if r is None else round(float(r[c["metric"]]), 2 if c["metric"] == "ssim"
                                                                  else 1)})
    return pd.DataFrame(out)


live: list[dict] = []
c1, c2 = st.columns(2)
ph_ssim, ph_psnr = c1.empty(), c2.empty()
if protocol == "velocity":
    if found:
        st.caption(f"From the shipped sweep {found.describe().split(':')[0]}: per channel, every float tensor "
                   "quantized, as the paper does. The paper's own quantizers (ot-equal-mass is its OT) are drawn "
                   "beside the sidebar's.")
    else:
        st.info("No shipped results of the paper's protocol for this model. `python -m fmq sweep --protocol "
                "velocity` makes them.", icon=":material/info:")
else:
    if found:
        st.caption(f"Shipped results ({found.describe()}) are dotted. Live: {sett.describe()}.")
    elif not dataset:
        st.caption("An uploaded model: every point is computed live. The shipped results and the paper's claims "
                   "are about the shipped models, so they are not drawn here, whatever the file's metadata says.")
    skipped: list[str] = []
    if found and found.exact:
        st.success(f"{found.path.name} was made with these very settings: nothing to compute.")
    else:
        # bits outer: every curve grows at once; a calibrated method (minutes per width) only at the sidebar's bits
        # (a mixed one at its budget, which may lie between two widths)
        points = sorted([(m, b) for b in BITS for m in sett.methods if not sh.calibrated(m)]
                        + [(m, sett.bits_for(m)) for m in sett.methods if sh.calibrated(m)], key=lambda p: p[1])
        ph_ssim.plotly_chart(figure("ssim", []), key="fid_ssim_start")  # the shipped curves at once, live ones after
        ph_psnr.plotly_chart(figure("psnr", []), key="fid_psnr_start")
        bar = st.progress(0.0, text="Computing points… (change any setting to stop)")
        for i, (m, b) in enumerate(points):
            bar.progress(i / len(points), text=f"Point {i + 1} of {len(points)}: {m} at {sh.bits_text(b)} "
                                              "(change any setting to stop)")
            t0 = time.perf_counter()
            row, err = sh.safe(sh.fidelity_point, key, m, b, sett.granularity, sett.run_args(), row_name, ck,
                               sett.cal_for(m))
            if err:
                skipped.append(f"{m} at {sh.bits_text(b)}")
                continue
            live.append(row)
            if time.perf_counter() - t0 > 0.1:  # computed, not cached: let the curves grow (a fresh key replaces)
                ph_ssim.plotly_chart(figure("ssim", live), key=f"fid_ssim_{i}")
                ph_psnr.plotly_chart(figure("psnr", live), key=f"fid_psnr_{i}")
        bar.progress(1.0, text=f"{len(points)} points ({sett.describe()})")
        if skipped:
            st.caption("Not defined, so not drawn: " + ", ".join(skipped) + ".")
ph_ssim.plotly_chart(figure("ssim", live), key=f"fid_ssim_{protocol}")
ph_psnr.plotly_chart(figure("psnr", live), key=f"fid_psnr_{protocol}")

if protocol == "velocity" and claims and found:
    st.markdown("**The paper's claims, and what its own protocol gives on this model**")
    st.dataframe(claims_table(), hide_index=True)
table = pd.concat([shipped.assign(source="shipped"), pd.DataFrame(live).assign(source="live")], ignore_index=True)
table = table[[c for c in [*results.COLUMNS, "source"] if c in table] + [c for c in table if c not in results.COLUMNS
                                                                         and c != "source"]]
if not table.empty:
    st.dataframe(table, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in table.columns if table[c].dtype.kind == "f"})
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    st.download_button("Download CSV", buf.getvalue(), file_name=f"fidelity_{protocol}_{dataset or 'model'}.csv",
                       mime="text/csv")
if protocol == "velocity" and claims:
    st.caption("Black markers: the paper's reported numbers (★ ≈, ▲ more than, ▼ less than), measured on its own "
               "models with this protocol.")
elif results.paper_claims(dataset):
    st.caption("The paper's claims were measured with its own protocol, not on pictures: pick it above to see "
               "them beside ours.")
