"""Logarithmic quantizers: signed powers of two (Miyashita et al. 2016) and the paper's log grid.

``log2`` — Miyashita, Lee & Murmann, "Convolutional neural networks using logarithmic data
representation" (arXiv 1603.01025). A weight is coded as a sign bit and a (b-1)-bit exponent field; the
full-scale range is set at the largest magnitude, e_max = round(log2 max|w|), so the levels are

    0  and  ±2^(e_max - j),  j = 0 .. 2^(b-1) - 2                                          (b >= 2)

Zero: as in Miyashita et al., whose clip sends every value below the smallest power to 0, the lowest
code of the exponent field means zero (both sign bits give the same 0). That leaves 2^(b-1) - 1 powers
per sign and 2^b - 1 distinct levels. At b = 1 there is no exponent field: the levels are ±2^e_max.
Each weight takes its nearest level (in value, not in log2 — same codebook, smaller error). A group of
zeros is coded exactly.

``log2-paper`` — the paper's ``PC-Log-ECQ-Quant.py`` (``quantize_tensor_log``), as its code computes it.
With K = min(2^b, n) for a group of n weights (a single weight is kept as it is):

* positive weights, if any: k₊ levels 2^linspace(log2 min w, log2 max w, k₊) over them, k₊ = K // 2 when
  the group also has negative weights, else K;
* negative weights, if any: k₋ = K // 2 levels, the same grid over their magnitudes, negated; **always**
  K // 2, even in a group without positive weights, so such a group uses only half its levels. The
  positive side's own rule (and the comment "process negative values symmetrically") says the negative
  side was meant to get all K then: a bug in the paper's code, kept here because the paper's results
  were made with it;
* a side whose weights are all equal gets one level, that value; with k = 1 the level is the side's
  smallest magnitude (``linspace(lo, hi, 1) = [lo]``);
* each weight takes the nearest level of its own sign (in value); a zero takes the used level nearest
  to zero (the paper's ``argmin |c|`` over the quantized values; at an exact tie between ±c fmq takes −c,
  the paper whichever comes first in the tensor), and an all-zero group stays zero.

The paper leaves a whole tensor untouched when it has fewer than 2^b elements (see :mod:`fmq.quant`).
"""

from __future__ import annotations

import numpy as np

from .common import nearest_level

__all__ = ["log2_core", "log2_paper_core"]


def log2_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    amax = np.abs(x).max(axis=1, keepdims=True)
    e_max = np.rint(np.log2(np.where(amax > 0, amax, 1.0)))
    if bits == 1:
        levels = np.concatenate([-(2.0**e_max), 2.0**e_max], axis=1)
    else:
        powers = 2.0 ** (e_max - np.arange(2 ** (bits - 1) - 1)[::-1])  # ascending magnitudes
        levels = np.concatenate([-powers[:, ::-1], np.zeros_like(amax), powers], axis=1)
    levels = np.where(amax > 0, levels, 0.0)  # an all-zero group is exactly zero
    return levels, nearest_level(levels, x)


def log2_paper_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    bsz, n = x.shape
    if n == 1:  # the paper's K <= 1: the group's mean, i.e. the weight itself
        return x.copy(), np.zeros(x.shape, dtype=np.int64)
    k = min(2**bits, n)
    pos, neg = x > 0, x < 0
    has_pos, has_neg = pos.any(1, keepdims=True), neg.any(1, keepdims=True)
    k_pos = np.where(has_neg, k // 2, k)[:, 0]
    k_neg = np.full(bsz, k // 2)  # the paper's code: K // 2 even without positive weights (see above)

    def side(mask, mag, count):
        lo = np.where(mask, mag, np.inf).min(1)
        hi = np.where(mask, mag, 0.0).max(1)
        t = np.arange(k)[None, :] / np.maximum(count - 1, 1)[:, None]  # linspace(0, 1, count), padded
        lg_lo, lg_hi = np.log2(np.where(mask.any(1), lo, 1.0)), np.log2(np.where(mask.any(1), hi, 1.0))
        vals = 2.0 ** (lg_lo[:, None] + np.minimum(t, 1.0) * (lg_hi - lg_lo)[:, None])
        vals = np.where((count == 1)[:, None] | (lo == hi)[:, None], lo[:, None], vals)
        used = (np.arange(k)[None, :] < count[:, None]) & mask.any(1)[:, None]
        return vals, used

    pv, pu = side(pos, x, k_pos)
    nv, nu = side(neg, -x, k_neg)
    cand = np.concatenate([np.where(pu, pv, np.nan), np.where(nu, -nv, np.nan)], axis=1)
    all_zero = ~(has_pos | has_neg)[:, 0]
    cand[all_zero, 0] = 0.0
    cand = np.sort(cand, axis=1)  # NaN sorts last
    n_valid = (~np.isnan(cand)).sum(1)
    fill = np.take_along_axis(cand, (n_valid - 1)[:, None], 1)
    levels = np.where(np.isnan(cand), fill, cand)
    return levels, nearest_level(levels, x)
