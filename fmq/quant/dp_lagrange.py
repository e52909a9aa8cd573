"""Exact 1-D k-means by a Lagrangian (penalised) search, in compiled code: fast for many levels.

For one group with prefix sums W, S1, S2 of counts, count-weighted values and squares, and
cost(t, i) = S2_i - S2_t - (S1_i - S1_t)² / (W_i - W_t), drop the constraint "exactly k clusters"
and charge λ > 0 per cluster instead:

    F(0) = 0,   F(i) = λ + min_{t < i} F(t) + cost(t, i),                                        (1)

a one-dimensional DP with no layers: its cost is one pass over the m entries, whatever k is.
Certificate: if an optimal partition of (1) has exactly k clusters, it is an optimal k-partition,
because every k-partition P' has cost(P') + λk >= F(m) = cost(P) + λk. The least cost of j clusters
is convex in j (the cost is Monge: Aggarwal, Schieber & Tokuyama 1994), so such a λ exists unless
OPT(j) has collinear points around k; a bisection on λ in log space (log j is close to linear in
log λ: OPT(j) ~ C / j² for smooth distributions, so λ ~ 2C / j³) finds it in about 3-6 solves.
Where no solve lands on k within the iteration budget the caller falls back to the layered DP, so
the answer is always exact; only the time depends on the search.

(1) is solved exactly in O(m log m) with a queue of candidates (Galil & Park 1992, "Dynamic
programming with convexity, concavity and sparsity"): the cost obeys the quadrangle inequality, so
once a later candidate t beats an earlier one at some row it beats it at every later row. Each new
candidate pops the queue's tail while it beats the tail from the tail's first row on, then finds its
crossover with the remaining tail by galloping from the left (crossovers lie a few clusters ahead:
2.5-3x faster than plain bisection on 10^6 values) and bisection.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dp_kernels import _entry

__all__ = ["lagrange_groups"]

_RHO0 = 5.44  # λ k³ / S2 of a Gaussian at high resolution, (∫p^{1/3})³ / (6 var): the first guess


@njit(cache=True, inline="always")
def _val(f, w, s1, s2, t, i):
    """F(t) + cost(t, i): the DP entry of :func:`fmq.quant.dp_kernels._entry` with F as the previous layer."""
    return _entry(f, t, w, s1, s2, t, w[i], s1[i], s2[i])


@njit(cache=True)
def _penalised(w, s1, s2, lam, f, parent, cnt, qc, qs):
    """Solve (1): F in f, each row's argmin in parent, clusters of that optimum in cnt; returns cnt[m]."""
    m = w.shape[0] - 1
    f[0] = 0.0
    cnt[0] = 0
    head, tail = 0, 1
    qc[0], qs[0] = 0, 1  # queue: candidate qc[q] is the best from row qs[q] until qs[q + 1] - 1
    for i in range(1, m + 1):
        while tail - head > 1 and qs[head + 1] <= i:
            head += 1
        t = qc[head]
        f[i] = _val(f, w, s1, s2, t, i) + lam
        parent[i] = t
        cnt[i] = cnt[t] + 1
        if i == m:
            break
        while tail > head:  # candidate i serves rows > i; drop tails it beats from their first row on
            st = max(qs[tail - 1], i + 1)
            if _val(f, w, s1, s2, i, st) <= _val(f, w, s1, s2, qc[tail - 1], st):
                tail -= 1
            else:
                break
        if tail == head:
            qc[tail], qs[tail] = i, i + 1
            tail += 1
            continue
        b = qc[tail - 1]
        lo, hi, step = max(qs[tail - 1], i + 1) + 1, m + 1, 1
        while lo + step - 1 <= m:  # gallop to the first row where i is at least as good as b
            r = lo + step - 1
            if _val(f, w, s1, s2, i, r) <= _val(f, w, s1, s2, b, r):
                hi = r
                break
            lo = r + 1
            step *= 2
        while lo < hi:
            mid = (lo + hi) >> 1
            if _val(f, w, s1, s2, i, mid) <= _val(f, w, s1, s2, b, mid):
                hi = mid
            else:
                lo = mid + 1
        if lo <= m:
            qc[tail], qs[tail] = i, lo
            tail += 1
    return cnt[m]


@njit(cache=True)
def _solve(w, s1, s2, k, lam, t_out, max_iter, f, parent, cnt, qc, qs, solves):
    """Search λ from ``lam`` until (1) has an optimum of exactly k clusters; write its boundaries to
    t_out and return that λ, or -1.0 after max_iter solves (t_out untouched); solves[0] += solves made.

    Each next λ: the secant of log j against log λ through the last two solves (the first step
    assumes the slope -1/3 of λ ~ j^-3), kept inside the bracket found so far and off its ends, or
    the bracket's log midpoint where two solves have not halved it. (A
    power law fitted to the costs OPT(j) the solves also give was tried instead: 2-4x more solves.)"""
    m = w.shape[0] - 1
    llo, lhi = 0.0, np.inf  # more clusters than k at λ <= llo, fewer at λ >= lhi
    lprev, cprev = 0.0, 0
    widths = np.full(3, np.inf)  # log widths of the bracket after the last solves
    for it in range(max_iter):
        c = _penalised(w, s1, s2, lam, f, parent, cnt, qc, qs)
        solves[0] += 1
        if c == k:
            p = m
            for q in range(k, 0, -1):
                t_out[q] = p
                p = parent[p]
            t_out[0] = 0
            return lam
        if c > k:
            llo = lam
        else:
            lhi = lam
        if lhi <= llo * (1.0 + 1e-6):  # the bracket collapsed: k is on a straight piece of OPT(j)
            break
        widths[it % 3] = np.log(lhi) - np.log(llo) if llo > 0.0 else np.inf
        slope = -1.0 / 3.0
        if cprev > 0 and cprev != c and lprev != lam:
            slope = min(max((np.log(c) - np.log(cprev)) / (np.log(lam) - np.log(lprev)), -3.0), -0.05)
        x = np.log(lam) + (np.log(k) - np.log(c)) / slope
        lprev, cprev = lam, c
        if llo > 0.0 and lhi < np.inf:
            a, b = np.log(llo), np.log(lhi)
            x = min(max(x, a + 0.05 * (b - a)), b - 0.05 * (b - a))
            if it >= 2 and widths[it % 3] > 0.5 * widths[(it + 1) % 3]:  # slow: bisect
                x = 0.5 * (a + b)
        lam = np.exp(x)
    return -1.0


@njit(cache=True, nogil=True)
def lagrange_groups(w, s1, s2, k, t_out, solved, max_iter, solves):
    """Every group b (prefix sums w/s1/s2 (B, m+1)) by (1): writes t_out[b] (k+1) and solved[b] = True
    where a solve landed on exactly k clusters, and solves[b] the penalised DPs it took. Groups with
    fewer than 2k entries of positive weight are left to the layered DP. The λ found for one group, in
    units of S2 / k³, starts the next."""
    m = w.shape[1] - 1
    f, parent = np.empty(m + 1), np.empty(m + 1, dtype=np.int64)
    cnt, qc, qs = (np.empty(m + 1, dtype=np.int64), np.empty(m + 1, dtype=np.int64),
                   np.empty(m + 1, dtype=np.int64))
    rho = _RHO0
    for b in range(w.shape[0]):
        solved[b], solves[b] = False, 0
        entries = 0
        for p in range(m):
            entries += w[b, p + 1] > w[b, p]
        scale = s2[b, m] / (k * k * k)
        if entries < 2 * k or not scale > 0.0:
            continue
        lam = _solve(w[b], s1[b], s2[b], k, rho * scale, t_out[b], max_iter, f, parent, cnt, qc, qs,
                     solves[b:b + 1])
        if lam > 0.0:
            solved[b] = True
            rho = lam / scale
