"""Fidelity measures: SSIM/PSNR between image sets (scikit-image), 1-D W2 between weight sets,
and the deviation between trajectories.

Images are (N, C, H, W) in [-1, 1], so the data range for SSIM and PSNR is 2. SSIM uses scikit-image's
defaults (7×7 uniform window) with the channel axis for RGB; PSNR of identical images is +inf, which
callers that average should cap (see :data:`PSNR_CAP`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["PSNR_CAP", "ssim_per_image", "psnr_per_image", "mean_ci95", "w2_distance", "deviation"]

PSNR_CAP = 100.0  # dB reported for bit-identical images (true PSNR is +inf)


def _pairs(a: torch.Tensor, b: torch.Tensor):
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.detach().float().clamp(-1, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
    y = b.detach().float().clamp(-1, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
    return x, y


def ssim_per_image(ref: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    """SSIM of each test image against its reference, (N,). Both clipped to [-1, 1]."""
    x, y = _pairs(ref, test)
    multichannel = x.shape[-1] > 1
    out = np.empty(len(x))
    for i in range(len(x)):
        if multichannel:
            out[i] = structural_similarity(x[i], y[i], data_range=2.0, channel_axis=-1)
        else:
            out[i] = structural_similarity(x[i, ..., 0], y[i, ..., 0], data_range=2.0)
    return out


def psnr_per_image(ref: torch.Tensor, test: torch.Tensor, cap: float = PSNR_CAP) -> np.ndarray:
    """PSNR (dB) of each test image against its reference, (N,), capped at ``cap`` for identical images."""
    x, y = _pairs(ref, test)
    out = np.empty(len(x))
    for i in range(len(x)):
        if np.array_equal(x[i], y[i]):
            out[i] = cap
        else:
            out[i] = min(cap, peak_signal_noise_ratio(x[i], y[i], data_range=2.0))
    return out


def mean_ci95(values: np.ndarray, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95 % interval of the mean, clipped to [lo, hi]: (mean, low, high)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values")
    m = float(v.mean())
    if v.size == 1:
        return m, m, m
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, max(lo, m - half), min(hi, m + half)


def w2_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """2-Wasserstein distance between the empirical distributions of two equal-size sets of numbers.

    W2(a, b) = sqrt(mean((sort(a) - sort(b))²)): in 1-D the optimal coupling pairs sorted values.
    Sorted by numpy (its SIMD sort: 8x faster than torch's on one thread here, and the report sorts
    every layer twice).
    """
    a, b = (np.sort(t.detach().reshape(-1).double().cpu().numpy()) for t in (a, b))
    if a.size != b.size:
        raise ValueError(f"W2 needs equal sizes, got {a.size} and {b.size}")
    if a.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((a - b) ** 2)))


def deviation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ℓ2 distance ‖a_i − b_i‖ over all pixels, (N,)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    return (a.float() - b.float()).flatten(1).norm(dim=1)
