"""Uniform quantization: asymmetric min–max with 2**b evenly spaced levels (the paper's baseline).

For a group with minimum lo and maximum hi, the levels and the rounding are

    s = (hi - lo) / (2**b - 1),    c_k = lo + k s  (k = 0 .. 2**b - 1),    a(w) = round((w - lo) / s)

(Jacob et al. 2018, arXiv 1712.05877; the paper's ``PC-Uniform-Quant.py``). Both ends are levels, so
the extreme weights are exact; a constant group (s = 0) is represented exactly by one level.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform_core"]


def uniform_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    k = 2**bits
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    step = (hi - lo) / (k - 1)
    levels = lo + step * np.arange(k)
    levels[:, -1:] = hi  # exact top level despite rounding in lo + (k-1) s
    safe = np.where(step > 0, step, 1.0)
    idx = np.where(step > 0, np.rint((x - lo) / safe), 0.0)
    return levels, np.clip(idx, 0, k - 1).astype(np.int64)
