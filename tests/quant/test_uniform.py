"""Uniform min–max quantizer on known answers."""

from __future__ import annotations

import numpy as np
import torch

from fmq.quant import quantize_tensor


def test_levels_are_the_min_max_grid():
    w = torch.tensor([[0.0, 0.2, 0.9, 3.0], [-1.0, -1.0, 1.0, 0.1]])
    cb = quantize_tensor(w, "uniform", 2, "channel")
    np.testing.assert_allclose(cb.levels.numpy(), [[0, 1, 2, 3], [-1, -1 / 3, 1 / 3, 1]], rtol=1e-6)
    np.testing.assert_allclose(cb.dequantize().numpy(), [[0, 0, 1, 3], [-1, -1, 1, 1 / 3]], rtol=1e-6)


def test_error_is_at_most_half_a_step():
    w = torch.randn(8, 50, dtype=torch.float64).float()
    for bits in (1, 3, 8):
        cb = quantize_tensor(w, "uniform", bits, "channel")
        step = (w.amax(1) - w.amin(1)) / (2**bits - 1)
        assert ((cb.dequantize() - w).abs() <= step[:, None] / 2 * (1 + 1e-5) + 1e-7).all()
