"""Optimal-transport quantizers: the exact W2-optimal codebook, and the paper's equal-mass one.

``ot`` — for a group of n weights w and K = 2**b levels, the codebook c_1 <= ... <= c_K and assignment
a(i) minimising

    SSE = sum_i (w_i - c_{a(i)})²                                                         (1)

i.e. exact one-dimensional k-means. For any quantizer q with at most K levels,
W2(w, q(w))² >= SSE_opt / n (every unit of mass must travel at least to its nearest level), while the
exact solution reaches W2² <= MSE = SSE_opt / n through the identity coupling; so the exact codebook
minimises both the MSE and the W2 distance between the weights and their quantized values, among
all K-level quantizers of that group. Optimal clusters are contiguous in sorted order, so a dynamic
programme over the sorted distinct values with their counts solves (1) exactly (Wang & Song 2011,
Ckmeans.1d.dp): :mod:`fmq.quant.kmeans1d` solves it for many groups at once in compiled code: a
Lagrangian search whose answers are certified optimal (:mod:`fmq.quant.dp_lagrange`), and a layered DP
with pruning that provably keeps the optimum for the rest (:mod:`fmq.quant.dp_group`, and bin-bound
windows for very long groups). Empty clusters are allowed, so a group with fewer distinct values than levels is
represented exactly; each weight's index is its cluster's, i.e. its nearest level.

``ot-equal-mass`` — the paper's quantizer (arXiv 2511.11418, ``PC-OT-Quant.py``): the sorted weights
are split into K chunks of equal count (``numpy.array_split``: the first n mod K chunks one longer)
and each weight becomes its chunk's mean. It is the optimal transport to a K-atom measure whose atoms
carry equal mass, not the W2-optimal codebook.
"""

from __future__ import annotations

import numpy as np

from .dp_kernels import count_below_rows
from .kmeans1d import kmeans_boundaries

__all__ = ["kmeans_1d", "ot_core", "equal_mass_core"]

_BUDGET = 1 << 25  # DP table entries per batch chunk


def _distinct(xs: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their total weight (default 1 per entry) of each sorted row, padded to a
    common length m by repeating the row's largest value with weight 0."""
    b, n = xs.shape
    new = np.empty((b, n), dtype=bool)
    new[:, 0] = True
    np.not_equal(xs[:, 1:], xs[:, :-1], out=new[:, 1:])
    if weight is None and new.all():  # all distinct: the usual case for float weights
        return xs, np.ones((b, n))
    cid = np.cumsum(new, axis=1) - 1  # index of each sorted value among its row's distinct values
    m = int(cid[:, -1].max()) + 1
    flat = (np.arange(b)[:, None] * m + cid).ravel()
    vals = np.repeat(xs[:, -1:], m, axis=1)
    vals.reshape(-1)[flat] = xs.reshape(-1)
    counts = np.bincount(flat, weights=None if weight is None else weight.reshape(-1), minlength=b * m)
    return vals, counts.reshape(b, m).astype(np.float64)


def kmeans_1d(x: np.ndarray, k: int, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-means of every row of ``x`` (B, n): levels (B, k) sorted, indices (B, n) int64.

    ``lengths`` (B,): row b holds lengths[b] weights, the rest is padding (ignored; its indices are 0).
    Groups with fewer than k distinct values get every distinct value as a level, padded by repeating
    the largest. Ties between equally good codebooks are broken towards smaller boundaries.
    """
    x = np.asarray(x, dtype=np.float64)
    bsz, n = x.shape
    if lengths is None:
        vals, counts = _distinct(np.sort(x, axis=1))
    else:
        pad = np.arange(n)[None, :] >= np.asarray(lengths)[:, None]
        xs = np.sort(np.where(pad, np.inf, x), axis=1)
        last = np.take_along_axis(xs, (np.asarray(lengths) - 1)[:, None], 1)
        vals, counts = _distinct(np.where(pad, last, xs), (~pad).astype(np.float64))
    m = vals.shape[1]
    if m <= k:  # every distinct value gets its own level: exact
        levels = np.concatenate([vals, np.repeat(vals[:, -1:], k - m, axis=1)], axis=1)
        uppers = vals
    else:
        chunk = max(1, _BUDGET // max(1, k * (m + 1)))  # bounds the argmin tables kept for backtracking
        parts = [kmeans_boundaries(vals[s:s + chunk], counts[s:s + chunk], k) for s in range(0, bsz, chunk)]
        bounds = np.concatenate([b for b, _ in parts])
        levels = _fill_empty(np.concatenate([c for _, c in parts]))
        rows = np.arange(bsz)[:, None]
        uppers = vals[rows, np.maximum(bounds[:, 1:] - 1, 0)]  # largest value of each cluster
        uppers = np.where(np.diff(bounds, axis=1) > 0, uppers, -np.inf)
        uppers = np.maximum.accumulate(uppers, axis=1)  # an empty cluster is never chosen below
    # a weight's cluster = number of clusters whose largest value is below it
    idx = np.empty(x.shape, dtype=np.int64)
    count_below_rows(np.ascontiguousarray(uppers[:, :-1]), x, idx)
    idx = np.minimum(idx, levels.shape[1] - 1)
    if lengths is not None:
        idx = np.where(pad, 0, idx)
    return levels, idx


def _fill_empty(levels: np.ndarray) -> np.ndarray:
    """Replace NaN (empty clusters) by the previous level, or the next one at the start of a row."""
    ok = ~np.isnan(levels)
    k = levels.shape[1]
    prev = np.maximum.accumulate(np.where(ok, np.arange(k), -1), axis=1)
    nxt = np.minimum.accumulate(np.where(ok, np.arange(k), k)[:, ::-1], axis=1)[:, ::-1]
    src = np.where(prev >= 0, prev, nxt)
    return np.take_along_axis(levels, src, 1)


def ot_core(x: np.ndarray, bits: int, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    return kmeans_1d(x, min(2**bits, x.shape[1]), lengths)


def equal_mass_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    bsz, n = x.shape
    k = min(2**bits, n)
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, 1)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    edges = np.concatenate([[0], np.cumsum(sizes)])
    csum = np.concatenate([np.zeros((bsz, 1)), np.cumsum(xs, 1)], 1)
    levels = (csum[:, edges[1:]] - csum[:, edges[:-1]]) / sizes
    levels = np.maximum.accumulate(levels, axis=1)  # chunk means of sorted data are sorted; remove rounding wiggle
    lab_sorted = np.repeat(np.arange(k), sizes)[None, :].repeat(bsz, 0)
    idx = np.empty((bsz, n), dtype=np.int64)
    np.put_along_axis(idx, order, lab_sorted, 1)
    return levels, idx
