"""Exact one-dimensional k-means for many groups at once: numpy around compiled DP layers.

Problem: for each row of sorted distinct values v_1 < ... < v_m with counts, split the positions into
k contiguous clusters minimising the within-cluster sum of squares. With prefix sums W, S1, S2,

    cost(j, i) = S2_i - S2_j - (S1_i - S1_j)² / (W_i - W_j)           (entries j+1 .. i in one cluster)
    D_k(i) = min_{j < i} D_{k-1}(j) + cost(j, i),    D_1(i) = cost(0, i),    answer D_k(m)       (1)

(Wang & Song 2011). From 8 levels on, each group first goes to the Lagrangian search of
:mod:`fmq.quant.dp_lagrange` (one penalised DP per trial λ, no layers; its answer carries a proof of
optimality), and only the groups it cannot certify within its budget come to the layered DP below.
``cost`` obeys the quadrangle inequality, so the smallest minimiser T_k(i) of (1)
is non-decreasing in i, and T_{k-1}(i) <= T_k(i). The layers run in compiled code
(:mod:`fmq.quant.dp_kernels`): divide and conquer over the rows (Grønlund et al. 2017, arXiv
1701.07204), and Knuth-Yao ranges T_{k-1}(i) <= T_k(i) <= T_k(i+1) once those are short. Groups of
up to ~10^5 values run as two pruned half DPs met in the middle (:mod:`fmq.quant.dp_group`).

Pruning for longer groups that keeps the answer exact (``solver="windows"``, chosen by ``auto`` from
2^17 values): group the positions into M bins
e_0 = 0 < e_1 < ... < e_M = m. A cluster whose start lies in bin a (j <= e_{a+1} - 1) and whose end
lies in bin c (i >= e_c) holds at least the entries e_{a+1} - 1 .. e_c - 1, and adding entries to a
cluster never lowers its cost, so

    L_k(c) = min_{a <= c} L_{k-1}(a) + cost(e_{a+1} - 1, e_c)     (0 when that range is empty)    (2)

is a lower bound on D_k(i) for every i in bin c (induction on k; the cost stays Monge, so the same
divide and conquer applies); the same recursion on the mirrored values bounds the cost of every
suffix. Any k-partition gives an upper bound U (Lloyd's iterations started from the path of (2)). An
optimal partition has D_j(t_j) + E_{k-j}(t_j) = OPT <= U for each of its boundaries t_j, so every
boundary lies in a bin whose prefix + suffix bound is <= U; (1) solved only over those windows still
finds an optimal partition. The bins are refined level by level (x8), each level's bounds computed only
inside the previous windows, which stays rigorous because the windows keep an optimal path. Bin edges
sit at equal steps of rank fraction + value fraction, so sparse tails get one-entry bins, where (2) is
exact. The bound loses about one bin of entries per boundary, so windows are narrow when bins hold
well under 8m/k³ entries: large gains for k <= 64 on long groups, little for k = 256. (Inside windows
the k-monotonicity T_{k-1}(i) <= T_k(i) is not used: it is not proven for the restricted problem.)
"""

from __future__ import annotations

import numpy as np

from .dp_group import dp_exact
from .dp_kernels import layer_minima
from .dp_lagrange import lagrange_groups

__all__ = ["kmeans_boundaries", "prefix_sums", "SOLVERS"]

_KY_RANGE = 3.0  # Knuth-Yao once its mean range per row is below this many log2(rows)
_LAGRANGE_MIN_K = 8  # auto: the Lagrangian search first from this many levels (bench_quantizers)
_LAGRANGE_ITERS = 24  # its solves per group before the layered DP takes over
_TOL = 1e-9  # relative slack on the upper bound: float rounding must never prune the optimum


def prefix_sums(vals: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W, S1, S2 (B, m+1) of the counts, and of the count-weighted centred values and their squares."""
    bsz, m = vals.shape
    centred = vals - (vals * counts).sum(1, keepdims=True) / np.maximum(counts.sum(1, keepdims=True), 1.0)
    out = tuple(np.zeros((bsz, m + 1)) for _ in range(3))
    np.cumsum(counts, 1, out=out[0][:, 1:])
    weighted = counts * centred
    np.cumsum(weighted, 1, out=out[1][:, 1:])
    np.cumsum(weighted * centred, 1, out=out[2][:, 1:])
    return out


def _gather(p, idx, mirror=False):
    """Prefix sums at positions idx (M,); ``mirror``: those of the mirrored rows (values negated, order
    reversed), which are totals minus the prefix sums at m - idx."""
    w, s1, s2 = p
    if not mirror:
        return w[:, idx], s1[:, idx], s2[:, idx]
    back = w.shape[1] - 1 - idx
    return w[:, -1:] - w[:, back], s1[:, back] - s1[:, -1:], s2[:, -1:] - s2[:, back]


def _layer(dprev, pj, pi, row_lo, row_hi, cand_lo, cand_hi, tprev, strict, doff=None, toff=None):
    """Row minima of M(i, j) = dprev(j) + cost(j, i) for rows row_lo..row_hi of each group.

    Candidates j lie in cand_lo..cand_hi and j <= i - strict. ``dprev`` holds D(j) at column j - doff
    (doff None: at column j); ``tprev`` (at column i - toff), if given, bounds each row's argmin from
    below. Returns best (B, R) and argmin (B, R) for rows row_lo + r, r < R (rows past a group's row_hi
    repeat row_hi). A row without candidates gets +inf. Divide and conquer in compiled code
    (:func:`fmq.quant.dp_kernels.layer_minima`).
    """
    bsz = dprev.shape[0]
    r = int((row_hi - row_lo).max()) + 1
    best, arg = np.empty((bsz, r)), np.empty((bsz, r), dtype=np.int64)
    zeros = np.zeros(bsz, dtype=np.int64)
    use_t = tprev is not None
    layer_minima(np.ascontiguousarray(dprev), zeros if doff is None else doff.astype(np.int64),
                 *(np.ascontiguousarray(a) for a in pj), *(np.ascontiguousarray(a) for a in pi),
                 row_lo.astype(np.int64), row_hi.astype(np.int64), cand_lo.astype(np.int64),
                 cand_hi.astype(np.int64), tprev.astype(np.int64) if use_t else np.zeros((bsz, 1), dtype=np.int64),
                 toff.astype(np.int64) if use_t and toff is not None else zeros, use_t, strict, best, arg)
    return best, arg


def _scatter(bsz, n, row_lo, row_hi, vals, fill):
    out = np.full((bsz, n), fill, dtype=vals.dtype)
    rows = np.minimum(row_lo[:, None] + np.arange(vals.shape[1])[None, :], row_hi[:, None])
    np.put_along_axis(out, rows, vals, 1)
    return out


def _bin_bounds(p, k, edges, blo, bhi, mirror=False):
    """L_j(c) of (2) for j = 1..k-1, each (B, M+1), with boundary j restricted to bins blo_j..bhi_j
    (``mirror``: of the mirrored rows, edges given in mirrored positions)."""
    bsz = p[0].shape[0]
    m1 = len(edges)
    start = np.append(edges[1:] - 1, edges[-1])  # a cluster starting in bin a holds entries e_{a+1}-1 ..
    pj = _gather(p, start, mirror)
    pi = _gather(p, edges, mirror)
    d = np.full((bsz, m1), np.inf)
    d[:, 0] = 0.0
    out, args = [], []
    for j in range(1, k):
        best, arg = _layer(d, pj, pi, blo[:, j], bhi[:, j], blo[:, j - 1], bhi[:, j - 1], None, 0)
        d = _scatter(bsz, m1, blo[:, j], bhi[:, j], best, np.inf)
        out.append(d)
        args.append(_scatter(bsz, m1, blo[:, j], bhi[:, j], arg, 0))
    return out, args


def _bsearch_right(vals, targets):
    """np.searchsorted(vals[b], targets[b], 'right') for every row, by vectorised bisection."""
    lo = np.zeros(targets.shape, dtype=np.int64)
    hi = np.full(targets.shape, vals.shape[1], dtype=np.int64)
    while (lo < hi).any():
        mid = (lo + hi) // 2
        go = np.take_along_axis(vals, np.minimum(mid, vals.shape[1] - 1), 1) <= targets
        go &= lo < hi
        lo = np.where(go, mid + 1, lo)
        hi = np.where(go | (lo >= hi), hi, mid)
    return lo


def _means(p, vals, counts, t):
    """Cluster means (B, k) for boundaries t; NaN where a cluster has weight 0."""
    w, s1, _ = (np.take_along_axis(a, t, 1) for a in p)
    centre = (vals * counts).sum(1, keepdims=True) / np.maximum(counts.sum(1, keepdims=True), 1.0)
    dw = np.diff(w, axis=1)
    return np.where(dw > 0, np.diff(s1, axis=1) / np.maximum(dw, 1.0), np.nan) + centre


def _partition_cost(p, t):
    w, s1, s2 = (np.take_along_axis(a, t, 1) for a in p)
    dw, ds = np.diff(w, axis=1), np.diff(s1, axis=1)
    return (np.diff(s2, axis=1) - ds * ds / np.maximum(dw, 1.0)).sum(1)


def _lloyd(vals, counts, p, t, iters=30):
    """Lloyd's iterations on boundaries t (B, k+1); returns the best boundaries met and their cost."""
    w, s1, _ = p
    best_t, best_c = t, _partition_cost(p, t)
    centre = (vals * counts).sum(1, keepdims=True) / np.maximum(counts.sum(1, keepdims=True), 1.0)
    for _ in range(iters):
        cw = np.diff(np.take_along_axis(w, t, 1), axis=1)
        cs = np.diff(np.take_along_axis(s1, t, 1), axis=1)
        mean = np.where(cw > 0, cs / np.maximum(cw, 1.0), np.nan) + centre
        mean = np.fmax(np.maximum.accumulate(np.nan_to_num(mean, nan=-np.inf), axis=1), vals[:, :1])
        t_new = t.copy()
        t_new[:, 1:-1] = _bsearch_right(vals, 0.5 * (mean[:, 1:] + mean[:, :-1]))
        t_new = np.maximum.accumulate(t_new, axis=1)
        if np.array_equal(t_new, t):
            break
        t = t_new
        c = _partition_cost(p, t)
        better = c < best_c
        best_t, best_c = np.where(better[:, None], t, best_t), np.where(better, c, best_c)
    return best_t, best_c


def _bin_scale(vals, p):
    """(m,) non-decreasing, 0..2: rank fraction + value fraction, averaged over the rows. Bins of equal
    steps in it are short in count where values are dense and short in value where they are sparse, so
    tails get bins of one entry, where bound (2) is exact."""
    span = np.maximum(vals[:, -1:] - vals[:, :1], 1e-300)
    scale = vals - vals[:, :1]
    scale /= span
    scale += p[0][:, 1:] / np.maximum(p[0][:, -1:], 1.0)
    return scale[0] if len(scale) == 1 else scale.mean(0)


def _bin_edges(scale, n_bins):
    m = len(scale)
    cut = np.searchsorted(scale, np.linspace(0.0, 2.0, n_bins + 1)[1:-1], side="right")
    edges = np.concatenate([[0], cut, [m]])
    return edges[np.concatenate([[True], np.diff(edges) > 0])]


def _upper_bound(vals, counts, p, k, edges, lower, largs, iters):
    """Cost of a good k-partition: the path of bound (2) (boundaries at bin starts), then Lloyd."""
    bsz, m = vals.shape
    start = np.append(edges[1:] - 1, edges[-1])
    w, s1, s2 = (a[:, start] for a in p)
    dw, ds = p[0][:, -1:] - w, p[1][:, -1:] - s1
    last = lower[-1] + np.maximum(p[2][:, -1:] - s2 - ds * ds / np.maximum(dw, 1.0), 0.0)
    path = np.zeros((bsz, k + 1), dtype=np.int64)
    path[:, k] = len(edges) - 1
    path[:, k - 1] = np.argmin(last, axis=1)
    rows = np.arange(bsz)
    for j in range(k - 1, 1, -1):
        path[:, j - 1] = largs[j - 1][rows, path[:, j]]
    t0 = edges[path]
    t0[:, 0], t0[:, k] = 0, m
    return _lloyd(vals, counts, p, np.maximum.accumulate(t0, axis=1), iters)[1]


def _windows(vals, counts, p, scale, k, n_bins, lo, hi, ub):
    """Narrow the position windows lo/hi (B, k+1) of the boundaries with bound (2) on ``n_bins`` bins.

    Returns new windows that still hold an optimal partition, and the least upper bound met so far.
    """
    bsz, m = vals.shape
    edges = _bin_edges(scale, n_bins)
    nb = len(edges) - 1
    bin_of = lambda pos: np.searchsorted(edges, pos, side="right") - 1  # noqa: E731  (position m -> bin nb)
    lower, largs = _bin_bounds(p, k, edges, bin_of(lo), bin_of(hi))
    medges = m - edges[::-1]
    mbin_of = lambda pos: np.searchsorted(medges, pos, side="right") - 1  # noqa: E731
    mlo, mhi = (m - hi)[:, ::-1], (m - lo)[:, ::-1]  # mirrored boundary q is original boundary k - q
    upper_m, _ = _bin_bounds(p, k, medges, mbin_of(mlo), mbin_of(mhi), mirror=True)
    iters = 30 if np.isinf(ub).any() else 5  # later levels: a few Lloyd steps from the finer path
    ub = np.minimum(ub, _upper_bound(vals, counts, p, k, edges, lower, largs, iters))
    slack = ub * (1 + _TOL) + 1e-12 * p[2][:, -1]
    new_lo, new_hi = lo.copy(), hi.copy()
    cols = np.arange(nb + 1)[None, :]
    for j in range(1, k):
        suffix = upper_m[k - j - 1][:, ::-1]  # mirrored bin M - c  <->  original bin c (+ its neighbour)
        suffix = np.minimum(suffix, np.concatenate([suffix[:, 1:], np.full((bsz, 1), np.inf)], 1))
        ok = (lower[j - 1] + suffix <= slack[:, None]) & (cols >= bin_of(lo[:, j])[:, None])
        ok &= cols <= bin_of(hi[:, j])[:, None]
        any_ok = ok.any(1)
        cmin = np.where(any_ok, ok.argmax(1), 0)
        cmax = np.where(any_ok, nb - ok[:, ::-1].argmax(1), nb)
        new_lo[:, j] = np.maximum(lo[:, j], edges[cmin])
        new_hi[:, j] = np.minimum(hi[:, j], np.where(cmax >= nb, m, edges[np.minimum(cmax + 1, nb)] - 1))
    bad = (new_lo > new_hi).any(1)  # float trouble: keep the old windows for that group
    new_lo[bad], new_hi[bad] = lo[bad], hi[bad]
    return new_lo, new_hi, ub


SOLVERS = ("auto", "lagrange", "windows", "halves", "full")


def kmeans_boundaries(vals: np.ndarray, counts: np.ndarray, k: int, solver: str = "auto"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Optimal cluster boundaries (B, k+1), 0 = t_0 <= t_1 <= ... <= t_k = m, of each row (m > k), and the
    cluster means (B, k) (NaN for a cluster of weight 0).

    ``vals`` (B, m) are sorted distinct values (rows may be padded at the end by repeating the last
    value with count 0; padding entries may form clusters of weight 0). All solvers are exact:
    ``lagrange`` the penalised search of :mod:`~fmq.quant.dp_lagrange`, the groups it cannot certify
    then by ``auto``'s layered DP; ``windows`` the bin-bound windows of the module doc (for m >= 64 k;
    shorter rows go to ``halves``),
    ``halves`` the pruned half DPs met in the middle (:func:`~fmq.quant.dp_group.dp_exact`, which runs
    the plain DP on small problems), ``full`` the plain DP on every row; ``auto``: ``lagrange`` from 8
    levels on (1.6-6x faster than the layered DP on the MNIST model at 16-256 levels; bench_quantizers
    --part search), below that the layered DP chosen by size.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    bsz, m = vals.shape
    p = prefix_sums(vals, counts)
    t = np.zeros((bsz, k + 1), dtype=np.int64)
    t[:, k] = m
    if k == 1:
        return t, _means(p, vals, counts, t)
    rest = np.ones(bsz, dtype=bool)
    if solver == "lagrange" or (solver == "auto" and k >= _LAGRANGE_MIN_K):
        lagrange_groups(*p, k, t, rest, _LAGRANGE_ITERS, np.zeros(bsz, dtype=np.int64))  # rest[b]: group b solved
        rest = ~rest
    if rest.any():
        sub = (lambda a: a) if rest.all() else (lambda a: a[rest])
        t[rest] = _layered(sub(vals), sub(counts), tuple(sub(a) for a in p), k,
                           "auto" if solver == "lagrange" else solver)
    return t, _means(p, vals, counts, t)


def _layered(vals, counts, p, k, solver):
    """Optimal boundaries (B, k+1) by the layered DP: windows, halves or the plain DP (module doc)."""
    bsz, m = vals.shape
    t = np.zeros((bsz, k + 1), dtype=np.int64)
    t[:, k] = m
    # measured on the MNIST model's tensors and 10^6 Student-t weights: up to m ~ 10^5 the pruned halves
    # are as fast or faster, and their argmin tables (k m int32) stay small
    auto_windows = m >= 1 << 17 or k * m > 1 << 25
    if m < 64 * k or solver == "full" or solver == "halves" or (solver == "auto" and not auto_windows):
        dp_exact(*p, k, t, {"full": 2, "halves": 1}.get(solver, 0))
        return t
    lo = np.arange(k + 1)[None, :].repeat(bsz, 0)
    hi = m - k + lo
    scale = _bin_scale(vals, p)
    ub, levels = np.full(bsz, np.inf), []
    n_bins = max(32 * k, min(2048, m // 64))
    while n_bins <= m // 4:  # each level: finer bins, bound computed only inside the last windows
        levels.append(n_bins)
        n_bins *= 8
    for n_bins in levels or [m // 4]:
        lo, hi, ub = _windows(vals, counts, p, scale, k, n_bins, lo, hi, ub)
    w, s1, s2 = p
    rows_b = np.arange(bsz)[:, None]
    r1 = np.minimum(lo[:, 1:2] + np.arange(int((hi[:, 1] - lo[:, 1]).max()) + 1)[None, :], hi[:, 1:2])
    d = np.maximum(s2[rows_b, r1] - s1[rows_b, r1] ** 2 / np.maximum(w[rows_b, r1], 1.0), 0.0)  # D_1 = cost(0, i)
    args = []
    for j in range(2, k):
        d, arg = _layer(d, p, p, lo[:, j], hi[:, j], lo[:, j - 1], hi[:, j - 1], None, 1,
                        doff=lo[:, j - 1], toff=lo[:, j - 1])
        args.append(arg.astype(np.int32))
    last_lo, last_hi = lo[:, k - 1], np.minimum(hi[:, k - 1], m - 1)
    rk = np.minimum(last_lo[:, None] + np.arange(d.shape[1])[None, :], last_hi[:, None])
    dw, ds = w[:, -1:] - w[rows_b, rk], s1[:, -1:] - s1[rows_b, rk]
    final = d + np.maximum(s2[:, -1:] - s2[rows_b, rk] - ds * ds / np.maximum(dw, 1.0), 0.0)
    t[:, k - 1] = rk[np.arange(bsz), np.argmin(final, axis=1)]
    rows = np.arange(bsz)
    for j in range(k - 1, 1, -1):  # args[j - 2] holds T_j for rows lo_j + r
        t[:, j - 1] = args[j - 2][rows, np.minimum(t[:, j] - lo[:, j], args[j - 2].shape[1] - 1)]
    return t
