"""Home: what this is, in plain words; the shipped models' sample grids; where to start."""

from __future__ import annotations

import json

import streamlit as st

from fmq import results, zoo
from fmq.data import DATASETS
from fmq.images import make_grid
from views import _shared as sh

HOME_SAMPLES = (9, 0, None, "heun", 8, 1.0)  # n, seed, class, solver, steps, guidance

st.title("Does an image generator survive 2-bit weights?")
st.markdown(
    """
An **image generator** here is a small neural network that turns random noise into a picture: a digit,
a piece of clothing, a face. It does so in a few dozen small steps, each one asking the network
*“which way should the picture move now?”* — that is **flow matching**.

The network is just a long list of numbers (its **weights**), each stored with 32 bits. **Quantization**
keeps only a handful of distinct values — with 2 bits, four — and replaces every weight by the nearest one.
The model becomes about 16 times smaller. The question is whether it still draws the same pictures.

How the four values are chosen matters a lot. Evenly spaced values (**uniform**) waste levels where few
weights are; **optimal transport** (OT) places them so that the quantized weights are distributed as much
like the originals as possible. This app lets you see the difference: the same noise goes into the
original (FP32) model and into each quantized copy, and the pictures are compared side by side.
"""
)

st.subheader("Where the difference shows")
st.markdown("At 2 bits most data sets turn to noise under *every* quantizer (MNIST is the exception); the "
            "ot-versus-uniform story is clearest at **3–4 bits**, where ot keeps the pictures and uniform starts "
            "to lose them. SSIM against FP32 from the shipped results (1 = the same pictures):")
contrast = []
for ref in zoo.shipped():
    found = results.shipped_results(ref.name, results.Wanted(methods=("ot", "uniform"), bits=(3, 4),
                                                             guidance=zoo.default_guidance(ref.name)))
    if found is None:
        continue
    ssim = {(r["method"], r["bits"]): r["ssim"] for r in found.rows}
    contrast.append({"data set": ref.title, **{f"{m} {b} bits": ssim.get((m, b)) for b in (3, 4)
                                               for m in ("ot", "uniform")}, "from": found.path.name})
if contrast:
    st.dataframe(contrast, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.2f") for c in contrast[0] if "bits" in c})
shown = [r for r in zoo.shipped() if r.name in ("mnist", "cifar10")]
for col, ref in zip(st.columns(max(1, len(shown))), shown):
    col.page_link("views/generate.py", label=f"See it: {ref.title}, ot against uniform at 4 bits",
                  icon=":material/compare:", query_params={"data": ref.name, "methods": "ot,uniform", "bits": "4"})

st.subheader("Where to start")
LINKS = [
    ("views/generate.py", "Generate", ":material/image:", "FP32 and 2-bit pictures from the same noise, side by side."),
    ("views/weights.py", "Weights", ":material/bar_chart:", "A layer's weights, each quantizer's levels over them."),
    ("views/fidelity.py", "Fidelity", ":material/show_chart:", "Similarity to FP32 against the number of bits."),
    ("views/trajectories.py", "Trajectories", ":material/timeline:", "How the paths from noise drift apart."),
    ("views/theory.py", "Theory", ":material/functions:", "The degradation bound against what was measured."),
    ("views/compression.py", "Compression", ":material/compress:", "Real bytes on disk; download a packed model."),
]
for row in (LINKS[:3], LINKS[3:]):
    for col, (page, label, icon, what) in zip(st.columns(3), row):
        col.page_link(page, label=label, icon=icon)
        col.caption(what)
st.caption("Every page follows the sidebar: data set, quantizers, bits, granularity, solver, samples, seed.")

st.subheader("The shipped models")
refs = {r.name: r for r in zoo.shipped()}
cols = st.columns(len(zoo.ZOO))
for col, name in zip(cols, zoo.ZOO):
    with col:
        ref = refs.get(name)
        st.markdown(f"**{ref.title if ref else DATASETS[name].title}**")
        grid = zoo.asset_path(name)
        if ref is None:
            st.caption("not shipped yet")
        elif grid.is_file():
            st.image(str(grid), width="stretch")
            if zoo.grid_note(name):
                st.caption(zoo.grid_note(name))
        else:  # no committed grid yet: draw a few samples live (cached, so only the first visitor waits)
            with st.spinner("Sampling…"):
                key, ck = sh.shipped_model(ref)
                run = sh.fp32_run(key, HOME_SAMPLES, ck)
            st.image(make_grid(run.images, nrow=3, scale=2), width="stretch")
            st.caption("live sample, heun × 8 steps")
st.caption("Pick a data set in the sidebar, then open **Generate**. "
           "Words used: **SSIM** (1 = the same picture) and **PSNR** (in dB; higher = closer).")

two_bits = [(n, zoo.REPO_ROOT / "assets" / "two_bits" / f"{n}.png") for n in zoo.ZOO]
two_bits = [(n, p) for n, p in two_bits if p.is_file()]
if two_bits:
    st.subheader("Two bits that work")
    st.markdown(
        "Plain 2-bit codebooks, even optimal ones, lose the pictures on every model here. **ot-mixed-cal** keeps "
        "them at the same storage: it gives each layer the bits its measured effect on the output asks for "
        "(averaging 2 bits per weight, codebooks included), then trains the codebooks to match the FP32 "
        "model's velocity on states from noise no evaluation uses. Same noise into all three models:")
    for tab, (_name, path) in zip(st.tabs([DATASETS[n].title for n, _ in two_bits]), two_bits):
        with tab:
            st.image(str(path), width="stretch")
            info = path.with_suffix(".json")
            if info.is_file():
                d = json.loads(info.read_text())
                st.caption(" · ".join(f"{m}: SSIM {d[m]['ssim']:.2f} at {d[m]['bits_per_weight']:.2f} bits/weight"
                                      for m in ("ot", "ot-mixed-cal") if m in d)
                           + f" · {d['n']} samples, seed {d['seed']}, Heun 20 steps")
    here = st.session_state.get("model_id", "mnist")
    here = here if here in zoo.ZOO else "mnist"  # an upload cannot ride in a link
    c1, c2 = st.columns(2)
    try_it = {"data": here, "methods": "ot,ot-mixed-cal", "bits": "2", "effort": "quick"}
    c1.page_link("views/generate.py", label="Try it: ot against ot-mixed-cal at 2 bits per weight",
                 icon=":material/image:", query_params=try_it,
                 help="The quick effort: about 40 s of calibration on two cores for MNIST, two minutes for the "
                      "colour sets, once per model; every page then reuses it.")
    c2.page_link("views/generate.py", label="Lower: ot-mixed-cal at 1.5 bits per weight",
                 icon=":material/trending_down:", query_params={**try_it, "budget": "1.5"},
                 help="The mixed budget may lie between whole widths: some layers get 1 bit, others more.")
