"""Fidelity measures: SSIM/PSNR between image sets (scikit-image), the paper's own SSIM/PSNR and latent
statistics, 1-D W2 between weight sets, and the deviation between trajectories.

Images are (N, C, H, W) in [-1, 1], so the data range for SSIM and PSNR is 2. SSIM uses scikit-image's
defaults (7×7 uniform window) with the channel axis for RGB; PSNR of identical images is +inf, which
callers that average should cap (see :data:`PSNR_CAP`).

The ``paper_*`` functions compute exactly what the paper's code computes (arXiv 2511.11418,
``PSNR-SSIM.py`` and ``MNIST-Latent.py``), on whatever tensors they are given (the paper gives them raw
velocities, not images): SSIM with an 11×11 uniform window by average pooling with zero padding (the
padded zeros count in the border windows), C1 = 0.01², C2 = 0.03² (data range 1), averaged over every
element; PSNR with peak 1.0 and the squared error pooled over the whole batch; the latent statistics as
the absolute mean and standard deviation (ddof 0) of the variances of the first 20 principal components.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["PSNR_CAP", "ssim_per_image", "psnr_per_image", "mean_ci95", "w2_distance", "deviation",
           "PAPER_SSIM_WINDOW", "PAPER_C1", "PAPER_C2", "paper_ssim_map", "paper_ssim", "paper_psnr",
           "pca_variances", "paper_latent_stats", "paper_latent_summary"]

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


PAPER_SSIM_WINDOW = 11  # side of the paper's uniform SSIM window
PAPER_C1, PAPER_C2 = 0.01**2, 0.03**2  # the paper's SSIM constants: (K L)² with L = 1
PAPER_COLLAPSED = 1e-4  # a principal component with less variance than this counts as collapsed


def _paper_pair(ref: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if ref.shape != test.shape or ref.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) tensors of one shape, got {tuple(ref.shape)} and {tuple(test.shape)}")
    return ref.detach().double().cpu(), test.detach().double().cpu()


def paper_ssim_map(ref: torch.Tensor, test: torch.Tensor, window: int = PAPER_SSIM_WINDOW) -> torch.Tensor:
    """The paper's SSIM map (N, C, H, W): no clipping, no rescaling, each channel on its own.

    With A(z) the mean of z over the window x window square around a pixel, zeros outside the image
    counted (``avg_pool2d`` with ``padding = window // 2`` divides by window² everywhere):

        μ = A(x), σ_x² = A(x²) − μ_x², σ_xy = A(xy) − μ_x μ_y,
        SSIM = (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)).

    Computed in float64 (the paper's code runs in float32; the formula is the same).
    """
    x, y = _paper_pair(ref, test)

    def avg(z: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(z, window, stride=1, padding=window // 2, count_include_pad=True)

    mu_x, mu_y = avg(x), avg(y)
    var_x, var_y, cov = avg(x * x) - mu_x**2, avg(y * y) - mu_y**2, avg(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + PAPER_C1) * (2 * cov + PAPER_C2)) / (
        (mu_x**2 + mu_y**2 + PAPER_C1) * (var_x + var_y + PAPER_C2))


def paper_ssim(ref: torch.Tensor, test: torch.Tensor) -> float:
    """The paper's SSIM: the mean of :func:`paper_ssim_map` over every element of the batch."""
    return float(paper_ssim_map(ref, test).mean())


def paper_psnr(ref: torch.Tensor, test: torch.Tensor) -> float:
    """The paper's PSNR in dB: 20 log10(1 / sqrt(MSE)), peak 1.0 whatever the data's range, the squared
    error averaged over the whole batch (not per image); +inf for identical tensors."""
    x, y = _paper_pair(ref, test)
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def pca_variances(acts: torch.Tensor, k: int = 20, ddof: int = 0) -> np.ndarray:
    """Variances of the first k principal components of activations (N, D), largest first, (min(k, N, D),).

    The eigenvalues of the covariance Xcᵀ Xc / (N − ddof) (or of the Gram matrix when D > N), i.e. the
    variance of each column of PCA(k).fit_transform(X); ddof 0 is what the paper's ``var(axis=0)`` of the
    transformed latents gives. Exact (a symmetric eigensolver), not sklearn's randomized approximation.
    """
    x = acts.detach().double().cpu().reshape(len(acts), -1)
    if len(x) < 1 + ddof:
        raise ValueError(f"need more than {ddof} samples for variances, got {len(x)}")
    x = x - x.mean(0)
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    ev = torch.linalg.eigvalsh(gram).flip(0)[: min(k, *x.shape)]
    return (ev.clamp(min=0) / (len(x) - ddof)).numpy()


def paper_latent_stats(acts: torch.Tensor, k: int = 20) -> tuple[float, float, int]:
    """The paper's latent stability (``MNIST-Latent.py``): PCA to k components fitted on these activations
    alone, then (mean, standard deviation (ddof 0), number below 1e-4) of the k component variances."""
    return paper_latent_summary(pca_variances(acts, k, ddof=0))


def paper_latent_summary(var: np.ndarray) -> tuple[float, float, int]:
    """(mean, standard deviation (ddof 0), count below 1e-4) of component variances, as the paper reports."""
    var = np.asarray(var, dtype=np.float64)
    return float(var.mean()), float(var.std()), int((var < PAPER_COLLAPSED).sum())
