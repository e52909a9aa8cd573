"""Fidelity: SSIM and PSNR against bits per method. Shipped results show at once; the sidebar's settings are
computed live point by point (cached), the curves growing as each point lands; the paper's claims as markers."""

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

sett, key, ck, dataset = sh.page_model()
st.title("Fidelity: how many bits does it take?")
st.markdown("Each point quantizes the whole model at that bit width, generates from the same noise as FP32 and "
            "measures how close the pictures are (SSIM: 1 = identical; PSNR: higher = closer). Bars: 95% intervals.")
if not sh.need_methods(sett):
    st.stop()

found = sh.shipped_results(dataset, sett)  # none for an upload, whatever its metadata says
row_name = dataset or sh.model_refs().get(sett.model_id, "")  # what the CSV's dataset column says
shipped = pd.DataFrame(found.rows if found else [])
claims = [c for c in results.paper_claims(dataset) if c["method"] in sett.methods]


def figure(metric: str, live: list[dict]) -> go.Figure:
    fig = go.Figure()
    for m in sett.methods:
        color = sh.method_color(m)
        if not shipped.empty and metric in shipped:
            s = shipped[shipped["method"] == m].sort_values("bits")
            if len(s):
                fig.add_trace(go.Scatter(x=s["bits"], y=s[metric], mode="lines+markers", name=f"{m} shipped",
                                         line={"color": color, "dash": "dot"}, marker={"symbol": "circle-open"}))
        pts = sorted((r for r in live if r["method"] == m), key=lambda r: r["bits"])
        if pts:
            fig.add_trace(go.Scatter(
                x=[r["bits"] for r in pts], y=[r[metric] for r in pts], mode="lines+markers", name=f"{m} live",
                line={"color": color}, error_y={"type": "data", "symmetric": False,
                                                "array": [r[f"{metric}_hi"] - r[metric] for r in pts],
                                                "arrayminus": [r[metric] - r[f"{metric}_lo"] for r in pts]}))
    cl = [c for c in claims if c["metric"] == metric]
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


if found:
    st.caption(f"Shipped results ({found.describe()}) are dotted. Live: {sett.describe()}.")
elif not dataset:
    st.caption("An uploaded model: every point is computed live. The shipped results and the paper's claims are "
               "about the shipped models, so they are not drawn here, whatever the file's metadata says.")
c1, c2 = st.columns(2)
ph_ssim, ph_psnr = c1.empty(), c2.empty()

live: list[dict] = []
skipped: list[str] = []
if found and found.exact:
    st.success(f"{found.path.name} was made with these very settings: nothing to compute.")
else:
    points = [(m, b) for b in BITS for m in sett.methods]  # bits outer: every curve grows at once
    ph_ssim.plotly_chart(figure("ssim", []), key="fid_ssim_start")  # the shipped curves at once, live ones after
    ph_psnr.plotly_chart(figure("psnr", []), key="fid_psnr_start")
    bar = st.progress(0.0, text="Computing points… (change any setting to stop)")
    for i, (m, b) in enumerate(points):
        bar.progress(i / len(points), text=f"Point {i + 1} of {len(points)}: {m} at {sh.bits_text(b)} "
                                          "(change any setting to stop)")
        t0 = time.perf_counter()
        row, err = sh.safe(sh.fidelity_point, key, m, b, sett.granularity, sett.run_args(), row_name, ck)
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
ph_ssim.plotly_chart(figure("ssim", live), key="fid_ssim")
ph_psnr.plotly_chart(figure("psnr", live), key="fid_psnr")

table = pd.concat([shipped.assign(source="shipped"), pd.DataFrame(live).assign(source="live")], ignore_index=True)
table = table[[c for c in [*results.COLUMNS, "source"] if c in table] + [c for c in table if c not in results.COLUMNS
                                                                         and c != "source"]]
if not table.empty:
    st.dataframe(table, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in table.columns if table[c].dtype.kind == "f"})
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    st.download_button("Download CSV", buf.getvalue(), file_name=f"fidelity_{dataset or 'model'}.csv",
                       mime="text/csv")
if claims:
    st.caption("Black markers: the paper's reported numbers (★ ≈, ▲ more than, ▼ less than). "
               "They were measured on the paper's own models and protocol, so expect the shape, not the values.")
