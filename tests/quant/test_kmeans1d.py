"""The exact 1-D k-means solver: bin-bound pruning and padded batches give the unpruned optimum."""

from __future__ import annotations

import numpy as np
import pytest

from fmq.quant import kmeans_1d


def sse(x: np.ndarray, levels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return ((x - np.take_along_axis(levels, idx, 1)) ** 2).sum(1)


@pytest.mark.parametrize("kind", ["t", "mixture", "ties"])
def test_bin_bound_windows_keep_the_optimum(kind):
    """Pruning by the bin lower bounds (used when groups are long) gives the unpruned optimum."""
    from fmq.quant.kmeans1d import kmeans_boundaries, prefix_sums

    rng = np.random.default_rng({"t": 0, "mixture": 1, "ties": 2}[kind])
    for k in (2, 3, 5, 8):
        if kind == "t":
            x = rng.standard_t(2, size=(2, 3000))
        elif kind == "mixture":
            x = np.concatenate([rng.normal(0, 1, (2, 2000)), rng.normal(6, 0.2, (2, 1000))], 1)
        else:
            x = np.round(rng.normal(size=(2, 4000)), 2)
        vals = np.sort(x, 1)
        counts = np.ones_like(vals)
        if kind == "ties":  # distinct values with counts, rows padded with weight-0 entries
            u = [np.unique(r, return_counts=True) for r in vals]
            m = max(len(a) for a, _ in u)
            vals = np.stack([np.pad(a, (0, m - len(a)), mode="edge") for a, _ in u])
            counts = np.stack([np.pad(c, (0, m - len(c))).astype(float) for _, c in u])
        p = prefix_sums(vals, counts)

        def cost(t, p=p):
            w, s1, s2 = (np.take_along_axis(a, t, 1) for a in p)
            return (np.diff(s2, axis=1) - np.diff(s1, axis=1) ** 2 / np.maximum(np.diff(w, axis=1), 1)).sum(1)

        pruned, _ = kmeans_boundaries(vals, counts, k, prune=True)
        full, _ = kmeans_boundaries(vals, counts, k, prune=False)
        np.testing.assert_allclose(cost(pruned), cost(full), rtol=1e-10)
        if k <= 3:  # and the unpruned DP against a plain scan over all splits
            assert cost(full)[0] == pytest.approx(brute_contiguous_fast(vals[0], counts[0], k), rel=1e-10)


def brute_contiguous_fast(v: np.ndarray, c: np.ndarray, k: int) -> float:
    """Least SSE over all splits into k runs (k <= 3) of weighted sorted values, by scanning."""
    w1, s1, s2 = (np.concatenate([[0], np.cumsum(a)]) for a in (c, c * v, c * v * v))

    def cost(j, i):
        dw = w1[i] - w1[j]
        return np.where(dw > 0, s2[i] - s2[j] - (s1[i] - s1[j]) ** 2 / np.maximum(dw, 1), 0.0)

    m = len(v)
    if k == 2:
        j = np.arange(m + 1)
        return float((cost(0, j) + cost(j, m)).min())
    j, i = np.triu_indices(m + 1)
    return float((cost(0, j) + cost(j, i) + cost(i, m)).min())


def test_padded_batch_equals_one_group_at_a_time():
    rng = np.random.default_rng(7)
    rows = [rng.standard_t(3, size=n) for n in (90, 100, 117)]
    x = np.stack([np.pad(r, (0, 117 - len(r)), mode="edge") for r in rows])
    levels, idx = kmeans_1d(x, 5, lengths=np.array([90, 100, 117]))
    for b, r in enumerate(rows):
        lv1, idx1 = kmeans_1d(r[None], 5)
        got = ((r - levels[b, idx[b, :len(r)]]) ** 2).sum()
        assert got == pytest.approx(sse(r[None], lv1, idx1)[0], rel=1e-12)
        assert (idx[b, len(r):] == 0).all()
