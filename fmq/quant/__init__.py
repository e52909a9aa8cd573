"""Weight quantizers: pure functions from a tensor to a :class:`Codebook` (levels, indices, shape).

``METHODS[name](w, bits, granularity) -> Codebook``; :func:`quantize_tensor` is the same by name.
Every method at b bits uses at most 2**b levels per group, so all of them cost the same storage.

=============  ===============================================================  ==================
name           what                                                             module
=============  ===============================================================  ==================
ot             exact W2-optimal codebook (exact 1-D k-means)                     :mod:`.ot`
ot-equal-mass  the paper's OT: equal-count chunks of the sorted weights, means   :mod:`.ot`
uniform        asymmetric min–max grid                                           :mod:`.uniform`
pwl            piecewise linear, Fang et al. 2020 (non-overlapping, b bits)     :mod:`.pwl`
pwl-paper      the paper's PWL: quantile breakpoints, bin-midpoint levels       :mod:`.pwl`
log2           signed powers of two, Miyashita et al. 2016 (zero coded)         :mod:`.log2`
log2-paper     the paper's log grid per sign                                    :mod:`.log2`
=============  ===============================================================  ==================

The paper's own quantizers (``ot-equal-mass``, ``pwl-paper``, ``log2-paper``; its ``PC-OT-Quant.py``,
``PC-PWL-Quant.py``, ``PC-Log-ECQ-Quant.py``) leave a whole tensor untouched when it has fewer elements
than 2**bits (:func:`leaves_untouched`): :func:`fmq.quantize.quantize_model` keeps such a tensor in FP32,
and :func:`quantize_tensor` codes it exactly, one level per value. The paper's uniform quantizer has no
such rule, and neither have fmq's own methods.

:mod:`.codebook` holds the shared ``Codebook`` type and the granularities, :mod:`.kmeans1d` the exact
1-D k-means solver (compiled: the Lagrangian search in :mod:`.dp_lagrange`, the DP in :mod:`.dp_kernels`
and :mod:`.dp_group`), :mod:`.common` the
tensor -> groups -> core plumbing, :mod:`.packing` the packed file format (with
:mod:`.storage`: how levels are stored, :mod:`.entropy`: ANS coding of indices). :func:`quantize_tensors`
quantizes many tensors in shared batches (what :func:`fmq.quantize.quantize_model` uses).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from .codebook import BITS, Codebook, Granularity, PerChannel, PerGroup, PerTensor, check_bits, parse_granularity
from .common import make_codebooks
from .log2 import log2_core, log2_paper_core
from .ot import equal_mass_core, kmeans_1d, ot_core
from .pwl import pwl_core, pwl_paper_core
from .uniform import uniform_core

__all__ = [
    "BITS",
    "METHODS",
    "quantize_tensor",
    "quantize_tensors",
    "Codebook",
    "Granularity",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "parse_granularity",
    "check_bits",
    "kmeans_1d",
    "warm_kernels",
    "PAPER_SKIPS_SMALL",
    "leaves_untouched",
]

_CORES = {
    "ot": ot_core,
    "ot-equal-mass": equal_mass_core,
    "uniform": uniform_core,
    "pwl": pwl_core,
    "log2": log2_core,
    "pwl-paper": pwl_paper_core,
    "log2-paper": log2_paper_core,
}


PAPER_SKIPS_SMALL = frozenset({"ot-equal-mass", "pwl-paper", "log2-paper"})


def leaves_untouched(method: str, numel: int, bits: int) -> bool:
    """The paper's rule: its quantizers return a tensor with fewer than 2**bits elements as it is."""
    return method in PAPER_SKIPS_SMALL and numel < 2**bits


def _exact_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """One level per weight (a group shorter than 2**bits): the weights sorted, each pointing to itself."""
    order = np.argsort(x, axis=1, kind="stable")
    idx = np.empty_like(order)
    np.put_along_axis(idx, order, np.arange(x.shape[1])[None, :].repeat(len(x), 0), 1)
    return np.take_along_axis(x, order, 1), idx


def _method(name: str, w: torch.Tensor, bits: int, granularity: Granularity | str = "channel") -> Codebook:
    return quantize_tensors([w], name, bits, granularity)[0]


METHODS: dict[str, Callable[..., Codebook]] = {name: partial(_method, name) for name in _CORES}


def quantize_tensor(w: torch.Tensor, method: str, bits: int, granularity: Granularity | str = "channel") -> Codebook:
    """Quantize one tensor: ``METHODS[method](w, bits, granularity)``."""
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](w, bits, granularity)


def quantize_tensors(ws: list[torch.Tensor], method: str, bits: int,
                     granularity: Granularity | str = "channel") -> list[Codebook]:
    """Quantize several tensors with one method: the same codebooks as one :func:`quantize_tensor` call
    each, computed in shared batches (groups of equal or, for ``ot``, similar length go together)."""
    if method not in _CORES:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {', '.join(_CORES)}")
    ws = list(ws)
    small = [i for i, w in enumerate(ws) if leaves_untouched(method, w.numel(), bits)]
    if not small:
        return make_codebooks(ws, bits, granularity, _CORES[method], method, ragged=method == "ot")
    out: list[Codebook | None] = [None] * len(ws)
    rest = [i for i in range(len(ws)) if i not in set(small)]
    for group, core in ((small, _exact_core), (rest, _CORES[method])):
        for i, cb in zip(group, make_codebooks([ws[i] for i in group], bits, granularity, core, method)):
            out[i] = cb
    return out


def warm_kernels() -> None:
    """Run every compiled (numba) kernel once on tiny inputs, so numba writes its on-disk cache: the first
    quantization of a fresh checkout then costs about a second instead of half a minute of compiling."""
    rng = np.random.default_rng(0)
    kmeans_1d(rng.normal(size=(2, 600)), 64)  # Lagrangian search
    kmeans_1d(rng.normal(size=(2, 600)), 4)  # plain DP
    kmeans_1d(rng.normal(size=(1, 3000)), 8, lengths=np.array([2990]))  # search on a padded row
    kmeans_1d(np.arange(40.0)[None], 16)  # no λ gives 16 clusters of a grid: the layered DP
    kmeans_1d(rng.normal(size=(1, 1 << 17)), 4)  # bin-bound windows
    from .kmeans1d import kmeans_boundaries

    v = np.sort(rng.normal(size=(1, 3000)), 1)
    kmeans_boundaries(v, np.ones_like(v), 16, "halves")  # halves met in the middle
    for bits in (2, 8):
        pwl_core(rng.normal(size=(2, 600)), bits)
