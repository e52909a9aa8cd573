"""Methods × bit widths → a table of fidelity measures (used by ``python -m fmq sweep`` and the app).

Two protocols:

* ``generation`` (ours): FP32 and quantized models integrate the ODE from the *same* noise (same labels,
  solver, steps, guidance); SSIM/PSNR compare the quantized generations with the FP32 ones image by image
  (scikit-image, data range 2 on [-1, 1]); mean and 95 % interval over the images. Also the final-sample
  deviation ‖x₁ − x̂₁‖, its mean along the trajectory, and, where a classifier is given, the share of
  quantized generations classified as the class asked for.
* ``velocity`` (the paper's, arXiv 2511.11418 ``PSNR-SSIM.py``): one velocity evaluation at t = 0 on real
  test images, unconditional; SSIM/PSNR of the quantized velocity against the FP32 one, with the data
  range of the FP32 velocities (max − min over the batch) as the peak. It says how close the networks
  are on one input, not how close the generations are.

Both protocols also report W2 and MSE of the weights, the packed size on disk, bits per weight with the
codebooks, and the paper's latent-stability measure (``MNIST-Latent.py``): middle-block activations at
t = 0 on test images, PCA to 20 components fitted per model, the mean of per-component variance relative
to FP32's, and the number of collapsed components (variance < 1e-4).

Every (method, bits) point is cached as JSON keyed by the checkpoint's hash and the configuration, so a
repeated or interrupted sweep reuses what it has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import fingerprint
from .compare import generate, score
from .metrics import PSNR_CAP, mean_ci95, psnr_per_image, ssim_per_image
from .quant.codebook import BITS
from .quant.packing import save_packed
from .quantize import QuantConfig, quantize_model
from .results import SweepRow
from .sampling import make_noise

__all__ = ["SweepConfig", "SweepRow", "PROTOCOLS", "iter_sweep", "latent_variances", "cache_dir"]

PROTOCOLS = ("generation", "velocity")

@dataclass(frozen=True)
class SweepConfig:
    methods: tuple[str, ...] = ("ot", "ot-equal-mass", "uniform", "pwl", "log2")
    bits: tuple[int, ...] = BITS
    granularity: str = "channel"  # "tensor" | "channel" | "group:G"
    scope: str = "weights"  # "weights" (Conv/Linear) | "all" (every float tensor, the paper's protocol)
    protocol: str = "generation"  # "generation" | "velocity"
    n: int = 64  # images per point
    solver: str = "heun"
    steps: int = 20
    seed: int = 0  # noise seed (generation) / test-image choice (velocity, latent)
    guidance: float = 1.0  # classifier-free guidance scale (conditional models)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.n < 2:
            raise ValueError(f"n must be at least 2 (for an interval), got {self.n}")
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "bits", tuple(int(b) for b in self.bits))
        for m in self.methods:  # fail before any work on a bad method, width or granularity
            for b in self.bits:
                QuantConfig(method=m, bits=b, granularity=self.granularity, scope=self.scope)

    def point_config(self, method: str, bits: int) -> QuantConfig:
        return QuantConfig(method=method, bits=bits, granularity=self.granularity, scope=self.scope)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"], d["bits"] = list(self.methods), list(self.bits)
        return d


def cache_dir() -> Path:
    return Path(os.environ.get("FMQ_CACHE", Path.home() / ".cache" / "fmq")) / "sweep"


def _mid_activations(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Flattened output of the UNet's middle block at t = 0 (null label), (N, D)."""
    out: list[torch.Tensor] = []
    handle = model.mid2.register_forward_hook(lambda _m, _i, o: out.append(o.flatten(1)))
    try:
        with torch.no_grad():
            model(images, torch.zeros(len(images)))
    finally:
        handle.remove()
    return out[0]


def _skipped_row(cfg: SweepConfig, qcfg: QuantConfig, reason: str) -> SweepRow:
    nan = float("nan")
    measured = ("ssim", "ssim_lo", "ssim_hi", "psnr", "psnr_lo", "psnr_hi", "deviation", "traj_deviation",
                "class_acc", "w2", "mse", "bits_per_weight", "latent_var_ratio")
    return SweepRow(method=qcfg.method, bits=qcfg.bits, protocol=cfg.protocol, granularity=qcfg.granularity,
                    packed_bytes=0, latent_collapsed=-1, n=cfg.n, solver=cfg.solver, steps=cfg.steps, seed=cfg.seed,
                    guidance=cfg.guidance, seconds=0.0, extra={"skipped": reason}, **dict.fromkeys(measured, nan))


def latent_variances(acts: torch.Tensor, k: int = 20) -> np.ndarray:
    """Variance of each of the first k principal components of activations (N, D), largest first.

    N samples span at most N − 1 centred directions, so k is capped at N − 1 (no spurious zero variances).
    """
    x = acts.double() - acts.double().mean(0)
    s = torch.linalg.svdvals(x)[: min(k, len(x) - 1)]
    return (s**2 / max(len(x) - 1, 1)).numpy()


def _velocity_scores(ref: torch.Tensor, test: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    peak = float(ref.max() - ref.min())
    # shift both by the FP32 minimum and scale to [-1, 1] so fmq.metrics' range-2 measures use that peak
    lo = float(ref.min())
    a, b = (ref - lo) / peak * 2 - 1, (test - lo) / peak * 2 - 1
    return ssim_per_image(a, b), psnr_per_image(a, b)


def iter_sweep(
    model: nn.Module,
    cfg: SweepConfig,
    eval_images: torch.Tensor | None = None,
    classifier: nn.Module | None = None,
    use_cache: bool = True,
    extra_fn: Callable[[nn.Module, nn.Module, torch.Tensor], dict] | None = None,
) -> Iterator[SweepRow]:
    """Yield one :class:`SweepRow` per (method, bits), in order, as each is measured.

    ``eval_images`` (N, C, H, W) real test images in [-1, 1]: the first ``cfg.n`` feed the velocity
    protocol, all of them the latent-stability measure (give a few hundred; without them the latent
    columns are nan). ``classifier`` maps images to
    logits; used for class accuracy when the model is conditional. ``extra_fn(model_fp, model_q, noise)``
    may add columns (e.g. the degradation bound) to ``row.extra``. The model is never modified.
    """
    from .classifier import predict

    mcfg = model.config
    shape = (mcfg.in_channels, mcfg.image_size, mcfg.image_size)
    noise = make_noise(cfg.n, shape, cfg.seed)
    y = torch.arange(cfg.n) % mcfg.num_classes if mcfg.conditional else None
    if cfg.protocol == "velocity" and eval_images is None:
        raise ValueError("the velocity protocol needs real test images (eval_images)")
    real = None if eval_images is None else eval_images[: cfg.n]
    key_base = {"model": fingerprint(model)[:16], "sweep": cfg.to_dict(), "classifier": classifier is not None,
                "real": None if eval_images is None else hashlib.sha256(eval_images.numpy().tobytes()).hexdigest()[:16],
                "extra": extra_fn is not None, "version": 1}
    ref_run = ref_vel = ref_var = None
    fp_acc = float("nan")
    for method in cfg.methods:
        for bits in cfg.bits:
            key = hashlib.sha256(json.dumps({**key_base, "method": method, "bits": bits}, sort_keys=True)
                                 .encode()).hexdigest()[:24]
            path = cache_dir() / f"{key}.json"
            if use_cache and path.is_file():
                yield SweepRow(**json.loads(path.read_text()))
                continue
            t0 = time.perf_counter()
            if cfg.protocol == "generation" and ref_run is None:
                ref_run = generate(model, noise, y, cfg.solver, cfg.steps, cfg.guidance, seed=cfg.seed)
                if classifier is not None and y is not None:
                    fp_acc = float((predict(classifier, ref_run.images) == y).float().mean())
            if eval_images is not None and ref_var is None:
                with torch.no_grad():
                    ref_vel = model(real, torch.zeros(len(real)))
                ref_var = latent_variances(_mid_activations(model, eval_images))
            qcfg = cfg.point_config(method, bits)
            try:
                qmodel, report = quantize_model(model, qcfg)
            except ValueError as e:  # a method that does not exist at this width (pwl at 1 bit)
                yield _skipped_row(cfg, qcfg, str(e))
                continue
            qmodel.eval()
            with tempfile.TemporaryDirectory() as tmp:
                packed = save_packed(model, qcfg, Path(tmp) / "q.safetensors", codebooks=report.codebooks)
                packed_bytes = packed.stat().st_size
            extra: dict = {"fp32_class_acc": fp_acc}
            if cfg.protocol == "generation":
                run = generate(qmodel, noise, y, cfg.solver, cfg.steps, cfg.guidance, seed=cfg.seed)
                sc = score(ref_run, run)
                ssim, psnr = sc.ssim, sc.psnr
                dev, traj = float(sc.deviation[-1]), float(np.mean(sc.deviation))
                acc = float("nan")
                if classifier is not None and y is not None:
                    acc = float((predict(classifier, run.images) == y).float().mean())
                if extra_fn is not None:
                    extra.update(extra_fn(model, qmodel, noise))
            else:
                with torch.no_grad():
                    vel = qmodel(real, torch.zeros(len(real)))
                ssim, psnr = _velocity_scores(ref_vel, vel)
                dev = float((vel - ref_vel).flatten(1).norm(dim=1).mean())
                traj, acc = float("nan"), float("nan")
            ratio, collapsed = float("nan"), -1
            if eval_images is not None:
                var = latent_variances(_mid_activations(qmodel, eval_images))
                ratio, collapsed = float(np.mean(var / np.maximum(ref_var, 1e-12))), int((var < 1e-4).sum())
            s = mean_ci95(ssim, -1.0, 1.0)
            p = mean_ci95(psnr, hi=PSNR_CAP)
            row = SweepRow(method, bits, cfg.protocol, qcfg.granularity, *s, *p, dev, traj, acc, report.w2,
                           report.mse, report.bits_per_weight, packed_bytes, ratio, collapsed, cfg.n, cfg.solver,
                           cfg.steps, cfg.seed, cfg.guidance, time.perf_counter() - t0, extra)
            if use_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(dataclasses.asdict(row)))  # NaN is kept as NaN
            yield row
