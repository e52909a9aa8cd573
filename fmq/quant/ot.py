"""Optimal-transport quantizers: the exact W2-optimal codebook, and the paper's equal-mass one.

``ot`` — for a group of n weights w and K = 2**b levels, the codebook c_1 <= ... <= c_K and assignment
a(i) minimising

    SSE = sum_i (w_i - c_{a(i)})²                                                         (1)

i.e. exact one-dimensional k-means. For any quantizer q with at most K levels,
W2(w, q(w))² >= SSE_opt / n (every unit of mass must travel at least to its nearest level), while the
exact solution reaches W2² <= MSE = SSE_opt / n through the identity coupling; so the exact codebook
minimises both the MSE and the W2 distance between the weights and their quantized values, among
all K-level quantizers of that group. Optimal clusters are contiguous in sorted order, so with the
sorted distinct values v_1 < ... < v_m, their counts and prefix sums W, S1, S2,

    cost(j, i) = S2_i - S2_j - (S1_i - S1_j)² / (W_i - W_j)      (points j+1..i in one cluster)
    D_k(i)     = min_{j <= i} D_{k-1}(j) + cost(j, i),     D_1(i) = cost(0, i)           (2)

and D_K(m) is the optimum (Wang & Song 2011, Ckmeans.1d.dp). ``cost`` satisfies the quadrangle
inequality, so the smallest minimiser of (2) is non-decreasing in i and each layer is solved by divide
and conquer over the rows, O(m log m) per layer (Grønlund et al. 2017, arXiv 1701.07204, §2). Here
every depth of that recursion is one vectorised step over all rows of all groups at once, so many
small problems (one per channel) cost about as much as one big one. Empty clusters are allowed
(cost 0), so a group with fewer distinct values than levels is represented exactly.

``ot-equal-mass`` — the paper's quantizer (arXiv 2511.11418, ``PC-OT-Quant.py``): the sorted weights
are split into K chunks of equal count (``numpy.array_split``: the first n mod K chunks one longer)
and each weight becomes its chunk's mean. It is the optimal transport to a K-atom measure whose atoms
carry equal mass, not the W2-optimal codebook.
"""

from __future__ import annotations

import numpy as np

from .kmeans1d import kmeans_boundaries

__all__ = ["kmeans_1d", "ot_core", "equal_mass_core"]

_BUDGET = 1 << 25  # DP table entries per batch chunk

def _compress(x: np.ndarray):
    """Sort each row and collapse equal values: (order, distinct id of each sorted entry, values, counts)."""
    b, n = x.shape
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, 1)
    new = np.empty((b, n), dtype=bool)
    new[:, 0] = True
    np.not_equal(xs[:, 1:], xs[:, :-1], out=new[:, 1:])
    if new.all():  # all distinct (the usual case for float weights)
        return order, np.broadcast_to(np.arange(n), (b, n)), xs, np.ones((b, n))
    cid = np.cumsum(new, axis=1) - 1  # (B, n) index of each sorted value among its row's distinct values
    m = int(cid[:, -1].max()) + 1
    flat = (np.arange(b)[:, None] * m + cid).ravel()
    vals = np.repeat(xs[:, -1:], m, axis=1)  # padding repeats the row's largest value with count 0
    vals.reshape(-1)[flat] = xs.reshape(-1)
    counts = np.bincount(flat, minlength=b * m).reshape(b, m).astype(np.float64)
    return order, cid, vals, counts


def kmeans_1d(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-means of every row of ``x`` (B, n): levels (B, k) sorted, indices (B, n) int64.

    Groups with fewer than k distinct values get every distinct value as a level, padded by repeating
    the largest. Ties between equally good codebooks are broken towards smaller boundaries.
    """
    x = np.asarray(x, dtype=np.float64)
    bsz, n = x.shape
    order, cid, vals, counts = _compress(x)
    m = vals.shape[1]
    if m <= k:  # every distinct value gets its own level: exact
        levels = np.concatenate([vals, np.repeat(vals[:, -1:], k - m, axis=1)], axis=1)
        lab_sorted = cid
    else:
        chunk = max(1, _BUDGET // max(1, k * (m + 1)))  # bounds the argmin tables kept for backtracking
        bounds = np.concatenate([kmeans_boundaries(vals[s:s + chunk], counts[s:s + chunk], k)
                                 for s in range(0, bsz, chunk)])
        ccount = np.concatenate([np.zeros((bsz, 1)), np.cumsum(counts, 1)], 1)
        csum = np.concatenate([np.zeros((bsz, 1)), np.cumsum(counts * vals, 1)], 1)
        rows = np.arange(bsz)[:, None]
        wsum = ccount[rows, bounds[:, 1:]] - ccount[rows, bounds[:, :-1]]  # (B, k) weights per cluster
        ssum = csum[rows, bounds[:, 1:]] - csum[rows, bounds[:, :-1]]
        levels = np.where(wsum > 0, ssum / np.maximum(wsum, 1.0), np.nan)
        levels = _fill_empty(levels)
        marks = np.zeros((bsz, m + 1))
        np.add.at(marks, (np.repeat(np.arange(bsz), k - 1), bounds[:, 1:k].reshape(-1)), 1.0)
        lab_distinct = np.cumsum(marks, 1)[:, :m].astype(np.int64)
        lab_sorted = np.take_along_axis(lab_distinct, cid, 1)
    idx = np.empty((bsz, n), dtype=np.int64)
    np.put_along_axis(idx, order, lab_sorted, 1)
    return levels, idx


def _fill_empty(levels: np.ndarray) -> np.ndarray:
    """Replace NaN (empty clusters) by the previous level, or the next one at the start of a row."""
    ok = ~np.isnan(levels)
    k = levels.shape[1]
    prev = np.maximum.accumulate(np.where(ok, np.arange(k), -1), axis=1)
    nxt = np.minimum.accumulate(np.where(ok, np.arange(k), k)[:, ::-1], axis=1)[:, ::-1]
    src = np.where(prev >= 0, prev, nxt)
    return np.take_along_axis(levels, src, 1)


def ot_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return kmeans_1d(x, min(2**bits, x.shape[1]))


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
