"""The paper's SSIM, PSNR and latent statistics on known answers."""

import math

import numpy as np
import pytest
import torch

from fmq.metrics import PAPER_C1, PAPER_C2, paper_latent_stats, paper_psnr, paper_ssim, paper_ssim_map, pca_variances


def test_identical_inputs_give_ssim_one():
    x = torch.randn(3, 2, 13, 9, generator=torch.Generator().manual_seed(0)) * 5  # raw velocities: any range
    assert paper_ssim(x, x.clone()) == pytest.approx(1.0, abs=1e-12)
    assert paper_psnr(x, x.clone()) == math.inf


@pytest.mark.parametrize("delta", [0.5, 0.1, 0.003])
def test_constant_shift_gives_psnr_minus_20_log10_delta(delta):
    ref = torch.full((4, 1, 6, 5), 0.3, dtype=torch.float64)
    got = paper_psnr(ref, ref + delta)
    assert got == pytest.approx(-20 * math.log10(delta), abs=1e-9)  # peak 1.0, whatever the data
    assert got == pytest.approx(paper_psnr(ref * 10, ref * 10 + delta), abs=1e-9)


def test_psnr_pools_the_squared_error_over_the_batch():
    ref = torch.zeros(2, 1, 4, 4)
    test = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.2)])  # MSE 0.01 and 0.04
    assert paper_psnr(ref, test) == pytest.approx(-10 * math.log10(0.025))  # 16.02, not the mean 16.99 of 20, 13.98


def _closed_form(x: list[float], y: list[float]) -> float:
    """SSIM of a tiny image whose every pixel sees the whole image in its 11×11 window: all sums / 121."""
    n = 121.0  # the padded zeros count
    mx, my = sum(x) / n, sum(y) / n
    vx = sum(a * a for a in x) / n - mx * mx
    vy = sum(b * b for b in y) / n - my * my
    cxy = sum(a * b for a, b in zip(x, y)) / n - mx * my
    return (2 * mx * my + PAPER_C1) * (2 * cxy + PAPER_C2) / ((mx * mx + my * my + PAPER_C1) * (vx + vy + PAPER_C2))


def test_hand_computed_tiny_case_counts_the_padded_zeros():
    x = [0.9, 0.2, -0.4, 0.7, 0.1, 0.5]
    y = [0.8, 0.3, -0.1, 0.6, 0.0, 0.9]
    a, b = torch.tensor(x).reshape(1, 1, 2, 3), torch.tensor(y, dtype=torch.float64).reshape(1, 1, 2, 3)
    want = _closed_form(x, y)
    m = paper_ssim_map(a, b)
    assert m.shape == (1, 1, 2, 3)
    np.testing.assert_allclose(m.numpy().ravel(), want, rtol=1e-6)  # 2x3 image: every window holds all 6 pixels
    assert paper_ssim(a, b) == pytest.approx(want, rel=1e-6)
    # one pixel each: mu = v/121 and sigma² = v² (1/121 − 1/121²); without the zeros sigma would be 0
    one = paper_ssim(torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 0.5))
    assert one == pytest.approx(_closed_form([1.0], [0.5]), rel=1e-9)
    assert one != pytest.approx((2 * 0.5 + PAPER_C1) / (1.25 + PAPER_C1), rel=1e-3)


def test_ssim_map_equals_a_brute_force_zero_padded_window():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 2, 13, 8, generator=g), torch.randn(2, 2, 13, 8, generator=g)
    m = paper_ssim_map(x, y).numpy()
    xp, yp = (np.pad(t.double().numpy(), ((0, 0), (0, 0), (5, 5), (5, 5))) for t in (x, y))
    want = np.empty_like(m)
    for i in range(13):
        for j in range(8):
            wx, wy = xp[..., i:i + 11, j:j + 11], yp[..., i:i + 11, j:j + 11]
            mx, my = wx.mean((-1, -2)), wy.mean((-1, -2))
            vx, vy = (wx**2).mean((-1, -2)) - mx**2, (wy**2).mean((-1, -2)) - my**2
            cxy = (wx * wy).mean((-1, -2)) - mx * my
            want[..., i, j] = ((2 * mx * my + PAPER_C1) * (2 * cxy + PAPER_C2)
                               / ((mx**2 + my**2 + PAPER_C1) * (vx + vy + PAPER_C2)))
    np.testing.assert_allclose(m, want, rtol=1e-10, atol=1e-12)
    assert paper_ssim(x, y) == pytest.approx(want.mean())


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        paper_ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_pca_variances_and_latent_stats_known_answer():
    # four points at (±a, 0, 0) and (0, ±b, 0): centred, component variances (ddof 0) a²/2 and b²/2, then 0
    a, b = 3.0, 1.0
    acts = torch.tensor([[a, 0, 0], [-a, 0, 0], [0, b, 0], [0, -b, 0]], dtype=torch.float64)
    np.testing.assert_allclose(pca_variances(acts, k=20), [4.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(pca_variances(acts, k=2, ddof=1), [6.0, 2.0 / 3.0], atol=1e-12)
    mean, std, collapsed = paper_latent_stats(acts)
    assert mean == pytest.approx(5.0 / 3.0) and std == pytest.approx(np.std([4.5, 0.5, 0.0]))
    assert collapsed == 1
    # more features than samples: the Gram route gives the same spectrum as the covariance route
    g = torch.Generator().manual_seed(2)
    wide = torch.randn(6, 40, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(pca_variances(wide, k=5),
                               np.sort(np.linalg.eigvalsh(np.cov(wide.numpy().T, bias=True)))[::-1][:5], rtol=1e-9)
