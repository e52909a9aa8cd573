"""fmq app: st.navigation over the pages in views/, and the sidebar every page shares (kept in session state).

The pages live in views/, not pages/: Streamlit treats a folder named pages/ as an old-style multipage app
until app.py has run once in the process, so the first visitor of a fresh server who opens a deep link
(/generate) would get the page without app.py, and a page switch that resets the sidebar's widgets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from fmq import compare, zoo
from fmq.checkpoint import CheckpointError
from fmq.methods import METHODS
from fmq.models import count_parameters
from fmq.quant import BITS
from fmq.sampling import SOLVER_TABLE, evaluations
from views import _link
from views import _shared as sh

# a local icon: a Material icon name as page_icon makes the browser fetch it from fonts.gstatic.com
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"  # a gradient and its 2-bit copy
st.set_page_config(page_title="fmq: low-bit flow matching", page_icon=str(ICON), layout="wide")
sh.torch_threads()

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/generate.py", title="Generate", icon=":material/image:"),
    st.Page("views/weights.py", title="Weights", icon=":material/bar_chart:"),
    st.Page("views/fidelity.py", title="Fidelity", icon=":material/show_chart:"),
    st.Page("views/trajectories.py", title="Trajectories", icon=":material/timeline:"),
    st.Page("views/theory.py", title="Theory", icon=":material/functions:"),
    st.Page("views/compression.py", title="Compression", icon=":material/compress:"),
]
DEFAULT_METHODS = ("ot", "uniform")


def _upload_box() -> None:
    """Bring your own model: validate the file once, keep its bytes in this session only."""
    # open while a file is in it, so a rejection message is not hidden in a folded box
    with st.sidebar.expander("Bring your own model", expanded=st.session_state.get("upload") is not None):
        f = st.file_uploader(
            "An fmq checkpoint (.safetensors)", type=["safetensors"], key="upload",
            help=f"A file written by `python -m fmq train`; at most {zoo.MAX_UPLOAD_BYTES // 2**20} MB.",
        )
        if f is None:
            return
        data = f.getvalue()
        uploads = st.session_state.setdefault(sh.UPLOADS, {})
        sha = hashlib.sha256(data).hexdigest()
        if sha in uploads:  # validated on an earlier run of this session
            ck = sh.current_model(sh.settings())[1] if st.session_state.get("model_id") == f"upload:{sha}" else None
        else:
            try:
                ck, sha = zoo.load_upload(data, f.name)
            except CheckpointError as e:
                kept = sh.model_refs().get(st.session_state.get("model_id", ""))
                st.error(f"That file can't be used: {e}." + (f" **{kept}** stays selected." if kept else ""))
                return
            uploads.clear()  # one upload per session keeps memory bounded
            uploads[sha] = (f.name, data)
            st.session_state["model_id"] = f"upload:{sha}"
        if ck is None:
            return
        c = ck.config
        st.success(f"{f.name}: {c.image_size}×{c.image_size}×{c.in_channels}, "
                   f"{'conditional' if c.conditional else 'unconditional'}")


def method_help(methods: list[str]) -> str:
    """One line per quantizer, from the registry (fmq.methods), for the picker's tooltip."""
    lines = [f"- **{m}**: {METHODS[m].summary}" + (" *(the paper's variant)*" if METHODS[m].paper else "")
             for m in methods]
    return "Each is compared with the FP32 model.\n\n" + "\n".join(lines)


def sidebar(page: str) -> None:
    side = st.sidebar
    s = st.session_state
    _upload_box()
    models = sh.model_refs()
    if not models:
        side.error("No checkpoints found in checkpoints/. Train one with `python -m fmq train` or upload one.")
        return
    methods = compare.method_names()
    _link.read_link(models, methods, page)  # a shared link's settings: a session's first run, an in-app link
    for k, v in _link.DEFAULTS.items():
        s.setdefault(k, v)
    s.setdefault("methods", [m for m in DEFAULT_METHODS if m in methods])
    if s.get("model_id") not in models:
        s["model_id"] = next(iter(models))
    _link.show_problems()
    side.selectbox("Data set", list(models), key="model_id", format_func=models.get)

    side.multiselect("Quantizers", methods, key="methods", help=method_help(methods))
    side.slider("Bits per weight", BITS[0], BITS[-1], key="bits",
                help="Index bits per weight. For a mixed method (ot-mixed, ot-mixed-cal) the average budget in bits "
                     "per weight, codebooks included: each layer gets its own width.")
    if any(METHODS[m].mixed for m in s.get("methods", ()) if m in METHODS):
        s.setdefault("budget", sh.SAME_AS_BITS)
        side.selectbox("Mixed budget (bits/weight)", [sh.SAME_AS_BITS, *sh.BUDGETS], key="budget",
                       format_func=lambda b: b if isinstance(b, str) else f"{b:g}",
                       help="The average bits per weight, codebooks included, of the mixed methods (ot-mixed, "
                            "ot-mixed-cal), which may lie between whole widths: 1.5 gives some layers 1 bit and others "
                            "2 or more. The other methods keep the bit slider's width.")
    if any(METHODS[m].calibrated for m in s.get("methods", ()) if m in METHODS):
        s.setdefault("cal_effort", "standard")
        side.selectbox("Calibration effort", list(sh.CALIB_EFFORT), key="cal_effort",
                       help="Refinement steps of the calibrated methods (quick 100, standard 200, thorough 400): "
                            "more steps, closer to FP32, longer wait (README: SSIM against seconds). Calibration "
                            "runs once per model and setting; every page then reuses it.")
    c1, c2 = side.columns(2)
    c1.selectbox("Granularity", _link.GRANULARITIES, key="granularity",
                 help="One codebook per tensor, per output channel, or per group of weights.")
    if s.get("granularity") == "group":
        c2.selectbox("Group size", _link.GROUP_SIZES, key="group_size")

    c1, c2 = side.columns(2)
    solver_help = "\n".join(f"- **{n}**: {info.summary}" for n, info in SOLVER_TABLE.items())
    c1.selectbox("Solver", _link.SOLVERS, key="solver",
                 help=f"ODE solver from noise (t=0) to image (t=1).\n\n{solver_help}")
    if SOLVER_TABLE[s.get("solver", "heun")].adaptive:
        c2.caption("adaptive steps")
    else:
        c2.number_input("Steps", 1, _link.MAX_STEPS, key="steps")
    c1, c2 = side.columns(2)
    c1.select_slider("Samples", _link.SAMPLE_COUNTS, key="n")
    c2.number_input("Seed", 0, 2**31 - 1, key="seed")

    sett = sh.settings()
    try:
        _, ck, dataset = sh.current_model(sett)
    except (CheckpointError, KeyError, StopIteration) as e:
        side.error(f"The model could not be loaded: {e}")
        return
    names = zoo.class_names(dataset or str(ck.meta.get("dataset", "")), ck.config)  # an upload's own word
    if names:
        if s.get("_guidance_for") != s["model_id"]:  # a newly picked model opens at its own best guidance
            s["guidance"], s["_guidance_for"] = zoo.default_guidance(dataset), s["model_id"]
        opts = ["any", *range(len(names))]
        if s.get("label") not in opts:
            s["label"] = "any"
        side.selectbox("Class", opts, key="label",
                       format_func=lambda o: "any (every class in turn)" if o == "any" else f"{o}: {names[o]}")
        side.slider("Guidance scale", 1.0, 5.0, step=0.5, key="guidance",
                    help="Classifier-free guidance: 1 = plain conditional sampling. CIFAR-10 opens at 3, where its "
                         "samples show objects (its grid on Home too, and the shipped results/cifar10_guidance3.csv).")
    else:
        s["label"], s["guidance"], s["_guidance_for"] = "any", 1.0, s["model_id"]
    nfe = evaluations(sett.solver, sett.steps)
    side.caption(f"{ck.config.image_size}px · {count_parameters(ck.model):,} weights · "
                 + ("adaptive number of evaluations" if nfe is None else f"{nfe} evaluations per run"))
    _link.write_link(conditional=bool(names))


nav = st.navigation(PAGES)  # first, so the sidebar knows which page this run shows
sidebar(nav.url_path)
nav.run()
