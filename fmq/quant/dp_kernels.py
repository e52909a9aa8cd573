"""Compiled inner loops of the exact 1-D k-means DP (numba): one layer's row minima, many groups at once.

For each group b, a layer of the DP of :mod:`fmq.quant.kmeans1d` is the row minima of

    M(i, t) = dprev(t) + cost(t, i),   cost(t, i) = S2_i - S2_t - (S1_i - S1_t)² / (W_i - W_t)     (1)

over rows i = row_lo .. row_hi and candidates t = cand_lo .. min(cand_hi, i - strict), where W, S1, S2
are prefix sums of counts, count-weighted values and squares (the candidates' and the rows' sums may
be taken at different positions, as the bin bounds do). ``cost`` is Monge, so the smallest argmin
T(i) is non-decreasing in i. Two exact ways to use it:

* divide and conquer over the rows: the middle row is scanned over the node's candidate range, its
  argmin splits the range for the two halves (Grønlund et al. 2017, arXiv 1701.07204);
* Knuth–Yao bounds, for the unrestricted layers of the DP only: T_{j-1}(i) <= T_j(i) <= T_j(i+1), rows
  from the last down, each scanning just that range. Cheap where the range is a few candidates (many
  levels per group); the caller picks per layer from the ranges the previous layer needed.

Ties go to the smallest candidate in both. Both are O(1) memory beyond the outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["layer_minima", "layer_minima_ky"]


@njit(cache=True, inline="always")
def _entry(dprev, dcol, wj, s1j, s2j, t, wi, s1i, s2i):
    dw = wi - wj[t]
    ds = s1i - s1j[t]
    c = s2i - s2j[t] - ds * ds / (dw if dw > 1.0 else 1.0)
    return dprev[dcol] + (c if c > 0.0 else 0.0)


@njit(cache=True)
def layer_minima(dprev, doff, wj, s1j, s2j, wi, s1i, s2i, row_lo, row_hi, cand_lo, cand_hi,
                 tprev, toff, use_tprev, strict, best_out, arg_out):
    """Row minima of (1) for every group b, by divide and conquer over the rows.

    dprev (B, nd): dprev(t) at column t - doff[b]. wj/s1j/s2j (B, nj): sums at candidate t; wi/s1i/s2i
    (B, ni): sums at row i. ``use_tprev``: tprev (B, nt) at column clip(i - toff[b]) bounds T(i) below.
    Writes best_out/arg_out (B, R) for rows row_lo[b] + r (rows past row_hi[b] repeat row_hi[b]); a row
    without candidates gets +inf and, as argmin, its node's lower bound.
    """
    bsz, r_all = best_out.shape
    nt = tprev.shape[1]
    stack = np.empty((128, 4), dtype=np.int64)
    for b in range(bsz):
        rlo, nr = row_lo[b], row_hi[b] - row_lo[b] + 1
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, nr - 1, cand_lo[b], cand_hi[b]
        sp = 1
        while sp > 0:
            sp -= 1
            lo, hi, olo, ohi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
            mid = (lo + hi) >> 1
            i = rlo + mid
            clo = olo
            if use_tprev:
                q = min(max(i - toff[b], 0), nt - 1)
                clo = max(clo, tprev[b, q])
            chi = min(ohi, i - strict)
            best, arg = np.inf, olo
            if clo <= chi:
                arg = clo
                wr, s1r, s2r = wi[b, i], s1i[b, i], s2i[b, i]
                for t in range(clo, chi + 1):
                    v = _entry(dprev[b], t - doff[b], wj[b], s1j[b], s2j[b], t, wr, s1r, s2r)
                    if v < best:
                        best, arg = v, t
            best_out[b, mid], arg_out[b, mid] = best, arg
            if lo <= mid - 1:
                stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = lo, mid - 1, olo, arg
                sp += 1
            if mid + 1 <= hi:
                stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = mid + 1, hi, arg, ohi
                sp += 1
        for r in range(nr, r_all):
            best_out[b, r], arg_out[b, r] = best_out[b, nr - 1], arg_out[b, nr - 1]


@njit(cache=True)
def layer_minima_ky(dprev, w, s1, s2, j, m, k, tprev, best_out, arg_out):
    """Layer j (2 <= j < k) of the unrestricted DP by Knuth–Yao bounds; returns the candidates scanned.

    Rows i = j + r and candidates t = j - 1 + q, r, q < m - k + 1 (the positions a j-th and a (j-1)-th
    boundary can take); dprev (B, m-k+1) is layer j-1 at q, tprev (B, m-k+1) its argmin t. w/s1/s2
    (B, m+1) are the prefix sums. Writes best_out/arg_out (B, m-k+1).
    """
    bsz = dprev.shape[0]
    nr = m - k + 1
    scanned = 0
    for b in range(bsz):
        upper = j - 1 + nr - 1  # T_j(i) <= i - 1, and <= T_j(i + 1)
        for r in range(nr - 1, -1, -1):
            i = j + r
            lower = tprev[b, min(r + 1, nr - 1)] if j > 2 else 0  # T_{j-1}(i): layer j-1 holds row i at r+1
            lower = max(lower, j - 1)
            hi = min(upper, i - 1)
            lower = min(lower, hi)  # the bounds cross only through rounding ties: scan one candidate
            wr, s1r, s2r = w[b, i], s1[b, i], s2[b, i]
            best, arg = np.inf, lower
            for t in range(lower, hi + 1):
                v = _entry(dprev[b], t - (j - 1), w[b], s1[b], s2[b], t, wr, s1r, s2r)
                if v < best:
                    best, arg = v, t
            scanned += hi - lower + 1
            best_out[b, r], arg_out[b, r] = best, arg
            upper = arg
    return scanned
