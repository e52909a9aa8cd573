"""FP32 against quantized generations from the same noise: images, per-image SSIM/PSNR, |diff| maps,
trajectory deviation and timings. The library side of the app's Generate, Trajectories and Fidelity pages.

Every run saves its whole trajectory (each grid time of a fixed-step solver), so one cached run serves
the side-by-side grids, the snapshots along t and the deviation curve alike.

The model given is never modified: quantization goes through :func:`fmq.quantize.quantize_model`,
which returns a new model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .metrics import deviation, mean_ci95, psnr_per_image, ssim_per_image
from .sampling import sample

__all__ = [
    "Run",
    "Scores",
    "Quantized",
    "MethodResult",
    "Comparison",
    "default_save_times",
    "even_snapshots",
    "generate",
    "score",
    "quantize",
    "method_names",
    "compare",
    "against",
    "packed_size",
    "result_row",
]


@dataclass
class Run:
    """One model's generation from a batch of noise."""

    images: torch.Tensor  # (N, C, H, W) at t = 1, not clipped
    times: list[float]  # times of the saved states, ascending, 0 and 1 included
    trajectory: torch.Tensor  # (T, N, C, H, W) states at ``times``
    nfe: int  # velocity evaluations
    seconds: float  # wall time of the integration
    solver: str = ""  # how it was made (a results row records it)
    steps: int = 0
    guidance: float = 1.0
    seed: int = 0


@dataclass
class Scores:
    """A test run measured against its FP32 reference, image by image."""

    ssim: np.ndarray  # (N,)
    psnr: np.ndarray  # (N,) dB, capped for identical images
    absdiff: np.ndarray  # (N, H, W) mean over channels of |x - x̂| on the [-1, 1] scale, so in [0, 2]
    times: list[float]  # (T,)
    deviation: np.ndarray  # (T,) mean over samples of ‖x_t − x̂_t‖ (ℓ2 over all pixels)

    def summary(self) -> dict[str, float]:
        s, s_lo, s_hi = mean_ci95(self.ssim, -1.0, 1.0)
        p, p_lo, p_hi = mean_ci95(self.psnr)
        return {"ssim": s, "ssim_lo": s_lo, "ssim_hi": s_hi, "psnr": p, "psnr_lo": p_lo, "psnr_hi": p_hi,
                "deviation": float(self.deviation[-1])}


@dataclass
class Quantized:
    model: nn.Module  # a new model; the FP32 one it came from is untouched
    report: Any  # fmq.quantize.QuantReport
    seconds: float


@dataclass
class MethodResult:
    config: Any  # fmq.quantize.QuantConfig
    run: Run
    scores: Scores
    quant_seconds: float = 0.0
    report: Any = None

    @property
    def label(self) -> str:
        return self.config.label


@dataclass
class Comparison:
    fp32: Run
    methods: list[MethodResult] = field(default_factory=list)


def default_save_times(solver: str, steps: int) -> list[float]:
    """Every grid time of a fixed-step solver; eleven evenly spaced times for the adaptive one."""
    n = 10 if solver == "dopri5" else steps
    return [i / n for i in range(n + 1)]


def even_snapshots(n_times: int, most: int = 6, least: int = 4) -> list[int]:
    """Indices of up to ``most`` saved times spaced exactly evenly over ``n_times`` grid times (0 and 1 kept).

    A fixed-step run saves the grid t = k/steps: 8 steps give 0, 0.25, 0.5, 0.75, 1 (five, even) where
    six rounded picks would give 0, 0.25, 0.375, 0.625, 0.75, 1. Picks the most snapshots, at least
    ``least``, whose spacing divides the grid; when none does (a prime number of steps), rounds.
    """
    if n_times <= most:
        return list(range(n_times))
    intervals = n_times - 1
    for k in range(most, least - 1, -1):
        if intervals % (k - 1) == 0:
            return list(range(0, n_times, intervals // (k - 1)))
    return sorted({round(i * intervals / (most - 1)) for i in range(most)})


def generate(
    model: nn.Module,
    noise: torch.Tensor,
    y: torch.Tensor | None = None,
    solver: str = "heun",
    steps: int = 20,
    guidance: float = 1.0,
    save_times: Sequence[float] | None = None,
    seed: int = 0,
    sde_scale: float = 0.5,
) -> Run:
    """Integrate ``model`` from ``noise`` (N, C, H, W) and keep the trajectory at ``save_times``."""
    times = list(save_times) if save_times is not None else default_save_times(solver, steps)
    t0 = time.perf_counter()
    res = sample(model, noise, solver, steps, y=y, guidance=guidance, save_times=times,
                 sde_scale=sde_scale if solver == "sde" else 0.0, sde_seed=seed)
    seconds = time.perf_counter() - t0
    return Run(res.images, list(res.times), torch.stack(res.trajectory), res.nfe, seconds, solver, int(steps),
               float(guidance), int(seed))


def score(ref: Run, test: Run) -> Scores:
    """Per-image SSIM/PSNR, |diff| maps and the deviation along t of ``test`` against ``ref``."""
    if ref.images.shape != test.images.shape or ref.times != test.times:
        raise ValueError("runs are not comparable: they differ in image shape or saved times")
    absdiff = (ref.images.clamp(-1, 1) - test.images.clamp(-1, 1)).abs().mean(dim=1)  # (N, H, W)
    dev = np.array([float(deviation(a, b).mean()) for a, b in zip(ref.trajectory, test.trajectory)])
    return Scores(ssim_per_image(ref.images, test.images), psnr_per_image(ref.images, test.images),
                  absdiff.cpu().numpy(), list(ref.times), dev)


def method_names() -> list[str]:
    """The quantizer names fmq knows, in registry order (:data:`fmq.methods.METHODS`)."""
    from .methods import METHODS

    return list(METHODS)


def quantize(model: nn.Module, config: Any, progress=None) -> Quantized:
    """Apply a QuantConfig to ``model``; returns a new model, the per-layer report and the time taken.
    ``progress(stage, done, total, loss)`` follows a calibrated method's stages."""
    from .quantize import quantize_model

    t0 = time.perf_counter()
    qmodel, report = quantize_model(model, config, progress=progress)
    qmodel.eval()
    return Quantized(qmodel, report, time.perf_counter() - t0)


def compare(
    model_fp: nn.Module,
    configs: Sequence[Any],
    noise: torch.Tensor,
    y: torch.Tensor | None = None,
    solver: str = "heun",
    steps: int = 20,
    guidance: float = 1.0,
    save_times: Sequence[float] | None = None,
    seed: int = 0,
) -> Comparison:
    """FP32 and one quantized model per config, all from the same ``noise``, scored against FP32."""
    ref = generate(model_fp, noise, y, solver, steps, guidance, save_times, seed)
    return Comparison(ref, [against(ref, quantize(model_fp, cfg), cfg, noise, y) for cfg in configs])


def against(ref: Run, q: Quantized, config: Any, noise: torch.Tensor, y: torch.Tensor | None = None) -> MethodResult:
    """The quantized model ``q`` run exactly as ``ref`` was (same noise, labels, solver, steps, guidance, seed,
    saved times) and scored against it."""
    run = generate(q.model, noise, y, ref.solver, ref.steps, ref.guidance, ref.times, ref.seed)
    return MethodResult(config, run, score(ref, run), q.seconds, q.report)


def packed_size(model: nn.Module, config: Any, codebooks: dict | None = None) -> int:
    """Bytes of ``model`` packed with ``config`` (a file written to a temporary folder and measured).

    ``codebooks`` (``QuantReport.codebooks`` of the same model and config) saves quantizing again.
    """
    from .quant.packing import save_packed

    with tempfile.TemporaryDirectory() as tmp:
        return save_packed(model, config, Path(tmp) / "q.safetensors", codebooks=codebooks).stat().st_size


def result_row(result: MethodResult, dataset: str = "", packed_bytes: int | None = None) -> dict[str, Any]:
    """One fidelity point as a row of a results CSV (:data:`fmq.results.COLUMNS`): what was measured and how.

    Columns this comparison does not measure (class accuracy, latent stability) are nan; ``packed_bytes``
    (see :func:`packed_size`) is nan unless given.
    """
    nan = float("nan")
    cfg, run, sc = result.config, result.run, result.scores
    row: dict[str, Any] = {"dataset": dataset, "method": cfg.method, "bits": cfg.bits, "protocol": "generation",
                           "granularity": cfg.granularity}
    row.update(sc.summary())
    rep = result.report
    row.update({
        "traj_deviation": float(np.mean(sc.deviation)), "class_acc": nan,
        "w2": nan if rep is None else float(rep.w2), "mse": nan if rep is None else float(rep.mse),
        "bits_per_weight": nan if rep is None else float(rep.bits_per_weight),
        "packed_bytes": nan if packed_bytes is None else int(packed_bytes),
        "latent_var_ratio": nan, "latent_collapsed": -1, "latent_mean_var": nan, "latent_std_var": nan,
        "n": int(run.images.shape[0]), "solver": run.solver, "steps": run.steps, "seed": run.seed,
        "guidance": run.guidance, "seconds": result.quant_seconds + run.seconds,
    })
    return row
