"""Theory: the degradation bound (fmq.bounds) against the measured deviation, per method."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from fmq.sampling import FIXED_STEP_ORDER
from views import _shared as sh

sett, key, ck, dataset = sh.page_model()
st.title("Theory: how far can a quantized flow drift?")
st.markdown(
    r"""
The quantized velocity field $\hat v$ differs from the FP32 one $v$ by some $\varepsilon$ along the path.
If $v$ is $L$-Lipschitz in $x$, a discrete Grönwall argument bounds the gap between the two trajectories
started from the same noise, step by step: $e_{k+1} \le \Lambda\,e_k + \delta_k$ with
$\Lambda = \sum_{j \le p} (hL)^j/j!$ for a solver of order $p$, so $e_N \le \varepsilon\,(e^{L}-1)/L$.
Fewer bits give a larger $\varepsilon$; a codebook closer to the weights (lower $W_2$) gives a smaller one.
"""
)
if not sh.need_methods(sett, key, ck):
    st.stop()

results = sh.method_results(key, sett, ck)

bounds: dict = {}
if sett.solver not in FIXED_STEP_ORDER:
    st.info(f"The bound is stated for fixed-step solvers; {sett.solver} shows the measured deviation only.",
            icon=":material/info:")
else:
    with st.status(f"Computing the bound on {min(sett.n, sh.BOUND_SAMPLES)} samples…", expanded=False) as status:
        for m in results:
            status.update(label=f"Bound for {m} ({len(bounds) + 1}/{len(results)})…")
            bounds[m] = sh.bound_report(key, m, sett.bits_for(m), sett.granularity, sett.run_args(), ck,
                                        sett.cal_for(m))
        status.update(label=f"Bound computed on {min(sett.n, sh.BOUND_SAMPLES)} samples", state="complete")

def positive(t: list[float], y: list[float]) -> tuple[list[float], list[float]]:
    """Drop t = 0 (both paths start from the same noise, so 0) when the axis is logarithmic."""
    keep = [i for i, v in enumerate(y) if v > 0 or not bounds]
    return [t[i] for i in keep], [y[i] for i in keep]


fig = go.Figure()
for m, r in results.items():
    color = sh.method_color(m)
    x, y = positive(list(r.scores.times), [float(v) for v in r.scores.deviation])
    # one solver step leaves one point after t = 0: draw points, since a line needs two
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if len(x) > 1 else "markers", name=f"{m} measured",
                             line={"color": color}, marker={"size": 7 if len(x) > 1 else 11}))
    if m in bounds:
        b = bounds[m]
        x, y = positive(list(b.times), b.bound_path_estimate.max(dim=0).values.tolist())
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines" if len(x) > 1 else "markers", name=f"{m} bound (estimate)",
                                 line={"color": color, "dash": "dash"},
                                 marker={"color": color, "symbol": "diamond-open", "size": 13}))
fig.update_layout(xaxis_title="t", yaxis_title="‖x_t − x̂_t‖ (ℓ2 over pixels)", height=440, margin={"t": 30},
                  legend_title=f"{sett.bits}-bit, {sh.gran_text(sett.granularity)}")
if bounds:
    fig.update_yaxes(type="log")
st.plotly_chart(fig, key="theory_chart")
if len(results) and len(next(iter(results.values())).scores.times) <= 2:
    st.caption("With one solver step the paths are only compared at t = 0 and t = 1: more steps draw the curves.")
if bounds:
    st.caption("Solid: measured mean deviation over all samples. Dashed: the a-posteriori estimate of the bound "
               f"(measured step defects, local Lipschitz constants), worst of {min(sett.n, sh.BOUND_SAMPLES)} "
               "samples; it should lie above what was measured.")


def fmt(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:.3g}"


rows = []
for m, r in results.items():
    row = {"method": m, "measured at t=1": float(r.scores.deviation[-1]), "SSIM": r.scores.summary()["ssim"]}
    if m in bounds:
        s = bounds[m].summary()
        row.update({"bound, estimate": fmt(s["bound_a_posteriori_estimate"]),
                    "bound, rigorous": fmt(s["bound_a_posteriori"]),
                    "a priori (weights only)": fmt(s["bound_a_priori"]),
                    "ε max": fmt(s["eps_max"]), "local L max": fmt(s["lip_local_max"])})
    rows.append(row)
st.dataframe(rows, hide_index=True)
if bounds and any(not math.isfinite(b.summary()["bound_a_posteriori"]) for b in bounds.values()):
    st.caption("∞: the rigorous bounds use a global Lipschitz constant of the whole UNet (a product of layer norms), "
               "which is astronomically large; the estimate uses the Lipschitz constant measured along the path.")
