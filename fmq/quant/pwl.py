"""Piecewise-linear quantizers: PWLQ of Fang et al. 2020, and the paper's quantile variant.

``pwl`` — Fang et al., "Post-training piecewise linear quantization for deep neural networks", ECCV 2020
(arXiv 2002.00104), non-overlapping scheme. With m = max|w| and a breakpoint 0 < p < m, the range
[-m, m] is cut into a centre [-p, p] and two tails p < |w| <= m, each quantized uniformly:

    centre: c_j = -p + 2p j / (N_c - 1),         j = 0 .. N_c - 1,   N_c = 2**(b-1)
    tails:  t_j = ±(p + (m - p) j / (N_t - 1)),  j = 0 .. N_t - 1,   N_t = 2**(b-2)   (N_t = 1: ±(p+m)/2)

A weight is rounded within its own region (|w| <= p: centre, else its tail), as in PWLQ. One of the b
bits names the region, so the centre gets b-1 bits and each tail b-2: N_c + 2 N_t = 2**b levels in all,
the same storage as every other method. (Fang's code gives the centre b bits and each tail b-1, i.e.
b+1 bits per weight.) b = 1 leaves no bit for the region and is refused.
p minimises the squared error  E(p) = sum_i (w_i - q_p(w_i))²: Fang's closed form for a Gaussian,
p/σ = ln(0.8614 m/σ + 0.6079), is the first candidate, then a coarse-to-fine grid search over p/m
(0.05 .. 0.95 and 1, then ±0.05 and ±0.005 around the best) keeps whichever is best; p = m (no
tails) is allowed, so a constant group is exact.

``pwl-paper`` — the paper's ``PC-PWL-Quant.py``: 2**b + 1 breakpoints at the quantiles 0, 1/K, .., 1 of
the group (linear interpolation between order statistics), levels at the midpoints of consecutive
breakpoints, each weight in the segment its value falls in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .common import searchsorted_rows

__all__ = ["pwl_core", "pwl_paper_core", "pwl_levels"]

_COARSE = np.append(np.linspace(0.05, 0.95, 19), 1.0)  # p = m: no tails, a plain symmetric grid
_FINE = np.linspace(-1.0, 1.0, 11)


def pwl_levels(m: np.ndarray, p: np.ndarray, bits: int) -> np.ndarray:
    """Sorted levels (B, 2**b) for range m (B, 1) and breakpoint p (B, 1)."""
    nc, nt = 2 ** (bits - 1), 2 ** (bits - 2)
    centre = -p + 2 * p * np.arange(nc) / (nc - 1)
    tail = (p + m) / 2 if nt == 1 else p + (m - p) * np.arange(nt) / (nt - 1)
    return np.concatenate([-tail[:, ::-1], centre, tail], axis=1)


def _assign(x: np.ndarray, m: np.ndarray, p: np.ndarray, bits: int) -> np.ndarray:
    """Region-then-uniform-rounding index into :func:`pwl_levels` (B, L)."""
    nc, nt = 2 ** (bits - 1), 2 ** (bits - 2)
    a = np.abs(x)
    cstep = np.where(p > 0, 2 * p / (nc - 1), 1.0)
    ci = np.clip(np.rint((x + p) / cstep), 0, nc - 1)
    if nt == 1:
        ti = np.zeros_like(x)
    else:
        tstep = np.where(m > p, (m - p) / (nt - 1), 1.0)
        ti = np.clip(np.rint((a - p) / tstep), 0, nt - 1)
    idx = np.where(a <= p, nt + ci, np.where(x > 0, nt + nc + ti, nt - 1 - ti))
    return idx.astype(np.int64)


def _error(x: np.ndarray, m: np.ndarray, p: np.ndarray, bits: int) -> np.ndarray:
    """E(p) per group, directly: the reference the compiled search (:func:`_cell_errors`) is tested against."""
    q = np.take_along_axis(pwl_levels(m, p, bits), _assign(x, m, p, bits), 1)
    return ((x - q) ** 2).sum(axis=1)


@njit(cache=True, nogil=True)
def _direct_error(x, lv, m, p, nt, nc):
    """E(p) of one group weight by weight, with the region-then-rounding rule of :func:`_assign`."""
    cstep = 2 * p / (nc - 1) if p > 0 else 1.0
    tstep = (m - p) / (nt - 1) if nt > 1 and m > p else 1.0
    e = 0.0
    for v in x:
        a = abs(v)
        if a <= p:
            q = nt + min(max(np.rint((v + p) / cstep), 0.0), nc - 1.0)
        else:
            ti = 0.0 if nt == 1 else min(max(np.rint((a - p) / tstep), 0.0), nt - 1.0)
            q = nt + nc + ti if v > 0 else nt - 1 - ti
        d = v - lv[int(q)]
        e += d * d
    return e


@njit(cache=True, nogil=True)
def _cell_errors(xs, c1, c2, m, ratios, bits, out):
    """E(p) for every group b and candidate p = ratios[b, j] m[b] from the sorted weights xs (B, n) and
    the prefix sums c1, c2 (B, n+1) of xs and xs²: each level's cell is an interval (midpoints between
    levels, except at the region edges ±p), so E costs O(2**b log(n / 2**b)) per candidate, not O(n):
    the cuts are sorted, so each one's count is found by galloping up from the previous one's. Groups
    with at most two weights per level are summed weight by weight instead."""
    nt, nc = 2 ** (bits - 2), 2 ** (bits - 1)
    k, n = nc + 2 * nt, xs.shape[1]
    lv, cuts = np.empty(k), np.empty(k - 1)
    for b in range(xs.shape[0]):
        mb = m[b, 0]
        for j in range(ratios.shape[1]):
            p = ratios[b, j] * mb
            for q in range(nc):  # the layout of pwl_levels
                lv[nt + q] = -p + 2 * p * q / (nc - 1)
            for q in range(nt):
                t = (p + mb) / 2 if nt == 1 else p + (mb - p) * q / (nt - 1)
                lv[nt + nc + q], lv[nt - 1 - q] = t, -t
            for q in range(k - 1):
                cuts[q] = 0.5 * (lv[q] + lv[q + 1])
            cuts[nt - 1], cuts[nt + nc - 1] = -p, p  # |w| <= p is the centre
            if n <= 2 * k:  # few weights per level: round each weight as _assign does
                out[b, j] = _direct_error(xs[b], lv, mb, p, nt, nc)
                continue
            e, lo = 0.0, 0
            for q in range(k):
                hi = n
                if q < k - 1:  # weights below cut q: gallop up from the last cut's count, then bisect
                    cut, a, step = cuts[q], lo, 1
                    while a + step <= n and xs[b, a + step - 1] < cut:
                        a += step
                        step *= 2
                    z = min(a + step, n + 1)  # xs[a - 1] < cut (or a = lo); xs[z - 1] >= cut (or z = n + 1)
                    while z - a > 1:
                        mid = (a + z) >> 1
                        if xs[b, mid - 1] < cut:
                            a = mid
                        else:
                            z = mid
                    hi = a
                e += c2[b, hi] - c2[b, lo] - 2 * lv[q] * (c1[b, hi] - c1[b, lo]) + lv[q] * lv[q] * (hi - lo)
                lo = hi
            out[b, j] = e


def _fang_ratio(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Fang et al.'s Gaussian closed form for p/m, clipped into the search range."""
    sigma = x.std(axis=1, keepdims=True) + 1e-12
    mn = m / sigma
    return np.clip(np.log(0.86143114 * mn + 0.607901097496529) / np.maximum(mn, 1e-12), 0.01, 0.99)


def pwl_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    if bits < 2:
        raise ValueError("pwl needs at least 2 bits (one bit names the region), got 1")
    m = np.abs(x).max(axis=1, keepdims=True)
    bsz = len(x)
    xs = np.sort(x, axis=1)
    zero = np.zeros((bsz, 1))
    c1, c2 = (np.concatenate([zero, np.cumsum(a, 1)], 1) for a in (xs, xs * xs))

    def errors(r):  # (B, R) errors of the candidate ratios r (B, R)
        out = np.empty(r.shape)
        _cell_errors(xs, c1, c2, m, np.ascontiguousarray(r), bits, out)
        return out

    best_r = _fang_ratio(x, m)
    best_e = errors(best_r)[:, 0]
    for width in (None, 0.05, 0.005):  # the coarse grid, then refined twice around the best so far
        cand = np.repeat(_COARSE[None, :], bsz, 0) if width is None else np.clip(best_r + width * _FINE, 0.001, 1.0)
        e = errors(cand)
        j = e.argmin(1)  # first minimum: the same choice as scanning the candidates in order
        rows = np.arange(bsz)
        better = e[rows, j] < best_e
        best_e = np.where(better, e[rows, j], best_e)
        best_r = np.where(better[:, None], cand[rows, j][:, None], best_r)
    p = best_r * m
    return pwl_levels(m, p, bits), _assign(x, m, p, bits)


def pwl_paper_core(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    bsz, n = x.shape
    k = 2**bits
    xs = np.sort(x, axis=1)
    pos = np.linspace(0, 1, k + 1) * (n - 1)  # np.interp(linspace(0,1,K+1), linspace(0,1,N), sorted)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    bps = xs[:, lo] + frac * (xs[:, hi] - xs[:, lo])  # (B, K+1)
    bps = np.maximum.accumulate(bps, axis=1)
    levels = 0.5 * (bps[:, :-1] + bps[:, 1:])
    idx = np.clip(searchsorted_rows(bps, x, "right") - 1, 0, k - 1)
    return levels, idx
