"""The degradation bound: how far can the quantized sampler's output drift from the FP32 one?

Notation (docs/theory.md states and proves everything): v is the FP32 field and v̂ the quantized one, both as
the sampler sees them (labels, guidance w); t_k = k·h with h = 1/N; x_k and x̂_k are the FP32 and quantized
states from the same noise; Φ_h one step of a fixed-step solver of order p (euler 1, midpoint and heun 2,
rk4 4). Norms are per-sample ℓ2 over all C·H·W entries (images in [-1, 1]); divide by √(C·H·W) for RMS.

Discrete Grönwall (Theorem 2): if v(·, t) is L-Lipschitz then Lip(Φ_h) ≤ Λ = Σ_{j≤p} (hL)^j / j!, and

    e_{k+1} ≤ Λ·e_k + δ_k,    e_k = ‖x_k − x̂_k‖,    δ_k = ‖Φ_h(x̂_k) − Φ̂_h(x̂_k)‖ ≤ ε·(Λ − 1)/L,

with ε ≥ ‖v − v̂‖ at the quantized stage points; so e_N ≤ ε·(Λ^N − 1)/L ≤ ε·(e^L − 1)/L.

Four bounds come out, two of them theorems for the sampled outputs, two estimates:

* ``bound_a_posteriori`` (rigorous): the recursion with the measured defects δ_k and the global L of
  :func:`fmq.lipschitz.network_bound`. For UNets that L is astronomically large, so the bound is +inf.
* ``bound_a_posteriori_estimate``: the same recursion with L_k = ‖∂v/∂x‖ measured at the FP32 states.
* ``bound_a_priori`` (rigorous): weights only — ε from network_bound on the ball ‖x‖ ≤ ‖x₀‖ + sup‖v̂‖.
* ``bound_a_priori_estimate``: ε_k = ‖∂v/∂θ‖·‖θ̂ − θ‖ (first order in the weight error), local L_k.

and one prediction: ``bound_noise_model``, the same with ε_k² = Σ_i MSE_i·‖∂v/∂θ_i‖_F² / B, the typical
velocity error if each tensor's weight error were i.i.d. noise (:mod:`fmq.jacobians`). Weights only, but
it is a typical value, not a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .jacobians import local_lipschitz, param_frobenius, param_gain
from .lipschitz import network_bound
from .sampling import FIXED_STEP_ORDER, SOLVER_TABLE, VelocityField, integrate

__all__ = [
    "BoundReport",
    "Sensitivity",
    "gronwall_bound",
    "solver_lipschitz",
    "defect_bound",
    "propagate",
    "fp32_sensitivity",
    "degradation_report",
]


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Per-sample ℓ2 over everything but the batch axis: (B, ...) -> (B,) float64."""
    return x.detach().flatten(1).double().norm(dim=1)


def _check_solver(solver: str) -> None:
    if solver not in FIXED_STEP_ORDER:
        raise ValueError(f"the bound covers the fixed-step solvers {', '.join(FIXED_STEP_ORDER)}; got {solver!r}")


def gronwall_bound(eps: float, lip: float) -> float:
    """ε·(e^L − 1)/L, the continuous-time Grönwall bound (Theorem 1); ε for L = 0."""
    return eps if lip == 0 else eps * math.expm1(lip) / lip


def solver_lipschitz(h_lip: torch.Tensor | float, solver: str) -> torch.Tensor:
    """Λ = Σ_{j=0}^{p} (hL)^j / j! ≥ Lip(Φ_h) for the order-p solver (Lemma 1); same shape as ``h_lip``."""
    _check_solver(solver)
    hl = torch.as_tensor(h_lip, dtype=torch.float64)
    return sum(hl**j / math.factorial(j) for j in range(FIXED_STEP_ORDER[solver] + 1))


def defect_bound(eps: torch.Tensor | float, lip: torch.Tensor | float, h: float, solver: str) -> torch.Tensor:
    """δ ≤ ε·(Λ − 1)/L = h·ε·Σ_{j=1}^{p} (hL)^{j−1}/j! (Lemma 2), written so L = 0 and ε = 0 are exact."""
    _check_solver(solver)
    eps, hl = torch.as_tensor(eps, dtype=torch.float64), h * torch.as_tensor(lip, dtype=torch.float64)
    poly = sum(hl ** (j - 1) / math.factorial(j) for j in range(1, FIXED_STEP_ORDER[solver] + 1))
    return torch.where(eps == 0, torch.zeros_like(eps * poly), h * eps * poly)


def propagate(defects: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Run e_0 = 0, e_{k+1} = Λ_k·e_k + δ_k. ``defects`` (B, N), ``lam`` broadcastable to it -> (B, N+1)."""
    defects = defects.double()
    lam = torch.as_tensor(lam, dtype=torch.float64).expand_as(defects)
    e = torch.zeros(defects.shape[0], dtype=torch.float64)
    out = [e]
    for k in range(defects.shape[1]):
        grow = torch.where(e > 0, lam[:, k] * e, torch.zeros_like(e))  # 0·inf = 0: nothing to amplify yet
        e = grow + defects[:, k]
        out.append(e)
    return torch.stack(out, dim=1)


@dataclass
class Sensitivity:
    """The FP32 half of the bound, computed once per model, noise, labels, solver, steps and guidance."""

    solver: str
    steps: int
    guidance: float
    noise: torch.Tensor  # (B, C, H, W) starting noise
    y: torch.Tensor | None  # (B,) labels or None
    times: list[float]  # t_0 .. t_N
    states: torch.Tensor  # (N+1, B, C, H, W) FP32 states x_k
    velocity: torch.Tensor  # (N, B, C, H, W) v(x_k, t_k)
    lip_local: torch.Tensor  # (B, N) float64, estimates of ‖∂v/∂x‖ at (x_k, t_k)
    param_gain: torch.Tensor  # (N,) float64, estimates of ‖∂v/∂θ‖ at the batch (x_k, t_k)
    param_frobenius: dict[str, torch.Tensor]  # name -> (N,) float64, ‖∂v/∂θ_i‖_F² summed over the batch


def _run(model, noise, y, guidance, solver, steps) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's own trajectory: states (N+1, B, ...) and the velocities at the grid states (N, B, ...)."""
    vf, calls = VelocityField(model, y, guidance), []

    def rec(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(vf(x, t))
        return calls[-1]

    _, _, states = integrate(rec, noise, solver, steps, save_times=[k / steps for k in range(steps + 1)])
    s = SOLVER_TABLE[solver].evals_per_step
    if len(calls) != steps * s:
        raise RuntimeError(f"{solver} made {len(calls)} evaluations for {steps} steps, expected {steps * s}")
    return torch.stack(states), torch.stack(calls[::s])  # each step's first stage is at (x_k, t_k)


def _one_step(model, y, guidance, solver, x, k, h) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ_h(x) from t_k, and v(x, t_k). Explicit RK steps commute with affine time changes, so one unit step
    of w(z, s) = h·v(z, t_k + s·h) is the sampler's step from t_k, with the sampler's own solver code."""
    vf, first = VelocityField(model, y, guidance), []

    def w(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        v = vf(z, k * h + s * h)
        if not first:
            first.append(v)
        return h * v

    return integrate(w, x, solver, steps=1)[0], first[0]


def fp32_sensitivity(
    model_fp: nn.Module,
    noise: torch.Tensor,
    y: torch.Tensor | None = None,
    solver: str = "heun",
    steps: int = 20,
    guidance: float = 1.0,
    power_iters: int = 6,
) -> Sensitivity:
    """FP32 trajectory, its grid velocities, local Lipschitz and parameter-gain estimates at every x_k."""
    _check_solver(solver)
    states, vel = _run(model_fp, noise, y, guidance, solver, steps)
    lips, gains, frob, u = [], [], [], None
    for k in range(steps):
        lip, u = local_lipschitz(model_fp, states[k], k / steps, y, guidance, power_iters, start=u)  # warm start
        lips.append(lip)
        gains.append(param_gain(model_fp, states[k], k / steps, y, guidance, power_iters))
        frob.append(param_frobenius(model_fp, states[k], k / steps, y, guidance))
    frob_t = {name: torch.tensor([f[name] for f in frob], dtype=torch.float64) for name in frob[0]}
    return Sensitivity(
        solver, steps, float(guidance), noise, y, [k / steps for k in range(steps + 1)], states, vel,
        torch.stack(lips, dim=1), torch.tensor(gains, dtype=torch.float64), frob_t,
    )  # fmt: skip


@dataclass
class BoundReport:
    """Bounds and measurements for one (FP32, quantized) pair; per-sample ℓ2 norms over C·H·W."""

    solver: str
    steps: int
    guidance: float
    times: list[float]  # t_0 .. t_N
    deviation_path: torch.Tensor  # (B, N+1) measured ‖x_k − x̂_k‖
    eps_measured: torch.Tensor  # (B, N) ‖v − v̂‖ at the FP32 states (x_k, t_k)
    eps_along_q: torch.Tensor  # (B, N) ‖v − v̂‖ at the quantized states (x̂_k, t_k)
    defect: torch.Tensor  # (B, N) δ_k = ‖Φ_h(x̂_k) − x̂_{k+1}‖, measured
    lip_upper: float  # rigorous global Lipschitz constant of v in x (with guidance); may be inf
    lip_local: torch.Tensor  # (B, N) estimates of ‖∂v/∂x‖ at (x_k, t_k)
    eps_upper: float  # rigorous sup ‖v − v̂‖ over ‖x‖ ≤ x_norm, from the weights
    eps_first_order: torch.Tensor  # (N,) estimate ‖∂v/∂θ‖·‖θ̂ − θ‖ at each t_k
    weight_error: float  # ‖θ̂ − θ‖₂ over all parameters
    x_norm: float  # a-priori radius max‖x₀‖ + sup‖v̂‖ holding every quantized stage point
    bound_a_priori: float  # rigorous, weights only
    bound_a_priori_estimate: float  # first-order ε, local L
    bound_a_posteriori: torch.Tensor  # (B,) rigorous, measured defects, global L
    bound_a_posteriori_estimate: torch.Tensor  # (B,) measured defects, local L
    bound_path_estimate: torch.Tensor  # (B, N+1) the estimate at every t_k
    eps_noise_model: torch.Tensor  # (N,) RMS ‖v − v̂‖ predicted from per-tensor weight MSEs (noise model)
    bound_noise_model: float  # the a-priori estimate with eps_noise_model: a typical value, not a bound

    @property
    def deviation(self) -> torch.Tensor:
        """(B,) measured ‖x_N − x̂_N‖."""
        return self.deviation_path[:, -1]

    @property
    def w2_coupling(self) -> float:
        """√(mean ‖x_N − x̂_N‖²): an upper bound on W2 between the two empirical output sets (same noise)."""
        return float(self.deviation.pow(2).mean().sqrt())

    def summary(self) -> dict[str, float]:
        """Plain floats for tables: worst case over the batch where a quantity is per sample."""
        return {
            "deviation_max": float(self.deviation.max()),
            "deviation_mean": float(self.deviation.mean()),
            "w2_coupling": self.w2_coupling,
            "eps_max": float(self.eps_measured.max()),
            "lip_local_max": float(self.lip_local.max()),
            "lip_upper": self.lip_upper,
            "bound_a_priori": self.bound_a_priori,
            "bound_a_priori_estimate": self.bound_a_priori_estimate,
            "bound_noise_model": self.bound_noise_model,
            "bound_a_posteriori": float(self.bound_a_posteriori.max()),
            "bound_a_posteriori_estimate": float(self.bound_a_posteriori_estimate.max()),
        }


def _guidance_factor(y: torch.Tensor | None, guidance: float) -> float:
    """v_w = (1 − w)·v(x, ∅) + w·v(x, y): Lipschitz constants and errors scale by at most |1 − w| + |w|."""
    return 1.0 if y is None or guidance == 1.0 else abs(1.0 - guidance) + abs(guidance)


def degradation_report(
    model_fp: nn.Module,
    model_q: nn.Module,
    noise: torch.Tensor,
    y: torch.Tensor | None = None,
    solver: str = "heun",
    steps: int = 20,
    guidance: float = 1.0,
    power_iters: int = 6,
    sensitivity: Sensitivity | None = None,
    bound_nets: tuple[nn.Module, nn.Module] | None = None,
) -> BoundReport:
    """All bounds and the measured deviation for ``model_q`` against ``model_fp`` from ``noise`` (B, C, H, W).

    ``sensitivity``: reuse :func:`fp32_sensitivity` across quantizers and bit widths (it must match the
    arguments). ``bound_nets``: the (FP32, quantized) modules :func:`network_bound` reads for the rigorous
    constants, by default the models; give (body_fp, body_q) when a model is an nn.Sequential body plus
    unquantized terms that do not depend on x.
    """
    _check_solver(solver)
    sens = sensitivity or fp32_sensitivity(model_fp, noise, y, solver, steps, guidance, power_iters)
    same_y = (sens.y is None and y is None) or (sens.y is not None and y is not None and torch.equal(sens.y, y))
    if (sens.solver, sens.steps, sens.guidance) != (solver, steps, float(guidance)) or not (
        torch.equal(sens.noise, noise) and same_y
    ):
        raise ValueError("the sensitivity was computed for other noise, labels, solver, steps or guidance")
    h = 1.0 / steps
    q_states, q_vel = _run(model_q, noise, y, guidance, solver, steps)
    defect, eps_q, eps_fp = [], [], []
    vq = VelocityField(model_q, y, guidance)
    for k in range(steps):
        step, v_at = _one_step(model_fp, y, guidance, solver, q_states[k], k, h)
        defect.append(_norms(step - q_states[k + 1]))
        eps_q.append(_norms(v_at - q_vel[k]))
        eps_fp.append(_norms(vq(sens.states[k], torch.tensor(k * h)) - sens.velocity[k]))
    defect_t = torch.stack(defect, dim=1)  # (B, N)

    c_w = _guidance_factor(y, guidance)
    net_fp, net_q = bound_nets or (model_fp, model_q)
    x_norm = float(_norms(noise).max()) + c_w * network_bound(net_fp, net_q).out_norm_q
    nb = network_bound(net_fp, net_q, x_norm)
    lip_up, eps_up = c_w * nb.lipschitz_fp, c_w * nb.eps
    lam_up = solver_lipschitz(h * lip_up, solver)
    prior = propagate(defect_bound(eps_up, lip_up, h, solver).expand(1, steps), lam_up)[0, -1]
    post = propagate(defect_t, lam_up)[:, -1]

    path_est = propagate(defect_t, solver_lipschitz(h * sens.lip_local, solver))
    mse = _weight_mse(model_fp, model_q)
    dtheta = math.sqrt(sum(m * n for m, n in mse.values()))
    eps_est = sens.param_gain * dtheta  # (N,)
    eps_noise = (sum(sens.param_frobenius[k] * m for k, (m, _) in mse.items()) / noise.shape[0]).sqrt()
    lip_k = sens.lip_local.max(dim=0).values  # (N,) ε_est is one number per step, so take the batch's worst L
    lam_k = solver_lipschitz(h * lip_k, solver)[None]
    prior_est = propagate(defect_bound(eps_est, lip_k, h, solver)[None], lam_k)[0, -1]
    noise_est = propagate(defect_bound(eps_noise, lip_k, h, solver)[None], lam_k)[0, -1]
    return BoundReport(
        solver, steps, float(guidance), sens.times, _norms_path(sens.states, q_states),
        torch.stack(eps_fp, dim=1), torch.stack(eps_q, dim=1), defect_t, lip_up, sens.lip_local, eps_up,
        eps_est, dtheta, x_norm, float(prior), float(prior_est), post, path_est[:, -1], path_est,
        eps_noise, float(noise_est),
    )  # fmt: skip


def _weight_mse(model_fp: nn.Module, model_q: nn.Module) -> dict[str, tuple[float, int]]:
    """Per parameter tensor, matched by name: (mean squared error θ̂ − θ, number of entries)."""
    q = dict(model_q.named_parameters())
    missing = [n for n, _ in model_fp.named_parameters() if n not in q]
    if missing:
        raise ValueError(f"the quantized model lacks parameters {missing[:3]}; it must keep the FP32 layout")
    return {
        n: (float((p.detach() - q[n].detach()).double().pow(2).mean()), p.numel())
        for n, p in model_fp.named_parameters()
    }


def _norms_path(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N+1, B, ...) twice -> (B, N+1) per-sample distances."""
    return torch.stack([_norms(x - y) for x, y in zip(a, b)], dim=1)
