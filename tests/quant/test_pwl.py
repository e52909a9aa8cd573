"""PWLQ (Fang et al. 2020) and the paper's PWL on their defining equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmq.quant import quantize_tensor
from fmq.quant.pwl import _assign, _error, pwl_levels


def test_level_layout_centre_b_minus_1_bits_tails_b_minus_2():
    m, p = np.array([[4.0]]), np.array([[1.0]])
    np.testing.assert_allclose(pwl_levels(m, p, 3), [[-4, -1, -1, -1 / 3, 1 / 3, 1, 1, 4]])
    np.testing.assert_allclose(pwl_levels(m, p, 2), [[-2.5, -1, 1, 2.5]])
    assert pwl_levels(m, p, 5).shape == (1, 32)


def test_weights_are_rounded_within_their_region():
    m, p = np.array([[4.0]]), np.array([[1.0]])
    x = np.array([[0.9, 1.1, -3.0, 0.0]])
    q = np.take_along_axis(pwl_levels(m, p, 2), _assign(x, m, p, 2), 1)
    np.testing.assert_allclose(q, [[1.0, 2.5, -2.5, -1.0]])  # 1.1 > p goes to its tail, not to the nearer 1.0


def test_breakpoint_search_is_no_worse_than_a_fine_grid():
    rng = np.random.default_rng(0)
    w = rng.laplace(size=(3, 2000))
    cb = quantize_tensor(torch.from_numpy(w), "pwl", 4, "channel")
    got = ((cb.dequantize().double().numpy() - w) ** 2).sum(1)
    m = np.abs(w).max(1, keepdims=True)
    grid = np.linspace(0.01, 0.99, 197)
    best = np.min([_error(w, m, r * m, 4) for r in grid], axis=0)
    assert (got <= best * (1 + 1e-4)).all()


def test_one_bit_is_refused():
    with pytest.raises(ValueError, match="pwl needs at least 2 bits"):
        quantize_tensor(torch.randn(10), "pwl", 1, "tensor")


def test_pwl_paper_matches_its_formula():
    rng = np.random.default_rng(1)
    w = rng.standard_t(4, size=(5, 40)).astype(np.float32)
    cb = quantize_tensor(torch.from_numpy(w), "pwl-paper", 3, "channel")
    for r in range(5):
        flat = w[r].astype(np.float64)
        bp = np.interp(np.linspace(0, 1, 9), np.linspace(0, 1, 40), np.sort(flat))
        mids = (bp[:-1] + bp[1:]) / 2
        want = mids[np.clip(np.searchsorted(bp, flat, side="right") - 1, 0, 7)]
        np.testing.assert_allclose(cb.dequantize()[r].numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_compiled_breakpoint_errors_equal_direct_rounding(bits):
    """The search's errors (cells from prefix sums, or weight by weight for small groups) equal the
    squared error of the region-then-rounding rule itself, for every candidate breakpoint."""
    from fmq.quant.pwl import _cell_errors

    rng = np.random.default_rng(bits)
    for n in (5, 100, 600, 3000):
        x = rng.standard_t(3, size=(3, n))
        m = np.abs(x).max(1, keepdims=True)
        ratios = np.concatenate([rng.uniform(0.001, 1.0, size=(3, 6)), np.ones((3, 1))], 1)
        xs = np.sort(x, 1)
        c1, c2 = (np.concatenate([np.zeros((3, 1)), np.cumsum(a, 1)], 1) for a in (xs, xs * xs))
        out = np.empty(ratios.shape)
        _cell_errors(xs, c1, c2, m, ratios, bits, out)
        direct = np.stack([_error(x, m, ratios[:, j:j + 1] * m, bits) for j in range(ratios.shape[1])], 1)
        np.testing.assert_allclose(out, direct, rtol=1e-9, atol=1e-12 * (x * x).sum())
