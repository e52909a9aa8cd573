"""Compiled inner loops of the exact 1-D k-means DP (numba).

For one group, a layer j of the DP of :mod:`fmq.quant.kmeans1d` is the row minima of

    M(i, t) = D_{j-1}(t) + cost(t, i),   cost(t, i) = S2_i - S2_t - (S1_i - S1_t)² / (W_i - W_t)     (1)

over rows i and candidates t <= i - 1, where W, S1, S2 are prefix sums of counts, count-weighted values
and squares. ``cost`` is Monge, so the smallest argmin T_j(i) is non-decreasing in i; in the
unrestricted DP also T_{j-1}(i) <= T_j(i). Two exact ways to find the minima, both taking the
smallest candidate on ties:

* divide and conquer over the rows: the middle row is scanned over its node's candidate range and its
  argmin splits the range for the two halves (O(n log n) per layer; Grønlund et al. 2017,
  arXiv 1701.07204), the candidates also bounded below by T_{j-1}(i) when known;
* Knuth–Yao ranges, unrestricted layers only: T_{j-1}(i) <= T_j(i) <= T_j(i+1), rows from the last
  down, each scanning only that range. The ranges shrink as j grows (about i / j² candidates for
  evenly spread values), so past the first layers a row costs a few candidates.

:func:`dp_full` runs the whole DP of one group, switching from the first to the second when the
ranges the last layer would have needed are short (:mod:`fmq.quant.dp_group` runs it, or a pruned
version, on every group); :func:`layer_minima` is one restricted layer for many groups (the windows and
bin bounds of :mod:`fmq.quant.kmeans1d`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["layer_minima", "dp_full", "count_below_rows"]

_KY_RANGE = 1.0  # Knuth–Yao once the last layer's mean range per row is below this many log2(rows)


@njit(cache=True, inline="always")
def _entry(dprev, dcol, wj, s1j, s2j, t, wi, s1i, s2i):
    u = np.uint64(t)  # unsigned index: no negative-index wraparound test (15 % faster)
    dw = wi - wj[u]
    ds = s1i - s1j[u]
    c = s2i - s2j[u] - ds * ds / (dw if dw > 1.0 else 1.0)
    return dprev[np.uint64(dcol)] + (c if c > 0.0 else 0.0)


@njit(cache=True)
def _dc_rows(dprev, doff, wj, s1j, s2j, wi, s1i, s2i, rlo, rhi, clo0, chi0, tprev, toff, use_tprev, strict,
             best_out, arg_out, stack):
    """Divide and conquer over rows rlo..rhi (written at r = i - rlo); candidates clo0..min(chi0, i -
    strict), dprev at t - doff; ``use_tprev``: tprev at clip(i - toff) bounds the argmin below. A row
    without candidates gets +inf and, as argmin, its node's lower bound."""
    nt = tprev.shape[0]
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, rhi - rlo, clo0, chi0
    sp = 1
    while sp > 0:
        sp -= 1
        lo, hi, olo, ohi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        mid = (lo + hi) >> 1
        i = rlo + mid
        clo = olo
        if use_tprev:
            clo = max(clo, tprev[min(max(i - toff, 0), nt - 1)])
        chi = min(ohi, i - strict)
        best, arg = np.inf, olo
        if clo <= chi:
            arg = clo
            wr, s1r, s2r = wi[i], s1i[i], s2i[i]
            for t in range(clo, chi + 1):
                v = _entry(dprev, t - doff, wj, s1j, s2j, t, wr, s1r, s2r)
                take = v < best
                best = v if take else best
                arg = t if take else arg
        best_out[mid], arg_out[mid] = best, arg
        if lo <= mid - 1:
            stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = lo, mid - 1, olo, arg
            sp += 1
        if mid + 1 <= hi:
            stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = mid + 1, hi, arg, ohi
            sp += 1


@njit(cache=True)
def _ky_rows(dprev, w, s1, s2, j, nrow, tmax, tprev, best_out, arg_out):
    """Unrestricted layer j >= 3 by Knuth–Yao ranges: rows i = j + r (r < nrow), candidates
    t = j - 1 .. tmax; dprev at t - (j - 1), tprev = T_{j-1} at i - (j - 1) for i <= tmax.

    Most ranges hold one to three candidates, so the first two are always evaluated and chosen between
    without a branch (branch mispredictions, not arithmetic, dominated the first version: 1.6x).
    """
    upper = tmax
    for r in range(nrow - 1, -1, -1):
        i = j + r
        hi = min(upper, i - 1)  # T_j(i) <= T_j(i + 1)
        lower = min(max(tprev[min(i, tmax) - (j - 1)], j - 1), hi)  # T_{j-1}(i); min: rounding ties only
        wr, s1r, s2r = w[i], s1[i], s2[i]
        second = min(lower + 1, tmax)
        v0 = _entry(dprev, lower - (j - 1), w, s1, s2, lower, wr, s1r, s2r)
        v1 = _entry(dprev, second - (j - 1), w, s1, s2, second, wr, s1r, s2r)
        take = (lower + 1 <= hi) and (v1 < v0)
        best = v1 if take else v0
        arg = lower + 1 if take else lower
        for t in range(lower + 2, hi + 1):
            v = _entry(dprev, t - (j - 1), w, s1, s2, t, wr, s1r, s2r)
            if v < best:
                best, arg = v, t
        best_out[r], arg_out[r] = best, arg
        upper = arg


@njit(cache=True)
def dp_full(w, s1, s2, k, t_out):
    """The whole unrestricted DP of one group (prefix sums w/s1/s2 (m+1,), 2 <= k < m): optimal boundaries
    t_out (k+1), smallest on ties. Divide and conquer layers, then Knuth–Yao ones once their ranges are short."""
    m = w.shape[0] - 1
    nr = m - k + 1  # boundary j lies in j .. m - k + j
    d, dn = np.empty(nr), np.empty(nr)
    targ = np.empty((k, nr), dtype=np.int32)  # targ[j, r]: T_j(j + r)
    tcur, tprev = np.zeros(nr, dtype=np.int64), np.zeros(nr, dtype=np.int64)
    stack = np.empty((128, 4), dtype=np.int64)
    for r in range(nr):
        i = 1 + r
        c = s2[i] - s1[i] * s1[i] / max(w[i], 1.0)
        d[r] = c if c > 0.0 else 0.0
    ky = False
    limit = _KY_RANGE * np.log2(max(nr - 1, 2))
    for j in range(2, k):
        if ky:
            _ky_rows(d, w, s1, s2, j, nr, m - k + j - 1, tprev, dn, tcur)
        else:
            _dc_rows(d, j - 1, w, s1, s2, w, s1, s2, j, m - k + j, j - 1, m - k + j - 1, tprev, j - 1, j > 2, 1,
                     dn, tcur, stack)
        if j > 2 and not ky:
            span = 0
            for r in range(1, nr):
                span += tcur[r] - tprev[r] + 1
            ky = span < limit * (nr - 1)
        for r in range(nr):
            targ[j, r] = tcur[r]
        d, dn = dn, d
        tprev, tcur = tcur, tprev
    best, arg = np.inf, k - 1  # last cluster: t_{k-1} .. m
    for r in range(nr):
        t = k - 1 + r
        dw = w[m] - w[t]
        ds = s1[m] - s1[t]
        c = s2[m] - s2[t] - ds * ds / (dw if dw > 1.0 else 1.0)
        v = d[r] + (c if c > 0.0 else 0.0)
        if v < best:
            best, arg = v, t
    t_out[k], t_out[k - 1] = m, arg
    for j in range(k - 1, 1, -1):
        t_out[j - 1] = targ[j, t_out[j] - j]
    t_out[0] = 0


@njit(cache=True, nogil=True)
def layer_minima(dprev, doff, wj, s1j, s2j, wi, s1i, s2i, row_lo, row_hi, cand_lo, cand_hi,
                 tprev, toff, use_tprev, strict, best_out, arg_out):
    """Row minima of (1) for every group b (restricted windows), by divide and conquer over the rows.

    dprev (B, nd): D(t) at column t - doff[b]. wj/s1j/s2j (B, nj): sums at candidate t; wi/s1i/s2i
    (B, ni): sums at row i. ``use_tprev``: tprev (B, nt) at column clip(i - toff[b]) bounds T(i) below.
    Writes best_out/arg_out (B, R) for rows row_lo[b] + r (rows past row_hi[b] repeat row_hi[b]).
    """
    stack = np.empty((128, 4), dtype=np.int64)
    for b in range(best_out.shape[0]):
        _dc_rows(dprev[b], doff[b], wj[b], s1j[b], s2j[b], wi[b], s1i[b], s2i[b], row_lo[b], row_hi[b],
                 cand_lo[b], cand_hi[b], tprev[b], toff[b], use_tprev, strict, best_out[b], arg_out[b], stack)
        nr = row_hi[b] - row_lo[b] + 1
        for r in range(nr, best_out.shape[1]):
            best_out[b, r], arg_out[b, r] = best_out[b, nr - 1], arg_out[b, nr - 1]


@njit(cache=True, nogil=True)
def count_below_rows(thresholds, x, out):
    """out[b, i] = how many of the sorted thresholds[b] are < x[b, i]: a binary search per weight, no
    (B, n) temporaries."""
    for b in range(x.shape[0]):
        out[b] = np.searchsorted(thresholds[b], x[b], side="left")
