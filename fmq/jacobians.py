"""Jacobian norms of a velocity field, estimated where the samples go: in x (local Lipschitz) and in θ.

The field is taken as the sampler evaluates it (labels, guidance), through the body of
:class:`fmq.sampling.VelocityField.__call__` without its ``no_grad``. All estimates come from one forward
pass per point: Jᵀ·w is a backward pass and J·u the double-backward trick (g(w) = Jᵀw is linear in w, so
∂⟨g(w), u⟩/∂w = J·u), which on CPU is far cheaper than forward-mode AD.

* :func:`local_lipschitz`  ‖∂v/∂x‖₂ per sample, power iteration on JᵀJ (estimate from below),
* :func:`param_gain`       ‖∂v/∂θ‖₂ over all parameters (worst direction of a weight error),
* :func:`param_frobenius`  ‖∂v/∂θ_i‖_F² per parameter tensor (Hutchinson), the gain for noise-like errors:
  if θ̂_i − θ_i has i.i.d. zero-mean entries of variance MSE_i, E‖(∂v/∂θ)(θ̂ − θ)‖² = Σ_i MSE_i·‖∂v/∂θ_i‖_F².
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from .sampling import VelocityField

__all__ = ["local_lipschitz", "param_gain", "param_frobenius"]

_CALL = getattr(VelocityField.__call__, "__wrapped__", VelocityField.__call__)  # the body, without no_grad


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.detach().flatten(1).double().norm(dim=1)


def _unit(u: torch.Tensor) -> torch.Tensor:
    return u / u.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * (u.ndim - 1))


class _Linearized:
    """J·u and Jᵀ·w of ``out`` with respect to ``inputs``, reusing the graph of one forward pass."""

    def __init__(self, out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        self.out, self.inputs = out, inputs
        self.w = torch.zeros_like(out, requires_grad=True)
        g = torch.autograd.grad(out, inputs, self.w, create_graph=True, materialize_grads=True)
        self.live = [i for i, gi in enumerate(g) if gi.requires_grad]  # inputs the output depends on
        self.g = [g[i] for i in self.live]

    def jvp(self, u: list[torch.Tensor]) -> torch.Tensor:
        return torch.autograd.grad(self.g, self.w, [u[i] for i in self.live], retain_graph=True)[0]

    def vjp(self, w: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.autograd.grad(self.out, self.inputs, w, retain_graph=True, materialize_grads=True))


def local_lipschitz(
    model: nn.Module,
    x: torch.Tensor,
    t: float,
    y: torch.Tensor | None = None,
    guidance: float = 1.0,
    iters: int = 6,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate ‖∂v/∂x‖₂ at every sample of x (B, C, H, W) at time t, by power iteration on JᵀJ.

    Returns (σ (B,) float64, u (B, C, H, W) the last unit directions, to warm-start a nearby point).
    σ = ‖J·u‖ with ‖u‖ = 1, so σ never exceeds the true local norm: an estimate from below. Fields must act
    per sample (the UNet does: GroupNorm and attention never mix samples), so JᵀJ is block diagonal.
    """
    vf, tt = VelocityField(model, y, guidance), torch.tensor(float(t), dtype=x.dtype)
    u = start if start is not None else torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    u = _unit(u.to(x))
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        lin = _Linearized(_CALL(vf, xx, tt), [xx])
        for _ in range(iters):
            u = _unit(lin.vjp(lin.jvp([u]))[0])
        return _norms(lin.jvp([u])), u.detach()


def param_gain(
    model: nn.Module, x: torch.Tensor, t: float, y: torch.Tensor | None = None, guidance: float = 1.0, iters: int = 6
) -> float:
    """Estimate ‖∂v/∂θ‖₂ (all parameters -> the whole batch of velocities at x (B, C, H, W), t).

    First order in the weight error: ‖v̂ − v‖ ≈ ‖(∂v/∂θ)(θ̂ − θ)‖ ≤ gain·‖θ̂ − θ‖₂. Taken jointly over the
    batch, it is at least every sample's own gain (and at most √B times the largest).
    """
    g = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        out, params = _param_field(model, x, t, y, guidance)
        lin = _Linearized(out, list(params.values()))
        u = [torch.randn(p.shape, generator=g).to(p) for p in params.values()]
        for _ in range(iters + 1):
            n = math.sqrt(sum(float(v.pow(2).sum()) for v in u)) or 1.0
            u = [v / n for v in u]
            ju = lin.jvp(u)
            u = lin.vjp(ju)
        return float(ju.detach().double().norm())


def _param_field(model: nn.Module, x: torch.Tensor, t: float, y, guidance: float):
    """(velocity at x as a function of detached copies of the parameters, those copies by name)."""
    vf, tt = VelocityField(model, y, guidance), torch.tensor(float(t), dtype=x.dtype)
    params = {k: p.detach().requires_grad_(True) for k, p in model.named_parameters()}
    vf.model = lambda *a: functional_call(model, params, a)  # our own wrapper; the model is untouched
    return _CALL(vf, x.detach(), tt), params


def param_frobenius(
    model: nn.Module, x: torch.Tensor, t: float, y: torch.Tensor | None = None, guidance: float = 1.0, probes: int = 8
) -> dict[str, float]:
    """Estimate ‖∂v/∂θ_i‖_F² for every parameter tensor θ_i, summed over the batch x (B, C, H, W) at time t.

    Hutchinson: for w ~ N(0, I) over the outputs, E‖(∂v/∂θ_i)ᵀw‖² = ‖∂v/∂θ_i‖_F²; ``probes`` draws are averaged.
    """
    g = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        out, params = _param_field(model, x, t, y, guidance)
        acc = dict.fromkeys(params, 0.0)
        for _ in range(probes):
            w = torch.randn(out.shape, generator=g).to(out)
            grads = torch.autograd.grad(out, list(params.values()), w, retain_graph=True, materialize_grads=True)
            for k, gk in zip(params, grads):
                acc[k] += float(gk.double().pow(2).sum()) / probes
    return acc
