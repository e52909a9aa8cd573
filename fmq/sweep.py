"""Methods × bit widths → a table of fidelity measures (used by ``python -m fmq sweep`` and the app).

Two protocols:

* ``generation`` (ours): FP32 and quantized models integrate the ODE from the *same* noise (same labels,
  solver, steps, guidance); SSIM/PSNR compare the quantized generations with the FP32 ones image by image
  (scikit-image, data range 2 on [-1, 1]); mean and 95 % interval over the images. Also the final-sample
  deviation ‖x₁ − x̂₁‖, its mean along the trajectory, and, where a classifier is given, the share of
  quantized generations classified as the class asked for. Scope ``weights`` by default.
* ``velocity`` (the paper's, arXiv 2511.11418 ``PSNR-SSIM.py``, computed as its code computes it): one
  velocity evaluation at t = 0, unconditional, on the first ``n`` (64) test images in order, scaled to
  [0, 1]; SSIM and PSNR of the raw quantized velocity against the raw FP32 one with the paper's formulas
  (:func:`fmq.metrics.paper_ssim`, :func:`fmq.metrics.paper_psnr`: 11×11 zero-padded window, data range
  1, peak 1, MSE pooled over the batch). Scope ``all`` (every float tensor) by default, as the paper
  quantizes. It says how close the networks are on one input, not how close the generations are. The
  95 % intervals are over images: of the per-image SSIM means (their mean is the paper's SSIM) and of the
  per-image MSEs (their mean is the pooled MSE), mapped to dB.

Both protocols also report W2 and MSE of the weights, the packed size on disk, bits per weight with the
codebooks, and the latent stability of ``MNIST-Latent.py``: the middle block's output at t = 0, PCA to 20
components fitted per model, the paper's absolute mean and standard deviation (ddof 0) of the component
variances and the count below 1e-4 (``latent_mean_var``, ``latent_std_var``, ``latent_collapsed``), and
beside them fmq's ``latent_var_ratio``, the mean over components of var_q / var_fp. Under ``velocity``
they are measured on the paper's inputs (up to 10,000 test images in [0, 1]); under ``generation`` on the
few hundred test images in [-1, 1] the caller gives.

Every (method, bits) point is cached as JSON keyed by the checkpoint's hash and what makes that point (the
sampling settings, granularity, scope, and a calibrated method's calibration; not which other points the
sweep has), so a repeated or interrupted sweep, or one of other points that shares some, reuses what it has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import cache_root, fingerprint
from .compare import generate, score
from .methods import method_spec
from .metrics import PSNR_CAP, mean_ci95, paper_latent_summary, paper_psnr, paper_ssim_map, pca_variances
from .qconfig import CalibConfig
from .quant.codebook import BITS
from .quant.entropy import index_entropy
from .quant.packing import save_packed
from .quantize import QuantConfig, quantize_model
from .results import SweepRow
from .sampling import make_noise

__all__ = ["SweepConfig", "SweepRow", "PROTOCOLS", "PAPER_LATENT_IMAGES", "iter_sweep", "cache_dir"]

PROTOCOLS = ("generation", "velocity")
DEFAULT_SCOPE = {"generation": "weights", "velocity": "all"}  # the paper quantizes every float tensor
PAPER_LATENT_IMAGES = 10_000  # MNIST-Latent.py: min(10,000, test set) test images

@dataclass(frozen=True)
class SweepConfig:
    methods: tuple[str, ...] = ("ot", "ot-equal-mass", "uniform", "pwl", "log2")
    bits: tuple[int, ...] = BITS
    granularity: str = "channel"  # "tensor" | "channel" | "group:G"
    scope: str | None = None  # "weights" (Conv/Linear) | "all" (every float tensor); None: the protocol's own
    protocol: str = "generation"  # "generation" | "velocity"
    n: int = 64  # images per point (generations, or the first test images of the velocity protocol)
    solver: str = "heun"
    steps: int = 20
    seed: int = 0  # noise seed (generation); the velocity protocol takes the test images in order
    guidance: float = 1.0  # classifier-free guidance scale (conditional models)
    calibration: CalibConfig | None = None  # settings of the calibrated methods (their defaults when None)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.scope is None:
            object.__setattr__(self, "scope", DEFAULT_SCOPE[self.protocol])
        if self.n < 2:
            raise ValueError(f"n must be at least 2 (for an interval), got {self.n}")
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "bits", tuple(int(b) if float(b).is_integer() else float(b) for b in self.bits))
        for m in self.methods:  # fail before any work on a bad method, width or granularity
            method_spec(m)
        for m, b in self.points():
            self.point_config(m, b)

    def points(self) -> list[tuple[str, int | float]]:
        """The (method, bits) pairs swept, in order: a fractional budget only for the mixed methods."""
        return [(m, b) for m in self.methods for b in self.bits if method_spec(m).mixed or float(b).is_integer()]

    def point_config(self, method: str, bits: int | float) -> QuantConfig:
        cal = self.calibration if method_spec(method).calibrated else None
        return QuantConfig(method=method, bits=bits, granularity=self.granularity, scope=self.scope, calibration=cal)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"], d["bits"] = list(self.methods), list(self.bits)
        if self.calibration is None:
            del d["calibration"]  # keys of sweeps without calibrated methods stay as they were
        else:
            d["calibration"] = self.calibration.to_dict()
        return d


def cache_dir() -> Path:
    return cache_root() / "sweep"


def _mid_activations(model: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Flattened output of the UNet's middle block at t = 0 (null label), (N, D), in batches."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            out.append(model.encode(x, torch.zeros(len(x)))[0].flatten(1))
    return torch.cat(out)


def _latent(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Variances (ddof 0) of the first 20 principal components of the middle block's output."""
    return pca_variances(_mid_activations(model, images), 20, ddof=0)


def _skipped_row(cfg: SweepConfig, qcfg: QuantConfig, reason: str) -> SweepRow:
    nan = float("nan")
    measured = ("ssim", "ssim_lo", "ssim_hi", "psnr", "psnr_lo", "psnr_hi", "deviation", "traj_deviation",
                "class_acc", "w2", "mse", "bits_per_weight", "latent_var_ratio", "latent_mean_var", "latent_std_var")
    return SweepRow(method=qcfg.method, bits=qcfg.bits, protocol=cfg.protocol, granularity=qcfg.granularity,
                    packed_bytes=0, latent_collapsed=-1, n=cfg.n, solver=cfg.solver, steps=cfg.steps, seed=cfg.seed,
                    guidance=cfg.guidance, seconds=0.0, extra={"skipped": reason}, **dict.fromkeys(measured, nan))


def _velocity_scores(ref: torch.Tensor, test: torch.Tensor) -> tuple[tuple, tuple]:
    """The paper's SSIM and PSNR with 95 % intervals over images: ((ssim, lo, hi), (psnr, lo, hi)).

    The SSIM is the mean of the whole map; the per-image means average to it. The PSNR is that of the
    pooled MSE; the per-image MSEs average to it, and their interval maps to dB (PSNR falls as MSE rises).
    """
    ssim = mean_ci95(paper_ssim_map(ref, test).mean(dim=(1, 2, 3)).numpy(), -1.0, 1.0)
    mse = ((test.double() - ref.double()) ** 2).mean(dim=(1, 2, 3)).numpy()
    _, lo, hi = mean_ci95(mse, lo=0.0)

    def db(v: float) -> float:
        return PSNR_CAP if v <= 0 else min(PSNR_CAP, -10.0 * float(np.log10(v)))

    psnr = min(PSNR_CAP, paper_psnr(ref, test))
    return ssim, (psnr, db(hi), db(lo))


def iter_sweep(
    model: nn.Module,
    cfg: SweepConfig,
    eval_images: torch.Tensor | None = None,
    classifier: nn.Module | None = None,
    use_cache: bool = True,
    extra_fn: Callable[[nn.Module, nn.Module, torch.Tensor], dict] | None = None,
    latent_images: int = PAPER_LATENT_IMAGES,
) -> Iterator[SweepRow]:
    """Yield one :class:`SweepRow` per (method, bits), in order, as each is measured.

    ``eval_images`` (N, C, H, W) real test images in [-1, 1]. ``velocity``: the test split in order, as
    the paper takes it (:func:`fmq.zoo.test_images`); the first ``cfg.n`` feed SSIM/PSNR and the first
    :data:`PAPER_LATENT_IMAGES` the latent measure, both scaled to [0, 1]. ``generation``: a few hundred
    test images for the latent measure (without them the latent columns are nan). ``classifier`` maps
    images to logits; used for class accuracy when the model is conditional.
    ``extra_fn(model_fp, model_q, noise)`` may add columns (e.g. the degradation bound) to ``row.extra``.
    ``latent_images`` caps the velocity protocol's latent measure (the paper: up to 10,000 test images;
    0 skips it, leaving those columns nan). The model is never modified.
    """
    from .classifier import predict

    mcfg = model.config
    shape = (mcfg.in_channels, mcfg.image_size, mcfg.image_size)
    noise = make_noise(cfg.n, shape, cfg.seed)
    y = torch.arange(cfg.n) % mcfg.num_classes if mcfg.conditional else None
    velocity = cfg.protocol == "velocity"
    if velocity and (eval_images is None or len(eval_images) < cfg.n):
        raise ValueError(f"the velocity protocol needs at least n = {cfg.n} real test images (eval_images), "
                         f"got {0 if eval_images is None else len(eval_images)}")
    latent_images_, real = None, None
    if eval_images is not None:
        real = (eval_images[: cfg.n] + 1) / 2 if velocity else eval_images[: cfg.n]
        if latent_images > 0:
            latent_images_ = (eval_images[:latent_images] + 1) / 2 if velocity else eval_images
    # a point's key: what makes that point, not which other points the sweep has (so another sweep reuses it)
    setting = {k: v for k, v in cfg.to_dict().items() if k not in ("methods", "bits", "calibration")}
    key_base = {"model": fingerprint(model)[:16], "sweep": setting, "classifier": classifier is not None,
                "real": None if eval_images is None else hashlib.sha256(eval_images.numpy().tobytes()).hexdigest()[:16],
                "extra": extra_fn is not None, "version": 3}  # 3: keyed by the point, not the whole sweep
    if velocity and latent_images != PAPER_LATENT_IMAGES:
        key_base["latent_images"] = latent_images
    ref_run = ref_vel = ref_var = None
    extra0: dict = {}
    for method, bits in cfg.points():
        point = {**key_base, "method": method, "bits": bits}
        if method_spec(method).calibrated:
            point["calibration"] = (cfg.calibration or CalibConfig()).to_dict()  # None: the defaults
        key = hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:24]
        path = cache_dir() / f"{key}.json"
        if use_cache and path.is_file():
            yield SweepRow(**json.loads(path.read_text()))
            continue
        t0 = time.perf_counter()
        if not velocity and ref_run is None:
            ref_run = generate(model, noise, y, cfg.solver, cfg.steps, cfg.guidance, seed=cfg.seed)
            fp_acc = float("nan")
            if classifier is not None and y is not None:
                fp_acc = float((predict(classifier, ref_run.images) == y).float().mean())
            extra0["fp32_class_acc"] = fp_acc
        if velocity and ref_vel is None:
            with torch.no_grad():
                ref_vel = model(real, torch.zeros(len(real)))
        if latent_images_ is not None and ref_var is None:
            ref_var = _latent(model, latent_images_)
            if velocity:  # the paper's "Full" row, beside every quantized one
                extra0.update(zip(("fp32_latent_mean_var", "fp32_latent_std_var", "fp32_latent_collapsed"),
                                  paper_latent_summary(ref_var)))
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
            coded = save_packed(model, qcfg, Path(tmp) / "ans.safetensors", codebooks=report.codebooks,
                                coding="ans")
            entropy_bytes = coded.stat().st_size
        extra: dict = {**extra0, "entropy_bytes": entropy_bytes, "index_entropy": index_entropy(report.codebooks)}
        if report.calibration is not None:
            extra["calibration_seconds"] = sum(report.calibration.seconds.values())
        if not velocity:
            run = generate(qmodel, noise, y, cfg.solver, cfg.steps, cfg.guidance, seed=cfg.seed)
            sc = score(ref_run, run)
            s, p = mean_ci95(sc.ssim, -1.0, 1.0), mean_ci95(sc.psnr, hi=PSNR_CAP)
            dev, traj = float(sc.deviation[-1]), float(np.mean(sc.deviation))
            acc = float("nan")
            if classifier is not None and y is not None:
                acc = float((predict(classifier, run.images) == y).float().mean())
            if extra_fn is not None:
                extra.update(extra_fn(model, qmodel, noise))
        else:
            with torch.no_grad():
                vel = qmodel(real, torch.zeros(len(real)))
            s, p = _velocity_scores(ref_vel, vel)
            dev = float((vel - ref_vel).flatten(1).norm(dim=1).mean())
            traj, acc = float("nan"), float("nan")
        nan = float("nan")
        ratio, collapsed, mean_var, std_var = nan, -1, nan, nan
        if latent_images_ is not None:
            var = _latent(qmodel, latent_images_)
            ratio = float(np.mean(var / np.maximum(ref_var, 1e-12)))
            mean_var, std_var, collapsed = paper_latent_summary(var)
        row = SweepRow(method=method, bits=bits, protocol=cfg.protocol, granularity=qcfg.granularity,
                       ssim=s[0], ssim_lo=s[1], ssim_hi=s[2], psnr=p[0], psnr_lo=p[1], psnr_hi=p[2],
                       deviation=dev, traj_deviation=traj, class_acc=acc, w2=report.w2, mse=report.mse,
                       bits_per_weight=report.bits_per_weight, packed_bytes=packed_bytes,
                       latent_var_ratio=ratio, latent_collapsed=collapsed, latent_mean_var=mean_var,
                       latent_std_var=std_var, n=cfg.n, solver=cfg.solver, steps=cfg.steps, seed=cfg.seed,
                       guidance=cfg.guidance, seconds=time.perf_counter() - t0, extra=extra)
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(dataclasses.asdict(row)))  # NaN is kept as NaN
        yield row
