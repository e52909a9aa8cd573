"""Weights: one layer's FP32 histogram with each method's codebook levels drawn over it; W2 and MSE per
method; the layer-by-layer W2 of the whole model."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fmq import layerview
from fmq.methods import method_spec
from views import _shared as sh

sett, key, ck, dataset = sh.page_model()
st.title("Weights: where the levels go")
st.markdown("The grey histogram is how one layer's FP32 weights are spread. Each coloured set of lines is the "
            f"handful of values ({2 ** int(sett.bits)} at {sh.bits_text(sett.bits)}; a mixed method's width varies by "
            "layer) a method keeps; every weight is replaced by its nearest line. Good levels sit where the weights "
            "are.")
if not sh.need_methods(sett, key, ck):
    st.stop()

with st.spinner("Quantizing…"):
    methods = tuple(sh.usable_methods(key, sett, ck))
if not methods:
    st.stop()
layers = layerview.weight_layers(ck.model, sh.quant_config(methods[0], sett.bits, sett.granularity))
shapes = dict(layers)


@st.fragment
def layer_panel() -> None:
    """Its own fragment: picking a layer or channel redraws only this panel, not the whole-model chart."""
    c1, c2 = st.columns([3, 2])
    biggest = max(range(len(layers)), key=lambda i: math.prod(layers[i][1]))  # the most telling histogram
    name = c1.selectbox("Layer", list(shapes), index=biggest, key="weights_layer",
                        format_func=lambda n: f"{n}  {tuple(shapes[n])}")
    count = layerview.slice_count(shapes[name], sett.granularity)
    index = 0
    if count > 1:
        what = "Output channel" if sett.granularity == "channel" else "Group"
        index = c2.slider(what, 0, count - 1, 0, key=f"weights_slice_{sett.granularity}")
    else:
        c2.caption("One codebook for the whole tensor (tensor granularity).")
    view = sh.layer_view(key, name, methods, sett.bits, sett.granularity, index, ck.model, sett.cal_for(*methods),
                         sett.budget)

    fig = go.Figure(go.Histogram(x=view.values, nbinsx=min(120, max(20, view.values.size // 8)),
                                 name="FP32 weights", marker_color="rgba(120,120,120,0.55)"))
    counts, _ = np.histogram(view.values, bins=min(120, max(20, view.values.size // 8)))
    top = float(counts.max()) * 1.08
    for i, (m, lv) in enumerate(view.levels.items()):
        xs = [v for lvl in lv for v in (lvl, lvl, None)]
        ys = [v for _ in lv for v in (0.0, top * (1 - 0.06 * i), None)]
        start = m in view.starts  # plain OT at a calibrated codebook's own width: where that codebook started
        label = f"{m} ({len(lv)} levels)" if not start else \
            f"plain ot, {view.bits[m]}-bit: start of {', '.join(view.starts[m])}"
        if not start and sh.calibrated(m) and view.bits[m] != sett.bits:
            label = f"{m} ({len(lv)} levels: {sh.bits_text(view.bits[m])} on this layer)"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label,
                                 line={"color": sh.method_color("ot" if start else m), "width": 1.5 if start else 2.5,
                                       "dash": "dot" if start else "solid"}))
    where = "" if sett.granularity == "tensor" else f", {sett.granularity.split(':')[0]} {index}"
    widths = sorted(set(view.bits.values()))
    fig.update_layout(xaxis_title="weight value", yaxis_title="count", height=420, bargap=0.02,
                      title=f"{name}{where}: {view.values.size:,} weights, "
                            f"{'/'.join(map(str, widths))}-bit codebooks",
                      margin={"t": 50}, legend={"orientation": "h", "y": -0.2})
    st.plotly_chart(fig, key="weights_hist")
    st.dataframe([{"method": m, "bits": view.bits[m], "levels": len(view.levels[m]), "W2": view.w2[m],
                   "MSE": view.mse[m]} for m in view.levels], hide_index=True,
                 column_config={"W2": st.column_config.NumberColumn(format="%.2e"),
                                "MSE": st.column_config.NumberColumn(format="%.2e")})


layer_panel()

st.subheader("W2 layer by layer, whole model")
with st.spinner("Quantizing the whole model…"):
    rows = sh.layer_rows(key, methods, sett.bits, sett.granularity, ck.model, sett.cal, sett.budget)
mixed = [m for m in methods if method_spec(m).mixed]
fig = go.Figure()
for m in methods:
    r = [x for x in rows if x["method"] == m]
    fig.add_trace(go.Scatter(x=[x["index"] for x in r], y=[x["w2"] for x in r], mode="lines+markers", name=m,
                             text=[x["layer"] for x in r], line={"color": sh.method_color(m)},
                             hovertemplate="%{text}<br>W2 %{y:.2e}<extra>" + m + "</extra>"))
budget = f", mixed {sett.bits_for(mixed[0]):g} bits/weight" if mixed else ""
fig.update_layout(xaxis_title="layer (input → output)", yaxis_title="W2(FP32, quantized)", yaxis_type="log",
                  height=380, margin={"t": 30},
                  legend_title=f"{sett.bits}-bit{budget}, {sh.gran_text(sett.granularity)}")
fig.update_yaxes(dtick="D2", tickformat=".1e")  # labels at 1, 2 and 5 per decade, not a digit at every line
st.plotly_chart(fig, key="weights_layers")
st.caption("Lower is better: W2 is the optimal-transport distance between a layer's FP32 weights and their "
           "quantized values. OT quantization minimises it by construction; calibrated methods trade some of it for "
           "a smaller error in what the model outputs.")

if mixed:
    st.subheader("Bits per layer under the budget")
    fig = go.Figure()
    for m in mixed:
        r = [x for x in rows if x["method"] == m]
        fig.add_trace(go.Bar(x=[x["index"] for x in r], y=[x["bits"] for x in r], name=m,
                             text=[x["layer"] for x in r], textposition="none", marker_color=sh.method_color(m),
                             customdata=[x["numel"] for x in r],
                             hovertemplate="%{text}<br>%{y} bits · %{customdata:,} weights<extra>" + m + "</extra>"))
    fig.update_layout(barmode="group", xaxis_title="layer (input → output)", yaxis_title="bits per weight (index)",
                      height=320, margin={"t": 30}, legend={"orientation": "h", "y": -0.3})
    fig.update_yaxes(dtick=1)
    st.plotly_chart(fig, key="weights_bits")
    st.caption(f"A mixed method spends an average of {sett.bits_for(mixed[0]):g} bits per weight (codebooks "
               "included) where the measured effect of each layer on the velocity says they matter: the stem, the time "
               "embedding and the output get many bits, the low-resolution middle as few as one.")
