"""Exact OT (1-D k-means) against brute force, and the paper's equal-mass quantizer on known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fmq.quant import PerChannel, PerTensor, kmeans_1d, quantize_tensor


def sse(x: np.ndarray, levels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return ((x - np.take_along_axis(levels, idx, 1)) ** 2).sum(1)


def brute_contiguous(x: np.ndarray, k: int) -> float:
    """Least SSE over every split of the sorted values into at most k contiguous runs."""
    xs = np.sort(x)
    n = len(xs)
    best = np.inf
    for r in range(1, min(k, n) + 1):
        for cuts in itertools.combinations(range(1, n), r - 1):
            b = (0, *cuts, n)
            best = min(best, sum(((xs[b[i]:b[i + 1]] - xs[b[i]:b[i + 1]].mean()) ** 2).sum() for i in range(r)))
    return best


def brute_any(x: np.ndarray, k: int) -> float:
    """Least SSE over every assignment of the points to k labels (no contiguity assumed)."""
    best = np.inf
    for lab in itertools.product(range(k), repeat=len(x)):
        lab = np.array(lab)
        best = min(best, sum(((x[lab == c] - x[lab == c].mean()) ** 2).sum() for c in set(lab.tolist())))
    return best


def test_contiguous_partitions_are_optimal_on_tiny_inputs():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, k = int(rng.integers(1, 7)), int(rng.integers(1, 4))
        x = rng.standard_t(2, size=n)
        assert brute_contiguous(x, k) == pytest.approx(brute_any(x, k), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dist", ["t", "int", "normal"])
def test_equals_brute_force_over_all_contiguous_partitions(dist):
    rng = np.random.default_rng({"t": 1, "int": 2, "normal": 3}[dist])
    for _ in range(60):
        n, k = int(rng.integers(1, 11)), int(rng.integers(1, 6))
        if dist == "t":
            x = rng.standard_t(2, size=(4, n))
        elif dist == "int":
            x = rng.integers(-3, 4, size=(4, n)).astype(float)  # many ties
        else:
            x = rng.normal(size=(4, n))
        levels, idx = kmeans_1d(x, k)
        assert levels.shape == (4, k) and (np.diff(levels, axis=1) >= 0).all()
        got = sse(x, levels, idx)
        for r in range(4):
            want = brute_contiguous(x[r], k)
            assert got[r] == pytest.approx(want, rel=1e-9, abs=1e-12), (x[r], k)


def test_known_answer():
    levels, idx = kmeans_1d(np.array([[0.0, 10.0, 1.0, 0.0, 1.0]]), 2)
    np.testing.assert_allclose(levels, [[0.5, 10.0]])
    np.testing.assert_array_equal(idx, [[0, 1, 0, 0, 0]])
    levels, _ = kmeans_1d(np.array([[-1.0, 1.0, 2.0, 3.0, 10.0, 11.0]]), 3)
    np.testing.assert_allclose(levels, [[-1.0, 2.0, 10.5]])


def test_fewer_distinct_values_than_levels_is_exact():
    w = torch.tensor([[3.0, 3.0, -1.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    cb = quantize_tensor(w, "ot", 3, PerChannel())
    assert torch.equal(cb.dequantize(), w)
    assert cb.num_levels == 4  # min(2**3, 4 weights per group)
    assert (cb.levels.diff(dim=1) >= 0).all()


def test_large_group_against_a_separate_dp():
    """A plain O(k n²) DP on 300 points checks the divide-and-conquer layers."""
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_t(3, size=300), 2)
    xs = np.sort(x)
    n, k = len(xs), 7
    c1 = np.concatenate([[0], np.cumsum(xs)])
    c2 = np.concatenate([[0], np.cumsum(xs**2)])
    j, i = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    cnt = np.maximum(i - j, 1)
    cost = np.where(i > j, c2[i] - c2[j] - (c1[i] - c1[j]) ** 2 / cnt, np.where(i == j, 0.0, np.inf))
    d = cost[0]
    for _ in range(k - 1):
        d = (d[:, None] + cost).min(0)
    levels, idx = kmeans_1d(x[None], k)
    assert sse(x[None], levels, idx)[0] == pytest.approx(d[n], rel=1e-10)


def test_equal_mass_known_answer():
    w = torch.tensor([5.0, 1.0, 2.0, 3.0, 4.0, 0.0, 7.0])  # sorted 0 1 2 3 4 5 7 -> chunks [0 1][2 3][4 5][7]
    cb = quantize_tensor(w, "ot-equal-mass", 2, PerTensor())
    np.testing.assert_allclose(cb.levels.numpy(), [[0.5, 2.5, 4.5, 7.0]])
    np.testing.assert_allclose(cb.dequantize().numpy(), [4.5, 0.5, 2.5, 2.5, 4.5, 0.5, 7.0])


def test_equal_mass_matches_the_papers_array_split():
    rng = np.random.default_rng(3)
    w = rng.standard_t(3, size=(6, 37)).astype(np.float32)
    cb = quantize_tensor(torch.from_numpy(w), "ot-equal-mass", 3, PerChannel())
    for r in range(6):
        order = np.argsort(w[r], kind="stable")
        chunks = np.array_split(w[r][order].astype(np.float64), 8)
        want = np.empty(37)
        want[order] = np.concatenate([np.full(len(c), c.mean()) for c in chunks])
        np.testing.assert_allclose(cb.dequantize()[r].numpy(), want, rtol=1e-6, atol=1e-7)


def test_ot_beats_equal_mass_on_heavy_tails():
    rng = np.random.default_rng(4)
    w = torch.from_numpy(rng.standard_t(2, size=4000))
    ot = quantize_tensor(w, "ot", 2, PerTensor()).dequantize()
    em = quantize_tensor(w, "ot-equal-mass", 2, PerTensor()).dequantize()
    assert ((ot - w) ** 2).mean() < 0.8 * ((em - w) ** 2).mean()


def test_batched_tensors_equal_single_tensor_results():
    from fmq.quant import quantize_tensors

    rng = np.random.default_rng(8)
    ws = [torch.from_numpy(rng.standard_t(3, size=s).astype(np.float32)) for s in ((8, 40), (9, 40), (5, 47), (300,))]
    for method in ("ot", "uniform", "log2-paper"):
        for gran in ("tensor", "channel", "group:16"):
            together = quantize_tensors(ws, method, 3, gran)
            for w, cb in zip(ws, together):
                alone = quantize_tensor(w, method, 3, gran)
                e1, e2 = ((cb.dequantize() - w) ** 2).sum(), ((alone.dequantize() - w) ** 2).sum()
                assert float(e1) == pytest.approx(float(e2), rel=1e-6, abs=1e-9), (method, gran)
                if method != "ot":  # ot may pick another of several equally good codebooks
                    assert torch.equal(cb.dequantize(), alone.dequantize())
