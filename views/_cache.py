"""The cached calls into fmq that pages share.

* quantized models live in ``st.cache_resource`` and are only ever read;
* runs, scores and tables live in ``st.cache_data`` with bounded entries, keyed by the model's identity
  (``key``: file path, mtime and size, or the sha256 of an upload);
* arguments that start with ``_`` are not hashed: they are the models, already identified by ``key``.
"""

from __future__ import annotations

import os

import streamlit as st
import torch

from fmq import compare, layerview, results, zoo
from fmq.checkpoint import Checkpoint
from fmq.sampling import make_noise
from views._calibration import DEFAULT_STEPS, calibrated, quant_config, store, stored
from views._settings import Settings, bits_for


def _inputs(ck: Checkpoint, n: int, seed: int, label: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    c = ck.config
    return make_noise(n, (c.in_channels, c.image_size, c.image_size), seed), zoo.labels_for(c, n, label)


@st.cache_resource(max_entries=12, show_spinner=False)
def quantized(key: str, method: str, bits: int, granularity: str, _model, cal: int = DEFAULT_STEPS
              ) -> compare.Quantized:
    """A quantized copy of the FP32 model (cached: every page of every user shares it, read-only). A calibrated
    method comes from the calibration store (views._calibration), filled with progress shown by the page."""
    cfg = quant_config(method, bits, granularity, cal)
    if cfg.calibration is not None:
        return stored(key, cfg) or store(key, cfg, compare.quantize(_model, cfg))
    return compare.quantize(_model, cfg)


# runs keep whole trajectories (up to ~80 MB at 64 RGB samples × 100 steps): bound the bytes, not just the count
@st.cache_data(max_entries=24, max_size="512MB", show_spinner=False)
def fp32_run(key: str, run_args: tuple, _ck: Checkpoint) -> compare.Run:
    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, n, seed, label)
    return compare.generate(_ck.model, noise, y, solver, steps, guidance, seed=seed)


@st.cache_data(max_entries=96, max_size="1GB", show_spinner=False)
def method_run(key: str, method: str, bits: int, granularity: str, run_args: tuple,
               _ck: Checkpoint, cal: int = DEFAULT_STEPS) -> compare.MethodResult:
    """Quantize, generate from the same noise as FP32, and score against FP32."""
    n, seed, label, *_ = run_args
    q = quantized(key, method, bits, granularity, _ck.model, cal)
    return compare.against(fp32_run(key, run_args, _ck), q, quant_config(method, bits, granularity, cal),
                           *_inputs(_ck, n, seed, label))


@st.cache_data(max_entries=64, show_spinner=False)
def layer_view(key: str, name: str, methods: tuple[str, ...], bits: int, granularity: str, index: int,
               _model, cal: int = DEFAULT_STEPS, budget: int | float | None = None) -> layerview.LayerView:
    """One layer's view; a mixed method's codebooks come from its model at ``budget`` (None: ``bits``)."""
    books = {m: quantized(key, m, bits_for(m, bits, budget), granularity, _model, cal).report.codebooks
             for m in methods if calibrated(m)}
    return layerview.layer_view(_model, name, methods, bits, granularity, index,
                                books={m: b[name] for m, b in books.items() if name in b}, starts=True)


def layer_rows(key: str, methods: tuple[str, ...], bits: int, granularity: str, _model,
               cal: int = DEFAULT_STEPS, budget: int | float | None = None) -> list[dict]:
    """Per-layer W2/MSE of every method, from the (cached) quantized models' reports (mixed ones at ``budget``)."""
    reports = {m: quantized(key, m, bits_for(m, bits, budget), granularity, _model,
                            cal if calibrated(m) else DEFAULT_STEPS).report for m in methods}
    return layerview.layer_table(reports)


@st.cache_data(max_entries=64, max_size="256MB", show_spinner=False)
def packed(key: str, method: str, bits: int, granularity: str, dataset: str,
           _model, cal: int = DEFAULT_STEPS) -> tuple[layerview.CompressionRow, bytes]:
    """The packed file's size row and bytes (kept for the download button)."""
    cfg = quant_config(method, bits, granularity, cal)
    books = quantized(key, method, bits, granularity, _model, cal).report.codebooks if cfg.calibration else None
    return layerview.pack(_model, cfg, source_meta={"dataset": dataset}, codebooks=books)


@st.cache_data(max_entries=256, show_spinner=False)
def fidelity_point(key: str, method: str, bits: int, granularity: str, run_args: tuple, dataset: str,
                   _ck: Checkpoint, cal: int = DEFAULT_STEPS) -> dict:
    """One (method, bits) point of the Fidelity page: a full results row (fmq.results.COLUMNS), packed size too."""
    res = method_run(key, method, bits, granularity, run_args, _ck, cal)
    size = compare.packed_size(_ck.model, res.config, res.report.codebooks)
    return compare.result_row(res, dataset, size)


def shipped_results(dataset: str, sett: Settings) -> results.Shipped | None:
    """The shipped sweep rows for a shipped model ("" for uploads) closest to the sidebar's settings."""
    return results.shipped_results(dataset, results.Wanted(
        methods=sett.methods, granularity=sett.granularity, n=sett.n, solver=sett.solver, steps=sett.steps,
        seed=sett.seed, guidance=sett.guidance, label=sett.label))


BOUND_SAMPLES = 4  # the bound needs Jacobian-vector products at every step: a few samples keep it to seconds


@st.cache_data(max_entries=8, show_spinner=False)
def _sensitivity(key: str, run_args: tuple, _ck: Checkpoint):
    from fmq.bounds import fp32_sensitivity

    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, min(n, BOUND_SAMPLES), seed, label)
    return fp32_sensitivity(_ck.model, noise, y, solver, steps, guidance, power_iters=3)


@st.cache_data(max_entries=32, show_spinner=False)
def bound_report(key: str, method: str, bits: int, granularity: str, run_args: tuple, _ck: Checkpoint,
                 cal: int = DEFAULT_STEPS):
    """fmq.bounds.degradation_report for the first BOUND_SAMPLES samples (the FP32 side shared by all methods)."""
    from fmq.bounds import degradation_report

    n, seed, label, solver, steps, guidance = run_args
    noise, y = _inputs(_ck, min(n, BOUND_SAMPLES), seed, label)
    sens = _sensitivity(key, run_args, _ck)
    q = quantized(key, method, bits, granularity, _ck.model, cal)
    return degradation_report(_ck.model, q.model, noise, y, solver, steps, guidance, power_iters=3, sensitivity=sens)


def torch_threads() -> None:
    """One intra-op thread per computation: the server runs one script thread per user on a small machine,
    and two threads fighting over two busy cores are many times slower than one (measured: 0.08 s against
    1.5 s per MNIST evaluation while a training run held both cores). FMQ_TORCH_THREADS overrides."""
    want = int(os.environ.get("FMQ_TORCH_THREADS", "1"))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
