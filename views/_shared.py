"""What every page shares: the sidebar's settings and the cached calls into fmq.

Caching rules (the FP32 models are shared by every user of the server):
* models live in ``st.cache_resource`` and are only ever read: quantization returns a new model;
* runs, scores and tables live in ``st.cache_data`` with bounded entries, keyed by the model's file
  identity (path, mtime, size, or the sha256 of an upload), so a checkpoint rewritten on disk is reloaded;
* arguments that start with ``_`` are not hashed: they are the models, already identified by ``key``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st
import torch

from fmq import compare, layerview, results, zoo
from fmq.checkpoint import Checkpoint, CheckpointError
from fmq.sampling import SOLVER_TABLE, describe_steps, make_noise

SOLVERS = ("heun", *(s for s in SOLVER_TABLE if s != "heun"))  # the default first
# one colour per method on every page: ot and uniform (the contrast the app is about) in blue and red
_METHOD_COLORS = {"ot": "#636efa", "uniform": "#ef553b", "ot-equal-mass": "#00cc96", "pwl": "#ab63fa",
                  "log2": "#ffa15a", "pwl-paper": "#19d3f3", "log2-paper": "#ff6692"}
_SPARE_COLORS = ("#2ca02c", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#1f3d7a", "#b6e880")
UPLOADS = "uploads"  # session-state key: {sha256: (file name, bytes)}


@dataclass(frozen=True)
class Settings:
    """The sidebar, read once per run."""

    model_id: str  # ModelRef.name of a shipped model, or "upload:<sha>"
    methods: tuple[str, ...]
    bits: int
    granularity: str  # "channel" | "tensor" | "group:G"
    solver: str
    steps: int
    n: int
    seed: int
    label: int | None  # None = every class in turn (or an unconditional model)
    guidance: float

    def run_args(self) -> tuple:
        """The sampling settings as a hashable tuple (a cache key part)."""
        return (self.n, self.seed, self.label, self.solver, self.steps, self.guidance)

    def describe(self) -> str:
        cls = "" if self.label is None else f", class {self.label}"
        return (f"{self.n} samples, {describe_steps(self.solver, self.steps)}, seed {self.seed}{cls}"
                f", guidance {self.guidance:g}, codebooks {gran_text(self.granularity)}")


def bits_text(bits: int) -> str:
    """"1 bit", "2 bits"."""
    return f"{bits} bit" if bits == 1 else f"{bits} bits"


def gran_text(granularity: str) -> str:
    """"per channel", "per tensor", "groups of 16" (what a legend or caption says for "group:16")."""
    return f"groups of {granularity.split(':')[1]}" if granularity.startswith("group:") else f"per {granularity}"


def settings() -> Settings:
    s = st.session_state
    gran = s.get("granularity", "channel")
    if gran == "group":
        gran = f"group:{s.get('group_size', 64)}"
    label = s.get("label", "any")
    return Settings(
        model_id=s.get("model_id", ""), methods=tuple(s.get("methods", ())), bits=int(s.get("bits", 2)),
        granularity=gran, solver=s.get("solver", "heun"), steps=int(s.get("steps", 8)), n=int(s.get("n", 16)),
        seed=int(s.get("seed", 0)), label=None if label in (None, "any") else int(label),
        guidance=float(s.get("guidance", 1.0)),
    )


def model_refs() -> dict[str, str]:
    """Every model a user can pick: {id: title}. Shipped ones first, then this session's uploads."""
    out = {r.name: r.title for r in zoo.shipped()}
    for sha, (name, _) in st.session_state.get(UPLOADS, {}).items():
        out[f"upload:{sha}"] = f"Uploaded: {name}"
    return out


@st.cache_resource(max_entries=8, show_spinner="Loading the FP32 model…")
def _shipped_model(path: str, mtime_ns: int, size: int) -> Checkpoint:
    return zoo.load(zoo.ModelRef("", "", path, mtime_ns, size))


@st.cache_resource(max_entries=4, show_spinner="Loading your model…")
def _uploaded_model(sha: str, _data: bytes, filename: str) -> Checkpoint:
    return zoo.load_upload(_data, filename)[0]


def shipped_model(ref: zoo.ModelRef) -> tuple[str, Checkpoint]:
    """(cache key, checkpoint) of a shipped model."""
    return f"{ref.path}:{ref.mtime_ns}:{ref.size}", _shipped_model(ref.path, ref.mtime_ns, ref.size)


def current_model(sett: Settings) -> tuple[str, Checkpoint, str]:
    """(cache key, checkpoint, shipped data set name) of the model picked in the sidebar.

    The name is "" for an upload whatever its metadata says: the shipped results and the paper's claims
    are about the shipped models, not about a file that calls itself "mnist".
    """
    if sett.model_id.startswith("upload:"):
        sha = sett.model_id.split(":", 1)[1]
        name, data = st.session_state[UPLOADS][sha]
        return sett.model_id, _uploaded_model(sha, data, name), ""
    ref = next(r for r in zoo.shipped() if r.name == sett.model_id)
    key, ck = shipped_model(ref)
    return key, ck, ref.name


def page_model() -> tuple[Settings, str, Checkpoint, str]:
    """(settings, cache key, checkpoint, data set) for a page; stops the page with a message if there is none."""
    sett = settings()
    try:
        key, ck, dataset = current_model(sett)
    except (CheckpointError, KeyError, StopIteration) as e:
        why = f" ({e})" if str(e) else ""
        st.warning(f"No model to show{why}. Put an fmq checkpoint in checkpoints/ (`python -m fmq train`) or "
                   "upload one under **Bring your own model** in the sidebar.", icon=":material/info:")
        st.stop()
    return sett, key, ck, dataset


def quant_config(method: str, bits: int, granularity: str):
    from fmq.quantize import QuantConfig

    return QuantConfig(method=method, bits=int(bits), granularity=granularity)


def _inputs(ck: Checkpoint, n: int, seed: int, label: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    c = ck.config
    return make_noise(n, (c.in_channels, c.image_size, c.image_size), seed), zoo.labels_for(c, n, label)


@st.cache_resource(max_entries=12, show_spinner=False)
def quantized(key: str, method: str, bits: int, granularity: str, _model) -> compare.Quantized:
    """A quantized copy of the FP32 model (cached: every page of every user shares it, read-only)."""
    return compare.quantize(_model, quant_config(method, bits, granularity))


# runs keep whole trajectories (up to ~80 MB at 64 RGB samples × 100 steps): bound the bytes, not just the count
@st.cache_data(max_entries=24, max_size="512MB", show_spinner=False)
def fp32_run(key: str, run_args: tuple, _ck: Checkpoint) -> compare.Run:
    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, n, seed, label)
    return compare.generate(_ck.model, noise, y, solver, steps, guidance, seed=seed)


@st.cache_data(max_entries=96, max_size="1GB", show_spinner=False)
def method_run(key: str, method: str, bits: int, granularity: str, run_args: tuple,
               _ck: Checkpoint) -> compare.MethodResult:
    """Quantize, generate from the same noise as FP32, and score against FP32."""
    n, seed, label, solver, steps, guidance = run_args
    ref = fp32_run(key, run_args, _ck)
    q = quantized(key, method, bits, granularity, _ck.model)
    noise, y = _inputs(_ck, n, seed, label)
    run = compare.generate(q.model, noise, y, solver, steps, guidance, seed=seed)
    return compare.MethodResult(quant_config(method, bits, granularity), run, compare.score(ref, run),
                                q.seconds, q.report)


@st.cache_data(max_entries=64, show_spinner=False)
def layer_view(key: str, name: str, methods: tuple[str, ...], bits: int, granularity: str, index: int,
               _model) -> layerview.LayerView:
    return layerview.layer_view(_model, name, methods, bits, granularity, index)


def layer_rows(key: str, methods: tuple[str, ...], bits: int, granularity: str, _model) -> list[dict]:
    """Per-layer W2/MSE of every method, from the (cached) quantized models' reports."""
    reports = {m: quantized(key, m, bits, granularity, _model).report for m in methods}
    return layerview.layer_table(reports)


@st.cache_data(max_entries=64, max_size="256MB", show_spinner=False)
def packed(key: str, method: str, bits: int, granularity: str, dataset: str,
           _model) -> tuple[layerview.CompressionRow, bytes]:
    """The packed file's size row and bytes (kept for the download button)."""
    return layerview.pack(_model, quant_config(method, bits, granularity), source_meta={"dataset": dataset})


@st.cache_data(max_entries=256, show_spinner=False)
def fidelity_point(key: str, method: str, bits: int, granularity: str, run_args: tuple, dataset: str,
                   _ck: Checkpoint) -> dict:
    """One (method, bits) point of the Fidelity page: a full results row (fmq.results.COLUMNS), packed size too."""
    res = method_run(key, method, bits, granularity, run_args, _ck)
    size = compare.packed_size(_ck.model, res.config, res.report.codebooks)
    return compare.result_row(res, dataset, size)


def shipped_results(dataset: str, sett: Settings) -> results.Shipped | None:
    """The shipped sweep rows for a shipped model ("" for uploads) closest to the sidebar's settings."""
    return results.shipped_results(dataset, results.Wanted(
        methods=sett.methods, granularity=sett.granularity, n=sett.n, solver=sett.solver, steps=sett.steps,
        seed=sett.seed, guidance=sett.guidance, label=sett.label))


def method_color(method: str) -> str:
    """The colour ``method`` has on every page (methods without a fixed one take spares in registry order)."""
    if method in _METHOD_COLORS:
        return _METHOD_COLORS[method]
    others = [m for m in compare.method_names() if m not in _METHOD_COLORS]
    i = others.index(method) if method in others else len(others)
    return _SPARE_COLORS[i % len(_SPARE_COLORS)]


def safe(fn, *args):
    """(value, None), or (None, message) when a quantizer refuses these settings (e.g. pwl needs 2 bits)."""
    try:
        return fn(*args), None
    except ValueError as e:
        return None, str(e)


def method_results(key: str, sett: Settings, ck: Checkpoint) -> dict[str, compare.MethodResult]:
    """Every chosen method's run at the sidebar's settings, with a status line naming each step (a setting
    changed meanwhile stops the run between steps); a method that cannot run gets a warning instead."""
    out = {}
    total = 2 * len(sett.methods)
    status = st.status("Quantizing and sampling…", expanded=False)
    for i, m in enumerate(sett.methods):
        status.update(label=f"Quantizing with {m} at {bits_text(sett.bits)} (step {2 * i + 1} of {total}; "
                            "change any setting to stop)…")
        _, err = safe(quantized, key, m, sett.bits, sett.granularity, ck.model)
        if not err:
            status.update(label=f"Sampling with {m} (step {2 * i + 2} of {total})…")
            res, err = safe(method_run, key, m, sett.bits, sett.granularity, sett.run_args(), ck)
        if err:
            st.warning(f"**{m}** at {bits_text(sett.bits)}: {err}", icon=":material/warning:")
        else:
            out[m] = res
    status.update(label=f"{len(out)} of {len(sett.methods)} quantized models sampled", state="complete")
    return out


def usable_methods(key: str, sett: Settings, ck: Checkpoint) -> list[str]:
    """The chosen methods that can quantize this model at these settings (the others get a warning)."""
    out = []
    for m in sett.methods:
        _, err = safe(quantized, key, m, sett.bits, sett.granularity, ck.model)
        if err:
            st.warning(f"**{m}** at {bits_text(sett.bits)}: {err}", icon=":material/warning:")
        else:
            out.append(m)
    return out


def need_methods(sett: Settings) -> bool:
    """Tell the user what is missing when a page needs quantizers; True when it can go on."""
    if not sett.methods:
        st.info("Pick one or more quantizers in the sidebar to compare against FP32.", icon=":material/arrow_back:")
        return False
    return True


def torch_threads() -> None:
    """One intra-op thread per computation: the server runs one script thread per user on a small machine,
    and two threads fighting over two busy cores are many times slower than one (measured: 0.08 s against
    1.5 s per MNIST evaluation while a training run held both cores). FMQ_TORCH_THREADS overrides."""
    want = int(os.environ.get("FMQ_TORCH_THREADS", "1"))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


BOUND_SAMPLES = 4  # the bound needs Jacobian-vector products at every step: a few samples keep it to seconds


@st.cache_data(max_entries=8, show_spinner=False)
def _sensitivity(key: str, run_args: tuple, _ck: Checkpoint):
    from fmq.bounds import fp32_sensitivity

    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, min(n, BOUND_SAMPLES), seed, label)
    return fp32_sensitivity(_ck.model, noise, y, solver, steps, guidance, power_iters=3)


@st.cache_data(max_entries=32, show_spinner=False)
def bound_report(key: str, method: str, bits: int, granularity: str, run_args: tuple, _ck: Checkpoint):
    """fmq.bounds.degradation_report for the first BOUND_SAMPLES samples (the FP32 side shared by all methods)."""
    from fmq.bounds import degradation_report

    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, min(n, BOUND_SAMPLES), seed, label)
    sens = _sensitivity(key, run_args, _ck)
    q = quantized(key, method, bits, granularity, _ck.model)
    return degradation_report(_ck.model, q.model, noise, y, solver, steps, guidance, power_iters=3, sensitivity=sens)
