"""The exact 1-D k-means solvers: the Lagrangian search, bin-bound windows, pruned half DPs and the plain
DP agree with each other, with brute force and with an independent O(k n²) DP; padded batches give the
single-row optimum."""

from __future__ import annotations

import numpy as np
import pytest

from fmq.quant import kmeans_1d


def sse(x: np.ndarray, levels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return ((x - np.take_along_axis(levels, idx, 1)) ** 2).sum(1)


def _rows(kind: str, rng, m: int, bsz: int = 2):
    """Sorted distinct values and counts (B, m') of one kind; ``ties``: rows padded with weight-0 entries."""
    if kind == "t":
        x = rng.standard_t(2, size=(bsz, m))
    elif kind == "mixture":
        x = np.concatenate([rng.normal(0, 1, (bsz, 2 * m // 3)), rng.normal(6, 0.2, (bsz, m - 2 * m // 3))], 1)
    else:
        x = np.round(rng.normal(size=(bsz, m)), 2)
    vals = np.sort(x, 1)
    counts = np.ones_like(vals)
    if kind == "ties":
        u = [np.unique(r, return_counts=True) for r in vals]
        width = max(len(a) for a, _ in u)
        vals = np.stack([np.pad(a, (0, width - len(a)), mode="edge") for a, _ in u])
        counts = np.stack([np.pad(c, (0, width - len(c))).astype(float) for _, c in u])
    return vals, counts


def _cost_of(vals, counts):
    from fmq.quant.kmeans1d import prefix_sums

    p = prefix_sums(vals, counts)

    def cost(t):
        w, s1, s2 = (np.take_along_axis(a, t, 1) for a in p)
        return (np.diff(s2, axis=1) - np.diff(s1, axis=1) ** 2 / np.maximum(np.diff(w, axis=1), 1)).sum(1)

    return cost


@pytest.mark.parametrize("kind", ["t", "mixture", "ties"])
def test_solvers_agree(kind):
    """Bin-bound windows (long rows), the pruned halves met in the middle and the plain DP: same optimum."""
    from fmq.quant.kmeans1d import kmeans_boundaries

    rng = np.random.default_rng({"t": 0, "mixture": 1, "ties": 2}[kind])
    for k, m in ((2, 3000), (3, 3000), (5, 3000), (8, 3000), (16, 1200), (40, 300), (100, 160), (256, 4000)):
        vals, counts = _rows(kind, rng, m)
        cost = _cost_of(vals, counts)
        full, _ = kmeans_boundaries(vals, counts, k, solver="full")
        for solver in ("lagrange", "windows", "halves", "auto"):
            t, _ = kmeans_boundaries(vals, counts, k, solver=solver)
            assert (np.diff(t, axis=1) >= 0).all() and (t[:, 0] == 0).all() and (t[:, -1] == vals.shape[1]).all()
            np.testing.assert_allclose(cost(t), cost(full), rtol=1e-10, err_msg=f"{solver}, k={k}")
        if k <= 3:  # and the plain DP against a scan over all splits
            assert cost(full)[0] == pytest.approx(brute_contiguous_fast(vals[0], counts[0], k), rel=1e-10)


@pytest.mark.parametrize("solver", ["halves", "full"])
def test_small_rows_equal_brute_force(solver):
    """Both compiled DPs on every small case: all splits of up to 9 weighted values into k runs."""
    import itertools

    from fmq.quant.kmeans1d import kmeans_boundaries

    rng = np.random.default_rng(11)
    for _ in range(150):
        m = int(rng.integers(3, 10))
        k = int(rng.integers(2, m))
        vals = np.sort(rng.standard_t(2, size=(1, m)), 1)
        counts = rng.integers(1, 4, size=(1, m)).astype(float)
        cost = _cost_of(vals, counts)
        t, _ = kmeans_boundaries(vals, counts, k, solver=solver)
        best = min(cost(np.array([[0, *cuts, m]]))[0] for cuts in itertools.combinations(range(1, m), k - 1))
        assert cost(t)[0] == pytest.approx(best, rel=1e-10, abs=1e-13), (vals, counts, k)


def test_lagrangian_solves_equal_brute_force():
    """Where the penalised search reports a group solved (exactly k clusters at some λ), the partition
    is optimal: every split of up to 12 weighted values into k runs is checked."""
    import itertools

    from fmq.quant.dp_lagrange import lagrange_groups
    from fmq.quant.kmeans1d import prefix_sums

    rng = np.random.default_rng(13)
    solved_any = 0
    for _ in range(120):
        k = int(rng.integers(2, 6))
        m = int(rng.integers(2 * k, 13))
        vals = np.sort(rng.standard_t(2, size=(1, m)), 1)
        counts = rng.integers(1, 4, size=(1, m)).astype(float)
        t, ok = np.zeros((1, k + 1), dtype=np.int64), np.zeros(1, dtype=bool)
        lagrange_groups(*prefix_sums(vals, counts), k, t, ok, 24, np.zeros(1, dtype=np.int64))
        if not ok[0]:
            continue
        solved_any += 1
        cost = _cost_of(vals, counts)
        assert t[0, 0] == 0 and t[0, -1] == m and (np.diff(t[0]) > 0).all()
        best = min(cost(np.array([[0, *cuts, m]]))[0] for cuts in itertools.combinations(range(1, m), k - 1))
        assert cost(t)[0] == pytest.approx(best, rel=1e-10, abs=1e-13), (vals, counts, k)
    assert solved_any > 100  # the search lands on k for almost every random group


def test_lagrangian_falls_back_where_no_penalty_gives_k_clusters():
    """On an even grid OPT(j) has straight pieces, so for some k no λ yields exactly k clusters: those
    groups go to the layered DP, and the answer is still the optimum."""
    from fmq.quant.dp_lagrange import lagrange_groups
    from fmq.quant.kmeans1d import kmeans_boundaries, prefix_sums

    vals = np.stack([np.arange(40.0), np.sort(np.random.default_rng(3).normal(size=40))])
    counts = np.ones_like(vals)
    t, ok = np.zeros((2, 17), dtype=np.int64), np.zeros(2, dtype=bool)
    lagrange_groups(*prefix_sums(vals, counts), 16, t, ok, 24, np.zeros(2, dtype=np.int64))
    assert ok.tolist() == [False, True]
    cost = _cost_of(vals, counts)
    full, _ = kmeans_boundaries(vals, counts, 16, solver="full")
    for solver in ("lagrange", "auto"):
        got, _ = kmeans_boundaries(vals, counts, 16, solver=solver)
        np.testing.assert_allclose(cost(got), cost(full), rtol=1e-12)


def test_upper_bound_is_a_partition_cost_above_the_optimum():
    from fmq.quant.dp_group import upper_bound
    from fmq.quant.kmeans1d import kmeans_boundaries, prefix_sums

    rng = np.random.default_rng(12)
    for kind in ("t", "mixture", "ties"):
        for k in (2, 9, 64):
            vals, counts = _rows(kind, rng, 600, bsz=1)
            opt = _cost_of(vals, counts)(kmeans_boundaries(vals, counts, k, solver="full")[0])[0]
            ub = upper_bound(*(a[0] for a in prefix_sums(vals, counts)), k)
            assert opt * (1 - 1e-12) <= ub <= 5 * opt + 1e-12  # valid, and good enough to prune


def test_unknown_solver_is_refused():
    from fmq.quant.kmeans1d import kmeans_boundaries

    with pytest.raises(ValueError, match="solver must be one of"):
        kmeans_boundaries(np.zeros((1, 4)), np.ones((1, 4)), 2, solver="fast")


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
