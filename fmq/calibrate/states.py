"""Calibration states: where the FP32 flow goes, and what velocity it has there.

A calibrated quantizer learns from pairs (x_t, t, y) -> v_FP32(x_t, t, y): the states of FP32 ODE
trajectories (Heun, ``traj_steps`` steps, every grid state t = 0, 1/s, ..., 1) and the FP32 velocity at
each. The noise comes from its own random stream, seeded ``CALIBRATION_SEED_BASE + seed``: every
evaluation seed (the sweep's, the app's, the CLI's) is below :data:`fmq.sampling.MAX_EVAL_SEED` = 2^31,
and torch's CPU generator keeps only the low 32 bits of a seed (2^32 + s gives the stream of s), so
calibration seeds live in [2^31, 2^32): calibration never sees the noise an evaluation uses.

A conditional model is calibrated on labels drawn evenly from its classes, with one trajectory in five
given the null label instead: guided sampling (classifier-free guidance) evaluates the model on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..qconfig import CalibConfig
from ..sampling import MAX_EVAL_SEED, integrate

__all__ = ["CALIBRATION_SEED_BASE", "calibration_seeds", "CalibrationSet", "calibration_noise", "collect_states",
           "time_weights", "squared_error"]

CALIBRATION_SEED_BASE = 1 << 31  # calibration generator seeds lie in [2**31, 2**32); evaluation seeds below 2**31
MAX_CALIBRATION_SEED = 1 << 29  # calibration draws 0..2**29 - 1 (noise, labels and null labels: three streams)
NULL_SHARE = 0.2  # share of calibration states given the null label (conditional models)

assert CALIBRATION_SEED_BASE >= MAX_EVAL_SEED


def calibration_seeds(seed: int) -> tuple[int, int]:
    """The torch generator seeds of draw ``seed``: (noise, labels), both in [2**31, 2**32)."""
    if not 0 <= int(seed) < MAX_CALIBRATION_SEED:
        raise ValueError(f"calibration seed must lie in 0..{MAX_CALIBRATION_SEED - 1}, got {seed}")
    return CALIBRATION_SEED_BASE + int(seed), CALIBRATION_SEED_BASE + MAX_CALIBRATION_SEED + int(seed)


@dataclass
class CalibrationSet:
    """(x_t, t, y) states and the FP32 velocity at each; all on the CPU."""

    x: torch.Tensor  # (S, C, H, W) states
    t: torch.Tensor  # (S,) times in [0, 1]
    y: torch.Tensor | None  # (S,) labels (the null label for some), None for an unconditional model
    v: torch.Tensor  # (S, C, H, W) FP32 velocity v(x, t, y)
    seed: int  # the calibration draw
    seconds: float = 0.0  # time it took to collect

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        return self.x[idx], self.t[idx], None if self.y is None else self.y[idx], self.v[idx]


def time_weights(t: torch.Tensor, early: float) -> torch.Tensor:
    """Per-state weight of an error, linear in t: ``early`` at t = 0, 1 at t = 1 (all ones when ``early`` is 1)."""
    return 1.0 + (float(early) - 1.0) * (1.0 - t.reshape(-1).float())


def squared_error(out: torch.Tensor, v: torch.Tensor, t: torch.Tensor, early: float) -> tuple[torch.Tensor, float]:
    """(sum, weight) whose ratio is the mean squared error of ``out`` against ``v``, each state weighted by
    :func:`time_weights`; at ``early`` = 1 the element sum and count (the plain mean, as before the weighting).
    Sums over batches divide to the mean over all of them."""
    sq = (out - v).pow(2)
    if early == 1:
        return sq.sum(), float(sq.numel())
    w = time_weights(t, early)
    return (sq.reshape(len(v), -1).mean(1) * w).sum(), float(w.sum())


def calibration_noise(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise from the calibration stream (never an evaluation's noise)."""
    g = torch.Generator().manual_seed(calibration_seeds(seed)[0])
    return torch.randn((n, *shape), generator=g)


@torch.no_grad()
def collect_states(model: nn.Module, cfg: CalibConfig) -> CalibrationSet:
    """FP32 Heun trajectories from calibration noise; every state the solver evaluates, with its velocity.

    Heun evaluates v at each grid state (x_i, t_i) and at its predictor (x_i + h·v, t_i + h): both pairs
    are recorded as they are computed, so the states cost nothing beyond the trajectories themselves
    (``samples`` × 2 × ``traj_steps`` states). ``model`` is only evaluated (eval mode), never modified.
    """
    import time

    t0 = time.perf_counter()
    mc = model.config
    shape = (mc.in_channels, mc.image_size, mc.image_size)
    noise = calibration_noise(cfg.samples, shape, cfg.seed)
    y = None
    if mc.conditional:
        g = torch.Generator().manual_seed(calibration_seeds(cfg.seed)[1])
        y = torch.randperm(cfg.samples, generator=g) % mc.num_classes
        y[torch.rand(cfg.samples, generator=g) < NULL_SHARE] = mc.null_label  # whole trajectories unguided
    xs, ts, vs = [], [], []

    def record(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tb = t.reshape(()).expand(len(x)).to(x)
        v = model(x, tb, y)
        xs.append(x)
        ts.append(tb)
        vs.append(v)
        return v

    integrate(record, noise, "heun", cfg.traj_steps)
    x, t, v = torch.cat(xs), torch.cat(ts), torch.cat(vs)
    ys = None if y is None else y.repeat(len(xs))
    return CalibrationSet(x, t, ys, v, int(cfg.seed), time.perf_counter() - t0)
