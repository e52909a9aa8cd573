"""fmq.metrics as the generation protocol uses it (image against image on [-1, 1]): known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmq.metrics import PSNR_CAP, deviation, mean_ci95, psnr_per_image, ssim_per_image, w2_distance


@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_have_ssim_one_and_the_capped_psnr(channels):
    x = torch.rand(3, channels, 8, 8) * 2 - 1
    assert np.allclose(ssim_per_image(x, x.clone()), 1.0)
    assert (psnr_per_image(x, x.clone()) == PSNR_CAP).all()


@pytest.mark.parametrize("delta", [0.02, 0.1, 0.5])
def test_psnr_of_a_constant_shift(delta):
    ref = torch.zeros(2, 3, 8, 8)
    # data range 2 on [-1, 1]: PSNR = 10 log10(2² / δ²)
    assert psnr_per_image(ref, ref + delta) == pytest.approx([20 * math.log10(2 / delta)] * 2, abs=1e-6)


def test_ssim_falls_as_images_part_and_inputs_are_clipped():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 16, 16, generator=g)
    near, far = ssim_per_image(x, x + 0.05 * noise), ssim_per_image(x, x + 0.5 * noise)
    assert (far < near).all() and (near < 1).all()
    assert np.allclose(ssim_per_image(x.clamp(-1, 1), x * 0 + 1), ssim_per_image(x, x * 0 + 5))  # 5 reads as 1


def test_w2_known_answers():
    a = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert w2_distance(a, a.flip(0)) == 0.0  # the same values in another order: the same distribution
    assert w2_distance(a, a + 0.25) == pytest.approx(0.25)  # a shift moves every value by its size
    assert w2_distance(a, torch.full((4,), 1.5)) == pytest.approx(math.sqrt(np.mean((a.numpy() - 1.5) ** 2)))
    assert w2_distance(torch.empty(0), torch.empty(0)) == 0.0
    with pytest.raises(ValueError, match="equal sizes"):
        w2_distance(a, a[:3])


def test_mean_ci95_and_deviation():
    assert mean_ci95(np.full(5, 0.7)) == pytest.approx((0.7, 0.7, 0.7))
    m, lo, hi = mean_ci95(np.array([0.0, 1.0]))
    assert m == 0.5 and hi - m == pytest.approx(1.96 * math.sqrt(0.5) / math.sqrt(2))
    assert mean_ci95(np.array([0.9, 1.0]), hi=1.0)[2] == 1.0  # clipped to the measure's range
    a = torch.zeros(2, 1, 2, 2)
    b = a.clone()
    b[1] = 0.5  # four pixels off by 0.5: ‖·‖ = 1
    assert deviation(a, b).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="shapes differ"):
        deviation(a, b[:1])
