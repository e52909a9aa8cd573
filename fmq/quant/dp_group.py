"""The whole exact DP of each group in compiled code: two half DPs pruned by an upper bound, met in the middle.

For one group of m sorted distinct values (with counts) and k clusters, let D_j(i) be the least cost of
j clusters over the first i entries and E_j(i) that of j clusters over the entries from i on. The h-th
boundary of an optimal partition is some position i, so for any 1 <= h < k

    OPT = min_i D_h(i) + E_{k-h}(i).                                                            (1)

Both halves are the forward DP of :mod:`fmq.quant.dp_kernels` (E on the mirrored values), with
h = k // 2. Pruning that keeps them exact: costs are >= 0, so along an optimal partition every
D_j(t_j) and E_{k-j}(t_j) is <= OPT <= U, the cost of any k-partition. D_j(i) never decreases with i
(one entry more never lowers the least cost), so layer j needs only the rows i <= imax_j, the last
with D_j(i) <= U, found by galloping with single rows; its candidates are the rows <= imax_{j-1} of
layer j-1. A row i <= imax_j has its true argmin among those candidates (that argmin's own cost is
<= D_j(i) <= U), so its value and argmin are exact and the Knuth–Yao bounds hold among such rows.
The first layers of each half, where merging the sparse tails is costly, keep few rows: on the MNIST
model's channels about 40 % of the k (m - k + 1) cells of the full DP remain.

U: Ward's greedy merging of adjacent clusters (least increase first) from about 4k runs (equal steps
of rank + value fraction, so sparse tails start as single entries) down to k clusters, polished by
Lloyd's iterations; 1.0-1.3 x OPT on the model's weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dp_kernels import _KY_RANGE, _dc_rows, _entry, _ky_rows, dp_full

__all__ = ["dp_exact", "upper_bound"]

_LLOYD_ITERS = 10
_SMALL = 4000  # below this many cells (or k < 8) the plain DP beats the bound's and halves' overhead


@njit(cache=True)
def _cost(w, s1, s2, t, i):
    dw = w[i] - w[t]
    ds = s1[i] - s1[t]
    c = s2[i] - s2[t] - ds * ds / (dw if dw > 1.0 else 1.0)
    return c if c > 0.0 else 0.0


@njit(cache=True)
def _partition_cost(w, s1, s2, t):
    total = 0.0
    for c in range(t.shape[0] - 1):
        total += _cost(w, s1, s2, t[c], t[c + 1])
    return total


@njit(cache=True)
def _merge_cost(cnt, sm, a, b):
    if cnt[a] <= 0.0 or cnt[b] <= 0.0:
        return 0.0
    diff = sm[a] / cnt[a] - sm[b] / cnt[b]
    return cnt[a] * cnt[b] / (cnt[a] + cnt[b]) * diff * diff


@njit(cache=True)
def _sift_down(key, item, p, size):
    while True:
        c1, c2, best = 2 * p + 1, 2 * p + 2, p
        if c1 < size and key[c1] < key[best]:
            best = c1
        if c2 < size and key[c2] < key[best]:
            best = c2
        if best == p:
            return
        key[p], key[best] = key[best], key[p]
        item[p], item[best] = item[best], item[p]
        p = best


@njit(cache=True)
def _push(key, item, size, cost, a):
    p = size
    key[p], item[p] = cost, a
    while p > 0 and key[(p - 1) // 2] > key[p]:
        q = (p - 1) // 2
        key[p], key[q] = key[q], key[p]
        item[p], item[q] = item[q], item[p]
        p = q
    return size + 1


@njit(cache=True)
def _runs(w, s1, n):
    """Edges of at most n runs, 0 = e_0 < ... = m, at equal steps of rank fraction + value fraction: runs
    of equal count where values are dense, short (single entries) in sparse tails."""
    m = w.shape[0] - 1
    edges = np.empty(n + 1, dtype=np.int64)
    edges[0], size = 0, 1
    first, last = 0, m - 1  # the extreme entries of weight > 0 set the value scale
    while first < m - 1 and w[first + 1] == w[first]:
        first += 1
    while last > 0 and w[last + 1] == w[last]:
        last -= 1
    lo_v = (s1[first + 1] - s1[first]) / max(w[first + 1] - w[first], 1.0)
    span = (s1[last + 1] - s1[last]) / max(w[last + 1] - w[last], 1.0) - lo_v
    step, target, v = 2.0 / n, 2.0 / n, lo_v
    for p in range(m - 1):
        if w[p + 1] > w[p]:
            v = (s1[p + 1] - s1[p]) / (w[p + 1] - w[p])
        scale = w[p + 1] / w[m] + ((v - lo_v) / span if span > 0.0 else 0.0)
        if scale >= target:
            edges[size] = p + 1
            size += 1
            while target <= scale:
                target += step
            if size == n:
                break
    edges[size] = m
    return edges[:size + 1]


@njit(cache=True)
def _ward(w, s1, k, t_out):
    """Ward's greedy merging of adjacent clusters down to k: boundaries t_out (k+1).

    A min-heap of (merge cost, left cluster); an entry is stale once its cost differs from the current
    merge cost of that cluster with its right neighbour. (Only a bound comes of it: any partition is
    valid, so a rare mistaken merge could cost speed, never exactness.)
    """
    m = w.shape[0] - 1
    start = _runs(w, s1, 4 * k) if m > 8 * k else np.arange(m + 1)
    if start.shape[0] - 1 < 2 * k:  # value jumps merged too many steps: start from single entries
        start = np.arange(m + 1)
    n = start.shape[0] - 1
    cnt, sm = w[start[1:]] - w[start[:-1]], s1[start[1:]] - s1[start[:-1]]
    nxt, prv = np.arange(1, n + 1), np.arange(-1, n - 1)
    alive = np.ones(n, dtype=np.bool_)
    key, item = np.empty(3 * n), np.empty(3 * n, dtype=np.int64)
    size = n - 1
    for a in range(size):
        key[a], item[a] = _merge_cost(cnt, sm, a, a + 1), a
    for p in range(size // 2 - 1, -1, -1):
        _sift_down(key, item, p, size)
    clusters = n
    while clusters > k and size > 0:
        cost, a = key[0], item[0]
        size -= 1
        key[0], item[0] = key[size], item[size]
        _sift_down(key, item, 0, size)
        if not alive[a] or nxt[a] >= n or cost != _merge_cost(cnt, sm, a, nxt[a]):
            continue
        b = nxt[a]
        cnt[a] += cnt[b]
        sm[a] += sm[b]
        alive[b] = False
        nxt[a] = nxt[b]
        if nxt[b] < n:
            prv[nxt[b]] = a
        clusters -= 1
        if nxt[a] < n:
            size = _push(key, item, size, _merge_cost(cnt, sm, a, nxt[a]), a)
        if prv[a] >= 0:
            size = _push(key, item, size, _merge_cost(cnt, sm, prv[a], a), prv[a])
    c, u = 0, 0
    while u < n and c < k:
        t_out[c] = start[u]
        u = nxt[u]
        c += 1
    for q in range(c, k + 1):
        t_out[q] = m


@njit(cache=True)
def upper_bound(w, s1, s2, k):
    """Cost of a good k-partition (m > k): Ward's merging, then Lloyd's iterations; the least met."""
    m = w.shape[0] - 1
    t = np.empty(k + 1, dtype=np.int64)
    _ward(w, s1, k, t)
    best = _partition_cost(w, s1, s2, t)
    vals = np.empty(m)  # (centred) value of each entry; a weight-0 entry repeats its left neighbour's
    for p in range(m):
        dw = w[p + 1] - w[p]
        vals[p] = (s1[p + 1] - s1[p]) / dw if dw > 0.0 else (vals[p - 1] if p > 0 else 0.0)
    mean = np.empty(k)
    for _ in range(_LLOYD_ITERS):
        for c in range(k):
            dw = w[t[c + 1]] - w[t[c]]
            mean[c] = (s1[t[c + 1]] - s1[t[c]]) / dw if dw > 0.0 else (mean[c - 1] if c > 0 else -np.inf)
        changed, p = False, 0
        for c in range(1, k):  # each entry to its nearest mean: boundaries at the midpoints
            mid = 0.5 * (mean[c - 1] + mean[c]) if mean[c - 1] > -np.inf else -np.inf
            while p < m and vals[p] <= mid:
                p += 1
            changed |= p != t[c]
            t[c] = p
        if not changed:
            break
        best = min(best, _partition_cost(w, s1, s2, t))
    return best


@njit(cache=True)
def _row(d, j, w, s1, s2, i, lo, hi):
    best = np.inf
    wr, s1r, s2r = w[i], s1[i], s2[i]
    for t in range(lo, hi + 1):
        best = min(best, _entry(d, t - (j - 1), w, s1, s2, t, wr, s1r, s2r))
    return best


@njit(cache=True)
def _half(w, s1, s2, k, h, ub, targ):
    """Layers 1..h of the forward DP, pruned by ``ub``: returns D_h (at i - h, for i <= imax_h) and
    imax_h; T_j goes to targ[j] at i - j."""
    m = w.shape[0] - 1
    nr = m - k + 1
    d, dn = np.empty(nr), np.empty(nr)
    tprev, tcur = np.empty(nr, dtype=np.int64), np.empty(nr, dtype=np.int64)
    stack = np.empty((128, 4), dtype=np.int64)
    imax = 1
    for i in range(1, m - k + 2):
        d[i - 1], tprev[i - 1] = _cost(w, s1, s2, 0, i), 0
        if d[i - 1] > ub:
            break
        imax = i
    ky = False
    limit = _KY_RANGE * np.log2(max(m - k, 2))
    for j in range(2, h + 1):
        pmax, last = imax, m - k + j  # candidates j-1 .. pmax; rows j .. last at most
        good, bad, step = min(pmax + 1, last), last + 1, 1  # D_j(pmax + 1) <= D_{j-1}(pmax) <= ub
        while good + step < bad:  # gallop up, then bisect: the last row with D_j(i) <= ub
            i = good + step
            if _row(d, j, w, s1, s2, i, tprev[min(i, pmax) - (j - 1)], min(i - 1, pmax)) <= ub:
                good, step = i, 2 * step
            else:
                bad = i
        while bad - good > 1:
            i = (good + bad) >> 1
            if _row(d, j, w, s1, s2, i, tprev[min(i, pmax) - (j - 1)], min(i - 1, pmax)) <= ub:
                good = i
            else:
                bad = i
        imax = good
        nrow = imax - j + 1
        if ky:
            _ky_rows(d, w, s1, s2, j, nrow, pmax, tprev, dn, tcur)
        else:
            _dc_rows(d, j - 1, w, s1, s2, w, s1, s2, j, imax, j - 1, pmax, tprev[:pmax - j + 2], j - 1, j > 2,
                     1, dn, tcur, stack)
            if j > 2 and nrow > 1:  # what this layer would have cost by Knuth–Yao ranges
                span = 0
                for r in range(1, nrow):
                    span += tcur[r] - tprev[min(r, pmax - j + 1)] + 1
                ky = span < limit * (nrow - 1)
        for r in range(nrow):
            targ[j, r] = tcur[r]
        d, dn = dn, d
        tprev, tcur = tcur, tprev
    return d, imax


@njit(cache=True)
def _dp_meet(w, s1, s2, k, ub, t_out):
    """Optimal boundaries of one group by (1); False if no partition costs <= ub (ub too low)."""
    m = w.shape[0] - 1
    nr, h = m - k + 1, k // 2
    wm, s1m, s2m = w[m] - w[::-1], s1[m] - s1[::-1], s2[m] - s2[::-1]  # the mirrored group
    targf = np.empty((h + 1, nr), dtype=np.int32)
    df, imf = _half(w, s1, s2, k, h, ub, targf)
    targb = np.empty((k - h + 1, nr), dtype=np.int32)
    db, imb = _half(wm, s1m, s2m, k, k - h, ub, targb)
    best, th = np.inf, -1
    for i in range(max(h, m - imb), min(imf, m - k + h) + 1):
        v = df[i - h] + db[m - i - (k - h)]
        if v < best:
            best, th = v, i
    if th < 0 or best > ub:
        return False
    t_out[0], t_out[h], t_out[k] = 0, th, m
    for j in range(h, 1, -1):
        t_out[j - 1] = targf[j, t_out[j] - j]
    b = m - th  # mirrored: boundary q of the suffix's reversal is m - t_{k-q}
    for q in range(k - h, 1, -1):
        b = targb[q, b - q]
        t_out[k - q + 1] = m - b
    return True


@njit(cache=True, nogil=True)  # nogil: app sessions (threads) can quantize at once
def dp_exact(w, s1, s2, k, t_out, mode):
    """The exact DP of every group, 2 <= k < m: w/s1/s2 (B, m+1) prefix sums; writes optimal boundaries
    t_out (B, k+1), 0 = t_0 <= ... <= t_k = m. ``mode`` 0: small problems run the plain DP
    (:func:`~fmq.quant.dp_kernels.dp_full`), the others the pruned halves met in the middle; 1: always
    the halves; 2: always the plain DP.

    One thread: numba's parallel groups (prange) were slower here, their worker threads competing with
    torch's on a loaded 2-core machine.
    """
    m = w.shape[1] - 1
    for b in range(w.shape[0]):
        if mode == 2 or (mode == 0 and (k < 8 or k * (m - k + 1) < _SMALL)):
            dp_full(w[b], s1[b], s2[b], k, t_out[b])
            continue
        ub = upper_bound(w[b], s1[b], s2[b], k)
        slack = 1e-9 * ub + 1e-12 * s2[b, -1]  # rounding: s2[-1] is the one-cluster cost, >= any cost here
        if not _dp_meet(w[b], s1[b], s2[b], k, ub + slack, t_out[b]):
            _dp_meet(w[b], s1[b], s2[b], k, np.inf, t_out[b])  # never expected: a bound below the optimum
