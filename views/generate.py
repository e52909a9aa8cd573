"""Generate: FP32 and one grid per quantizer from the same noise; SSIM/PSNR; |diff| heat maps; timings."""

from __future__ import annotations

import math
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import hex_to_rgb, sequential

from fmq.images import make_grid
from views import _shared as sh

PER_ROW = 4  # grids per row of columns; more methods wrap onto further rows

# Inferno as rgb() strings: Streamlit's chart frontend rewrites the hex colours #000001..#000020 (its theme
# placeholders) even with theme=None, and Inferno starts at #000004, which turned zero differences purple.
INFERNO = [[i / (len(sequential.Inferno) - 1), "rgb({}, {}, {})".format(*hex_to_rgb(c))]
           for i, c in enumerate(sequential.Inferno)]

sett, key, ck, dataset = sh.page_model()
st.title("Generate: FP32 against quantized")
st.caption(f"Same noise into every model · {sett.describe()}")

scale = max(1, 96 // ck.config.image_size)  # draw each sample about 96 px wide whatever the data set
nrow = int(math.ceil(math.sqrt(sett.n)))
methods = list(sett.methods) if sh.need_methods(sett, key, ck) else []
labels = ["FP32", *(sh.quant_label(m, sett.bits_for(m)) for m in methods)]
# at 32 and 64 samples fewer grids share a row, so each sample keeps about 50 px on a laptop screen; rows are
# filled evenly (3 grids take 3 columns, not 3 of 4), so no part of a row stays empty
per_row = PER_ROW if sett.n <= 16 else 3
cols = math.ceil(len(labels) / math.ceil(len(labels) / per_row))
steps_total = 1 + 2 * len(methods)
status = st.status(f"Sampling FP32 (step 1 of {steps_total})…", expanded=False)
slots = []
for start in range(0, len(labels), cols):
    slots.extend(st.columns(cols)[: len(labels[start:start + cols])])

t_page = time.perf_counter()
with slots[0]:
    st.markdown("**FP32** (reference)")
    ref = sh.fp32_run(key, sett.run_args(), ck)
    st.image(make_grid(ref.images, nrow, scale=scale), width="stretch")
    st.caption(f"{ref.nfe} evaluations · {ref.seconds:.2f} s")

results = {}
for i, (slot, method, label) in enumerate(zip(slots[1:], methods, labels[1:])):
    with slot:
        st.markdown(f"**{label}**")
        status.update(label=f"Quantizing with {method} at {sh.bits_text(sett.bits_for(method))} (step {2 + 2 * i} of "
                            f"{steps_total}; change any setting to stop)…")
        _, err = sh.safe(sh.quantized, key, method, sett.bits_for(method), sett.granularity, ck.model)
        if not err:
            status.update(label=f"Sampling with {method} (step {3 + 2 * i} of {steps_total})…")
            res, err = sh.safe(sh.method_run, key, method, sett.bits_for(method), sett.granularity, sett.run_args(), ck,
                               sett.cal_for(method))
        if err:
            st.warning(err, icon=":material/warning:")
            continue
        results[method] = res
        st.image(make_grid(res.run.images, nrow, scale=scale), width="stretch")
        s = res.scores.summary()
        a, b = st.columns(2)
        a.metric("SSIM", f"{s['ssim']:.3f}", help=f"95% interval {s['ssim_lo']:.3f}–{s['ssim_hi']:.3f}")
        b.metric("PSNR dB", f"{s['psnr']:.1f}", help=f"95% interval {s['psnr_lo']:.1f}–{s['psnr_hi']:.1f} dB")
        st.caption(f"quantize {res.quant_seconds:.2f} s · sample {res.run.seconds:.2f} s")
status.update(label=f"{steps_total} steps done in {time.perf_counter() - t_page:.1f} s "
                    "(cached results come back instantly)", state="complete")


if results:
    st.subheader("Where the pictures differ")

    @st.fragment
    def heat_map() -> None:
        """Its own fragment: picking another method redraws only this part of the page."""
        method = st.selectbox("Method", list(results), key="heat_method")
        d = results[method].scores.absdiff  # (N, H, W) in [0, 2]
        n, h, w = d.shape
        rows = math.ceil(n / nrow)
        grid = np.full((rows * (h + 1) - 1, nrow * (w + 1) - 1), np.nan)  # NaN gaps draw as blank lines
        for i in range(n):
            r, c = divmod(i, nrow)
            grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = d[i]
        # one colour scale for every method, so brightness compares across them
        top = max(0.05, *(float(r.scores.absdiff.max()) for r in results.values()))
        fig = go.Figure(go.Heatmap(z=grid, colorscale=INFERNO, zmin=0, zmax=top, colorbar={"title": "|x − x̂|"},
                                   hovertemplate="|diff| %{z:.3f}<extra></extra>"))
        bare = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "", "showline": False}
        fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", **bare)
        fig.update_xaxes(constrain="domain", **bare)
        fig.update_layout(height=420, plot_bgcolor="white", margin={"l": 10, "r": 10, "t": 30, "b": 10},
                          title=f"|FP32 − {sh.quant_label(method, sett.bits_for(method))}| per pixel, same layout as "
                                "the grids; "
                                "one colour scale for every method")
        st.plotly_chart(fig, key="heat_chart", theme=None)  # keep the heat colour scale as drawn

    heat_map()

    st.subheader("Per image")
    table = {"image": np.arange(sett.n)}
    for m, res in results.items():
        table[f"SSIM {m}"] = res.scores.ssim
        table[f"PSNR {m} (dB)"] = res.scores.psnr
    st.dataframe(table, hide_index=True, height=min(400, 36 * (sett.n + 1)),
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in table if k != "image"})
