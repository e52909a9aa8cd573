import math

from fmq.plots import fidelity_figure, ssim_range


def _row(method, bits, ssim):
    return {"method": method, "bits": bits, "ssim": ssim, "ssim_lo": ssim - 0.02, "ssim_hi": ssim + 0.02,
            "psnr": 10.0 * bits, "psnr_lo": 10.0 * bits - 1, "psnr_hi": 10.0 * bits + 1}


def test_ssim_range_keeps_negative_points_in_the_frame():
    assert ssim_range([0.0, 0.5, 1.0]) == [-0.05, 1.05]
    assert ssim_range([]) == [-0.05, 1.05]
    low, high = ssim_range([0.3, -0.089, float("nan"), None])
    assert low <= -0.089 - 0.05 + 1e-12 and high == 1.05
    assert ssim_range([-1.0])[0] <= -1.0


def test_fidelity_figure_shows_a_negative_ssim():
    rows = [_row("uniform", 1, -0.02), _row("uniform", 2, -0.08), _row("uniform", 8, 0.99)]
    fig = fidelity_figure(rows)
    low, high = fig.layout.yaxis.range
    assert low <= min(r["ssim_lo"] for r in rows) and high >= max(r["ssim_hi"] for r in rows) - 0.02
    rows.append({**_row("pwl", 1, 0.0), "ssim": math.nan, "ssim_lo": math.nan, "ssim_hi": math.nan})
    assert fidelity_figure(rows).layout.yaxis.range[0] == low  # a skipped (nan) point does not move the axis
