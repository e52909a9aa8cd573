"""Compression: FP32 bytes, packed bytes (plain and entropy-coded), bits per weight (codebooks included), ratio,
index entropy and the packed runtime's resident weight memory per method and bits; download of the packed model."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from fmq.quant import BITS
from views import _shared as sh

sett, key, ck, dataset = sh.page_model()
st.title("Compression: real bytes on disk")
st.markdown("Every size here is a file actually written: the packed model holds the bit-packed indices, every "
            "codebook (a level table, or a grid's parameters for uniform, log2 and pwl), and the tensors kept in "
            "FP32 (biases, norms). *Bits per weight* divides all of it by the number of parameters, so it is above "
            "the nominal bit width by the codebooks' share: small at 2 bits, where a level table has 4 fp16 levels, "
            "large at 8 bits for the methods that keep 256. *Entropy-coded* is the same file with each layer's "
            "indices ANS-coded (about *index entropy* bits per weight instead of the width) and its level tables and "
            "kept tensors compressed losslessly. *In memory* is what the packed runtime keeps while it samples: "
            "indices and codebooks, each weight rebuilt only while its layer runs.")
if not sh.need_methods(sett, key, ck):
    st.stop()

all_bits = st.toggle("Every bit width from 1 to 8", value=False, key="comp_all_bits",
                     help="Off: only the sidebar's bit width (fast). On: packs each method at every width.")
widths = list(BITS) if all_bits else [sett.bits]
# a calibrated method takes minutes per width: only at the sidebar's
points = [(m, b) for m in sett.methods for b in (widths if not sh.calibrated(m) else [sett.bits_for(m)])]
rows = []
bar = st.progress(0.0, text="Packing…") if len(points) > 1 else None
for i, (m, b) in enumerate(points):
    if bar is not None:
        bar.progress(i / len(points), text=f"Packing {m} at {sh.bits_text(b)} ({i + 1}/{len(points)})")
    with st.spinner(f"Packing {m} at {sh.bits_text(b)}…"):
        got, err = sh.safe(sh.packed, key, m, b, sett.granularity, dataset, ck.model, sett.cal_for(m))
    if err:
        st.warning(f"**{m}** at {sh.bits_text(b)}: {err}", icon=":material/warning:")
    else:
        rows.append(got[0])
if bar is not None:
    bar.empty()
if not rows:
    st.stop()

table = [{"method": r.method, "bits": r.bits, "FP32 bytes": r.fp32_bytes, "packed bytes": r.packed_bytes,
          "bits per weight": r.bits_per_weight, "ratio": r.ratio, "entropy-coded bytes": r.entropy_bytes,
          "entropy-coded ratio": r.entropy_ratio, "index entropy": r.index_entropy,
          "in memory": r.resident_bytes} for r in rows]
at_bits = [r for r in rows if r.bits == sett.bits_for(r.method)]
cols = st.columns(max(1, len(at_bits)))
for col, r in zip(cols, at_bits):
    col.metric(sh.quant_label(r.method, r.bits), f"{r.ratio:.1f}× smaller",
               help=f"{r.fp32_bytes:,} → {r.packed_bytes:,} bytes")
    col.caption(f"{r.packed_bytes / 1024:.0f} KiB · {r.bits_per_weight:.2f} bits/weight  \n"
                f"entropy-coded {r.entropy_ratio:.1f}× · {r.resident_bytes / 1024:.0f} KiB in memory "
                f"(FP32: {r.fp32_resident_bytes / 1024:.0f} KiB)")
st.dataframe(table, hide_index=True, column_config={
    "FP32 bytes": st.column_config.NumberColumn(format="localized"),
    "packed bytes": st.column_config.NumberColumn(format="localized"),
    "bits per weight": st.column_config.NumberColumn(format="%.3f"),
    "ratio": st.column_config.NumberColumn(format="%.2f×"),
    "entropy-coded bytes": st.column_config.NumberColumn(format="localized"),
    "entropy-coded ratio": st.column_config.NumberColumn(format="%.2f×"),
    "index entropy": st.column_config.NumberColumn(format="%.3f bits", help="empirical entropy of the indices, "
                                                   "mean over layers weighted by size"),
    "in memory": st.column_config.NumberColumn(format="localized", help="weight bytes the packed runtime keeps "
                                               f"(the FP32 model: {rows[0].fp32_resident_bytes:,})")})
with st.expander("Index entropy of each layer beside its width"):
    pick = st.selectbox("Method", [f"{r.method} · {r.bits}-bit" for r in rows], key="comp_layers")
    chosen = rows[[f"{r.method} · {r.bits}-bit" for r in rows].index(pick)] if pick else rows[0]
    st.dataframe(chosen.layers, hide_index=True, column_config={
        "entropy": st.column_config.NumberColumn(format="%.3f bits")})

top = rows[0].fp32_bytes / 1024
# one width: labels fit across the bars; every width: bars are narrow, so the labels stand upright
angle = 0 if len(widths) == 1 else -90
fig = go.Figure(go.Bar(x=["FP32"], y=[top], name="FP32", marker_color="#9e9e9e", cliponaxis=False,
                       text=[f"{top:,.0f} KiB"], textposition="outside", textangle=0, constraintext="none"))
for m in sett.methods:
    r = sorted((x for x in rows if x.method == m), key=lambda x: x.bits)
    fig.add_trace(go.Bar(x=[f"{x.bits}-bit" for x in r], y=[x.packed_bytes / 1024 for x in r], name=m,
                         marker_color=sh.method_color(m), textposition="outside", textangle=angle,
                         cliponaxis=False, constraintext="none", text=[f"{x.packed_bytes / 1024:,.0f}" for x in r]))
# headroom above the FP32 bar keeps its label inside the figure
fig.update_layout(barmode="group", yaxis_title="KiB on disk", height=420, margin={"t": 40},
                  yaxis_range=[0, top * 1.15], font={"size": 12})
st.plotly_chart(fig, key="comp_chart")


@st.fragment
def download() -> None:
    """Its own fragment: choosing what to download does not repack or redraw the page."""
    c1, c2 = st.columns([2, 3])
    m = c1.selectbox("Packed model to download", sorted({r.method for r in at_bits}), key="comp_dl_method")
    if m is None:
        return
    _, data = sh.packed(key, m, sett.bits_for(m), sett.granularity, dataset, ck.model, sett.cal_for(m))
    c2.download_button(f"Download {sh.quant_label(m, sett.bits_for(m))} ({len(data) / 1024:.0f} KiB)", data,
                       file_name=f"{dataset or 'model'}-{m}-{sett.bits_for(m):g}bit.fmq.safetensors",
                       mime="application/octet-stream", key="comp_dl")
    c2.caption("Run it packed with `python -m fmq sample --packed FILE`, or `fmq.packed.packed_model(path)`.")


download()
