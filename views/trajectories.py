"""Trajectories: snapshots of a few samples along t for FP32 and each quantizer; deviation against t."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from fmq import compare
from fmq.images import make_grid
from views import _shared as sh

SNAPSHOTS = 6  # at most this many columns per strip: t = 0 … 1

sett, key, ck, dataset = sh.page_model()
st.title("Trajectories: from noise to image")
st.caption(f"Every model starts from the same noise at t = 0 · {sett.describe()}")
st.markdown("Each row is one sample, each column a moment of the integration. A quantized model that stays "
            "close to the FP32 path ends at the same picture; one that drifts early ends somewhere else.")

with st.spinner("Sampling FP32…"):
    ref = sh.fp32_run(key, sett.run_args(), ck)
results = {}
if sh.need_methods(sett, key, ck):
    results = sh.method_results(key, sett, ck)


@st.fragment
def strips() -> None:
    """Its own fragment: choosing other samples redraws only the strips."""
    k = st.slider("Samples shown", 1, min(6, sett.n), min(3, sett.n), key="traj_count")
    idx = compare.even_snapshots(len(ref.times), most=SNAPSHOTS)  # evenly spaced times (0.25 apart at 8 steps)
    st.caption("t = " + " · ".join(f"{ref.times[i]:.2f}" for i in idx))
    runs = {"FP32": ref.trajectory,
            **{sh.quant_label(m, sett.bits_for(m)): r.run.trajectory for m, r in results.items()}}
    cols = st.columns(min(len(runs), 4))
    scale = max(1, 64 // ck.config.image_size)
    for i, (label, traj) in enumerate(runs.items()):
        # (T, N, C, H, W) -> rows = samples, columns = times
        snaps = traj[idx][:, :k].transpose(0, 1).reshape(-1, *traj.shape[2:])
        with cols[i % len(cols)]:
            st.markdown(f"**{label}**")
            st.image(make_grid(snaps, nrow=len(idx), scale=scale), width="stretch")


strips()

st.subheader("Deviation from the FP32 path")
if results:
    fig = go.Figure()
    for m, r in results.items():
        fig.add_trace(go.Scatter(x=r.scores.times, y=r.scores.deviation, mode="lines+markers", name=m,
                                 line={"color": sh.method_color(m)}))
    fig.update_layout(xaxis_title="t", yaxis_title="mean ‖x_t − x̂_t‖ (ℓ2 over pixels)", height=380,
                      margin={"t": 30}, legend_title=f"{sett.bits}-bit")
    st.plotly_chart(fig, key="deviation_chart")
    st.caption("The deviation starts at 0 (same noise) and grows as the quantized velocity field pushes the "
               "sample elsewhere; its value at t = 1 is the distance between the final pictures.")
else:
    st.caption("Pick quantizers in the sidebar to see how far their paths drift from FP32.")
