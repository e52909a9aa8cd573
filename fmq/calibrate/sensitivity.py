"""Measured layer sensitivity: the velocity error each layer causes, alone, at each bit width.

For every quantized tensor l and width b, the tensor alone is replaced by its b-bit ``base`` codebook
(exact OT by default; levels in fp16, as stored) and the model is run on ``probe`` calibration states:

    err[l, b] = mean over states and pixels of (v_l,b(x, t, y) − v_FP32(x, t, y))².

Widths up to ``measured`` (3 by default) are measured; above it the perturbation is small and the
error is taken as proportional to the weight error, err[l, b] = err[l, m] · mse[l, b] / mse[l, m] with m
the widest measured width (the first-order model; a layer's mse at each width is exact). Those widths
only go to the few most sensitive layers, where the model is at its best.

Measured on the network's output, not guessed from the weights: gradient and Fisher proxies picked the
wrong layers on the shipped models (issue 12's prototype), while this measure spans five orders of
magnitude between the stem or output conv and the low-resolution middle. Cost: layers × widths forward
passes of ``probe`` states (a few seconds to half a minute on two cores).

The model is never modified: the replaced tensor goes in through ``torch.func.functional_call``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..methods import WIDTH_BITS
from ..quant import Codebook, quantize_tensors
from .states import CalibrationSet, squared_error

__all__ = ["Sensitivity", "WIDTH_BITS", "measure_sensitivity", "codebook_cost", "probe_indices", "like"]



@dataclass
class Sensitivity:
    names: list[str]  # quantized tensors, in order
    widths: tuple[int, ...]  # (J,)
    err: np.ndarray  # (L, J) mean squared velocity error with only tensor l at width j
    cost: np.ndarray  # (L, J) bits to store tensor l at width j (indices, fp16 codebooks, its width)
    numel: np.ndarray  # (L,) weights per tensor
    base: str  # the plain method whose codebooks were measured
    granularity: str
    seconds: float = 0.0


def like(w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``w`` in the memory layout of the module's tensor ``ref`` (channels-last convs stay channels-last)."""
    if ref.dim() == 4 and ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous():
        return w.contiguous(memory_format=torch.channels_last)
    return w


def codebook_cost(cb: Codebook, mixed: bool = True) -> int:
    """Bits to store one tensor's codebook: b-bit indices, fp16 levels, and (mixed) its width."""
    return int(cb.storage_bits()) + (WIDTH_BITS if mixed else 0)


def probe_indices(n_states: int, probe: int, seed: int) -> torch.Tensor:
    """A fixed, seeded choice of ``probe`` calibration states (all of them if there are fewer)."""
    g = torch.Generator().manual_seed(10_007 + int(seed))
    return torch.randperm(n_states, generator=g)[: min(probe, n_states)]


@torch.no_grad()
def measure_sensitivity(model: nn.Module, names: list[str], calib: CalibrationSet, widths: tuple[int, ...],
                        granularity: str, base: str = "ot", probe: int = 32, measured: int = 3,
                        progress: Callable[[int, int], None] | None = None, early: float = 1.0) -> Sensitivity:
    """err[l, j] and cost[l, j] for every tensor in ``names`` and width in ``widths``; each probe state's
    error weighted as the refinement weighs it (:func:`.states.squared_error` with ``early``)."""
    import time

    t0 = time.perf_counter()
    params = dict(model.state_dict())
    x, t, y, v = calib.batch(probe_indices(len(calib), probe, calib.seed))
    err = np.zeros((len(names), len(widths)))
    cost = np.zeros((len(names), len(widths)), dtype=np.int64)
    mse = np.zeros_like(err)
    frozen = {n: p.detach() for n, p in model.named_parameters()}
    last = max([j for j, b in enumerate(widths) if b <= measured], default=None)
    total, done = len(names) * sum(b <= measured for b in widths), 0
    for j, b in enumerate(widths):
        books = quantize_tensors([params[n].detach() for n in names], base, b, granularity)
        for i, (name, cb) in enumerate(zip(names, books)):
            cb = cb.with_levels_as(torch.float16)
            cost[i, j] = codebook_cost(cb)
            ref = params[name]
            wq = cb.dequantize().to(ref.dtype)
            mse[i, j] = float((wq.double() - ref.double()).pow(2).mean())
            if b > measured and last is not None:
                err[i, j] = err[i, last] * mse[i, j] / mse[i, last] if mse[i, last] > 0 else 0.0
                continue
            out = functional_call(model, {**frozen, name: like(wq, ref)}, (x, t, y))
            s, n = squared_error(out, v, t, early)
            err[i, j] = float(s) / n
            done += 1
            if progress is not None:
                progress(done, total)
    numel = np.array([params[n].numel() for n in names])
    return Sensitivity(list(names), tuple(widths), err, cost, numel, base, granularity, time.perf_counter() - t0)
