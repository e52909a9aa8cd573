"""Integrating the flow: fixed-step ODE solvers, adaptive dopri5, and an Euler–Maruyama SDE sampler.

The ODE is dx/dt = v(x, t, y) from t = 0 (noise) to t = 1 (data). Fixed-step solvers on a uniform grid
with h = 1/steps (local error order p+1, global order p):

* ``euler``    (p = 1): x ← x + h·v(x, t)                                   1 evaluation per step
* ``midpoint`` (p = 2): x ← x + h·v(x + h/2·v(x, t), t + h/2)               2 evaluations
* ``heun``     (p = 2): k1 = v(x, t), k2 = v(x + h·k1, t + h); x ← x + h/2·(k1 + k2)   2 evaluations
* ``rk4``      (p = 4): classical Runge–Kutta                                 4 evaluations
* ``dopri5``: adaptive Dormand–Prince 5(4) via torchdiffeq, with ``rtol``/``atol``.

Stochastic sampler (``sde``): on the linear path the velocity implies the score
s(x, t) = (t·v − x)/(1 − t). With diffusion g(t) = σ·sqrt(1 − t) the SDE
dx = [v + g²/2 · s] dt + g dW = [v + σ²/2 · (t·v − x)] dt + σ·sqrt(1 − t) dW
has the same marginals as the ODE; σ = 0 is the ODE (Euler). The factor sqrt(1 − t) keeps the score
term bounded as t → 1 and adds no noise at the last step.

Classifier-free guidance with scale w: v = v(x, t, ∅) + w·(v(x, t, y) − v(x, t, ∅)); w = 1 is plain
conditional sampling. One guided evaluation runs the model once on a doubled batch and counts as one
function evaluation (NFE).

Noise comes from :func:`make_noise` (a seeded ``torch.Generator``), so two models can be given the
very same starting noise and, for the SDE, the very same Brownian increments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["MAX_EVAL_SEED", "SolverInfo", "SOLVER_TABLE", "SOLVERS", "FIXED_STEP_ORDER", "evaluations",
           "describe_steps", "SampleResult", "VelocityField", "make_noise", "integrate", "sample"]


@dataclass(frozen=True)
class SolverInfo:
    """What a page, the CLI or the bound needs to know about a solver."""

    name: str
    order: int | None  # global order of a deterministic fixed-step solver; None for dopri5 and the SDE
    evals_per_step: int | None  # velocity evaluations per step; None when the solver picks its own steps
    summary: str  # one line for a person choosing it

    @property
    def adaptive(self) -> bool:
        return self.evals_per_step is None


# the one table of solver facts: the app's solver list, NFE counts, the bound's stages all read it
SOLVER_TABLE: dict[str, SolverInfo] = {s.name: s for s in (
    SolverInfo("euler", 1, 1, "Euler: one evaluation per step, first order"),
    SolverInfo("midpoint", 2, 2, "explicit midpoint: two evaluations per step, second order"),
    SolverInfo("heun", 2, 2, "Heun (trapezoid predictor-corrector): two evaluations per step, second order"),
    SolverInfo("rk4", 4, 4, "classical Runge-Kutta: four evaluations per step, fourth order"),
    SolverInfo("dopri5", None, None, "adaptive Dormand-Prince 5(4) (torchdiffeq): it picks its own steps"),
    SolverInfo("sde", None, 1, "Euler-Maruyama on the equivalent SDE: one evaluation per step, adds noise"),
)}
SOLVERS = tuple(SOLVER_TABLE)
FIXED_STEP_ORDER = {n: s.order for n, s in SOLVER_TABLE.items() if s.order is not None}


def _info(solver: str) -> SolverInfo:
    if solver not in SOLVER_TABLE:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVER_TABLE[solver]


def evaluations(solver: str, steps: int) -> int | None:
    """Velocity evaluations of one run (a guided evaluation counts once); None for an adaptive solver."""
    s = _info(solver)
    return None if s.adaptive else s.evals_per_step * int(steps)


def describe_steps(solver: str, steps: int) -> str:
    """"heun × 8 steps", or "dopri5 (adaptive steps)" where a step count would be meaningless."""
    return f"{solver} (adaptive steps)" if _info(solver).adaptive else f"{solver} × {steps} steps"


# Evaluation noise seeds lie in [0, MAX_EVAL_SEED): the app's seed box, the sweep and the CLI. Calibration draws its
# noise from a stream far above (fmq.calibrate.states), so it never sees an evaluation's noise.
MAX_EVAL_SEED = 2**31

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t scalar tensor) -> dx/dt


@dataclass
class SampleResult:
    images: torch.Tensor  # (B, C, H, W) final state at t = 1 (not clipped)
    nfe: int  # velocity-field evaluations
    times: list[float] = field(default_factory=list)  # times of the saved states
    trajectory: list[torch.Tensor] = field(default_factory=list)  # states at ``times``


class VelocityField:
    """Wraps a model as v(x, t) with labels and guidance, counting evaluations."""

    def __init__(self, model: nn.Module, y: torch.Tensor | None = None, guidance: float = 1.0) -> None:
        self.model, self.y, self.guidance, self.nfe = model, y, float(guidance), 0
        cfg = getattr(model, "config", None)
        self.null = cfg.null_label if cfg is not None and cfg.conditional else None
        if y is not None and self.null is None:
            raise ValueError("labels were given but the model is unconditional")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        b = x.shape[0]
        tb = t.reshape(()).expand(b).to(x)
        if self.y is None or self.guidance == 1.0:
            return self.model(x, tb, self.y)
        null = torch.full_like(self.y, self.null)
        v = self.model(torch.cat([x, x]), torch.cat([tb, tb]), torch.cat([self.y, null]))  # (2B, ...)
        v_cond, v_null = v[:b], v[b:]
        return v_null + self.guidance * (v_cond - v_null)


def make_noise(n: int, shape: Sequence[int], seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal noise (n, *shape) from a generator seeded with ``seed`` (same seed, same noise)."""
    if not 0 <= int(seed) < MAX_EVAL_SEED:
        raise ValueError(f"seed must lie in 0..{MAX_EVAL_SEED - 1}, got {seed}")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((n, *shape), generator=g).to(device)


def _snap(save_times: Sequence[float] | None, steps: int) -> dict[int, float]:
    """Map requested save times to the nearest grid index on a uniform grid of ``steps`` steps."""
    if not save_times:
        return {}
    out = {}
    for s in save_times:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"save times must lie in [0, 1], got {s}")
        i = round(s * steps)
        out[i] = i / steps
    return out


def integrate(
    v: Velocity,
    x0: torch.Tensor,
    solver: str = "heun",
    steps: int = 20,
    save_times: Sequence[float] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    sde_scale: float = 0.0,
    sde_seed: int = 0,
) -> tuple[torch.Tensor, list[float], list[torch.Tensor]]:
    """Integrate dx/dt = v(x, t) from 0 to 1. Returns (x(1), saved times, saved states).

    Fixed-step solvers and ``sde`` save the grid states nearest to ``save_times`` (the returned times
    are the grid times); ``dopri5`` saves at exactly ``save_times``.
    """
    if _info(solver).adaptive:
        return _dopri5(v, x0, save_times, rtol, atol)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    saves = _snap(save_times, steps)
    times, states = [], []
    x, h = x0, 1.0 / steps
    g = torch.Generator().manual_seed(int(sde_seed)) if solver == "sde" else None

    def record(i: int) -> None:
        if i in saves:
            times.append(saves[i])
            states.append(x.clone())

    record(0)
    for i in range(steps):
        t = torch.tensor(i * h, dtype=x0.dtype, device=x0.device)
        if solver == "euler":
            x = x + h * v(x, t)
        elif solver == "midpoint":
            x = x + h * v(x + 0.5 * h * v(x, t), t + 0.5 * h)
        elif solver == "heun":
            k1 = v(x, t)
            k2 = v(x + h * k1, t + h)
            x = x + 0.5 * h * (k1 + k2)
        elif solver == "rk4":
            k1 = v(x, t)
            k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = v(x + h * k3, t + h)
            x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        else:  # sde, Euler–Maruyama
            vel = v(x, t)
            drift = vel + 0.5 * sde_scale**2 * (t * vel - x)
            noise = torch.randn(x.shape, generator=g).to(x)
            x = x + h * drift + sde_scale * (1.0 - t).sqrt() * (h**0.5) * noise
        record(i + 1)
    return x, times, states


def _dopri5(v: Velocity, x0: torch.Tensor, save_times, rtol: float, atol: float):
    from torchdiffeq import odeint

    req = sorted({0.0, 1.0, *(float(s) for s in (save_times or []))})
    if req[0] < 0.0 or req[-1] > 1.0:
        raise ValueError(f"save times must lie in [0, 1], got {save_times}")
    grid = torch.tensor(req, dtype=torch.float64)
    with torch.no_grad():
        out = odeint(lambda t, x: v(x, t.to(x.dtype)), x0, grid.to(x0.dtype), rtol=rtol, atol=atol, method="dopri5")
    wanted = set(float(s) for s in (save_times or []))
    times = [t for t in req if t in wanted]
    states = [out[req.index(t)] for t in times]
    return out[-1], times, states


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: torch.Tensor,
    solver: str = "heun",
    steps: int = 20,
    y: torch.Tensor | None = None,
    guidance: float = 1.0,
    save_times: Sequence[float] | None = None,
    sde_scale: float = 0.0,
    sde_seed: int = 0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> SampleResult:
    """Generate images from ``noise`` (B, C, H, W) with a trained velocity field.

    ``y`` (B,) long gives class labels for a conditional model (None = unconditional / null label).
    """
    vf = VelocityField(model, y, guidance)
    x, times, states = integrate(
        vf, noise, solver, steps, save_times, rtol=rtol, atol=atol, sde_scale=sde_scale, sde_seed=sde_seed
    )
    return SampleResult(images=x, nfe=vf.nfe, times=times, trajectory=states)
