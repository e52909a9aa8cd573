"""The degradation bound: closed forms on linear fields, theorems on small random networks, the UNet plumbing."""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from torch import nn

from fmq.bounds import (
    defect_bound,
    degradation_report,
    fp32_sensitivity,
    gronwall_bound,
    propagate,
    solver_lipschitz,
)
from fmq.jacobians import local_lipschitz, param_frobenius
from fmq.models import UNet
from fmq.quant import METHODS
from fmq.quantize import QuantConfig, quantize_model
from fmq.sampling import FIXED_STEP_ORDER, integrate, make_noise

from .conftest import tiny_config

SOLVERS = list(FIXED_STEP_ORDER)
SHAPE = (1, 4, 4)  # D = 16
D = math.prod(SHAPE)


class BodyField(nn.Module):
    """v(x, t) = body(x) + t·drift: an nn.Sequential body (what network_bound reads) plus a term free of x."""

    def __init__(self, body: nn.Sequential, drift: torch.Tensor | None = None) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("drift", torch.zeros(SHAPE) if drift is None else drift)  # a buffer: never quantized

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x) + t.view(-1, 1, 1, 1) * self.drift


def linear_field(a: float, c: torch.Tensor | None = None) -> BodyField:
    """v(x) = a·x (+ c): Lipschitz |a|, and ‖v − v̂‖ = ‖c‖ everywhere."""
    lin = nn.Linear(D, D)
    with torch.no_grad():
        lin.weight.copy_(a * torch.eye(D))
        lin.bias.copy_(torch.zeros(D) if c is None else c)
    return BodyField(nn.Sequential(nn.Flatten(), lin, nn.Unflatten(1, SHAPE)))


def mlp_field(seed: int, hidden: int = 24, gain: float = 1.5) -> BodyField:
    g = torch.Generator().manual_seed(seed)
    body = nn.Sequential(nn.Flatten(), nn.Linear(D, hidden), nn.Tanh(), nn.Linear(hidden, D), nn.Unflatten(1, SHAPE))
    with torch.no_grad():
        for layer in (body[1], body[3]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * gain / math.sqrt(layer.in_features))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.3)
    return BodyField(body, torch.randn(SHAPE, generator=g))


def round_weights(model: nn.Module, bits: int) -> nn.Module:
    """Stand-in quantizer: every matrix rounded to a symmetric uniform grid with 2^b − 1 levels."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for p in q.parameters():
            if p.ndim > 1:
                step = p.abs().max() / max(2 ** (bits - 1) - 1, 1)
                p.copy_(torch.round(p / step) * step)
    return q


def report(f, q, solver="heun", steps=10, n=8, seed=0, **kw):
    noise = make_noise(n, SHAPE, seed)
    return degradation_report(f, q, noise, solver=solver, steps=steps, bound_nets=(f.body, q.body), **kw)


# --- the pieces -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_lipschitz_is_exact_for_linear_growth(solver):
    """On v = L·x the step map is x ↦ R(hL)·x, R the stability polynomial = Σ_{j≤p} (hL)^j/j!: Lemma 1 is tight."""
    h, lip = 0.1, 2.5
    x = torch.ones(1, dtype=torch.float64)
    step = integrate(lambda z, t: h * lip * z, x, solver, steps=1)[0]  # one step of size h on v = L·x
    assert float(step) == pytest.approx(float(solver_lipschitz(h * lip, solver)), rel=1e-12)


def test_defect_bound_and_propagate_edge_cases():
    assert float(defect_bound(2.0, 0.0, 0.1, "rk4")) == pytest.approx(0.2)  # L = 0: δ = h·ε
    assert float(defect_bound(0.0, math.inf, 0.1, "heun")) == 0.0  # no error, nothing to bound
    assert float(defect_bound(1.0, math.inf, 0.1, "euler")) == pytest.approx(0.1)  # Euler: δ = h·ε exactly
    assert math.isinf(float(defect_bound(1.0, math.inf, 0.1, "heun")))
    e = propagate(torch.zeros(2, 5), torch.tensor(math.inf))  # 0·inf must stay 0, not nan
    assert torch.equal(e, torch.zeros(2, 6))
    e = propagate(torch.ones(1, 3), torch.tensor(2.0))
    assert e.tolist() == [[0.0, 1.0, 3.0, 7.0]]
    assert gronwall_bound(1.0, 0.0) == 1.0 and gronwall_bound(1.0, 1.0) == pytest.approx(math.e - 1)


def test_local_lipschitz_matches_the_exact_jacobian_norm():
    torch.manual_seed(0)
    model = UNet(tiny_config(num_classes=3)).eval()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 2, 3])
    sigma, _ = local_lipschitz(model, x, 0.4, y, guidance=2.0, iters=60)
    for b in range(3):
        def f(z, b=b):
            z = z.reshape(1, 1, 8, 8)
            yy = y[b : b + 1]
            v = model(torch.cat([z, z]), torch.full((2,), 0.4), torch.cat([yy, torch.full_like(yy, 3)]))
            return (v[1] + 2.0 * (v[0] - v[1])).flatten()  # the guided field, w = 2

        exact = float(torch.linalg.matrix_norm(torch.autograd.functional.jacobian(f, x[b].flatten()).double(), 2))
        assert float(sigma[b]) == pytest.approx(exact, rel=1e-3)


def test_param_frobenius_on_a_linear_layer():
    """v = W·x + b: ‖∂v/∂W‖_F² = D·Σ_b‖x_b‖² and ‖∂v/∂b‖_F² = B·D."""
    f, x = linear_field(0.5), make_noise(8, SHAPE, 3)
    fro = param_frobenius(f, x, 0.2, probes=256)
    assert fro["body.1.weight"] == pytest.approx(D * float(x.pow(2).sum()), rel=0.05)
    assert fro["body.1.bias"] == pytest.approx(8 * D, rel=0.05)


def test_noise_model_predicts_the_velocity_error_of_noise_like_weight_errors():
    """Weights perturbed by i.i.d. noise: the noise model's ε is the RMS of the measured ‖v − v̂‖."""
    f = mlp_field(5)
    q = copy.deepcopy(f)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in q.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    r = report(f, q, "euler", steps=6, n=32)
    measured = r.eps_measured.pow(2).mean(dim=0).sqrt()  # (N,) RMS over samples at the FP32 states
    assert r.eps_noise_model.numpy() == pytest.approx(measured.numpy(), rel=0.3)
    assert r.bound_noise_model < r.bound_a_priori_estimate  # typical error vs worst direction


# --- linear fields: everything in closed form -------------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_linear_field_bound_is_exact_when_the_field_expands(solver):
    """v = a·x, v̂ = a·x + c: x̂_N − x_N = c·(R(ha)^N − 1)/a exactly, which is the discrete bound with L = a."""
    a, steps = 1.3, 12
    c = torch.randn(D, generator=torch.Generator().manual_seed(1)) * 0.05
    r = report(linear_field(a), linear_field(a, c), solver, steps)
    lam = float(solver_lipschitz(a / steps, solver))
    exact = float(c.norm()) * (lam**steps - 1) / a
    assert r.deviation.numpy() == pytest.approx(exact, rel=1e-5)
    for bound in (r.bound_a_posteriori, r.bound_a_posteriori_estimate):
        assert bound.numpy() == pytest.approx(exact, rel=1e-5)  # tight: factor 1
    assert r.bound_a_priori == pytest.approx(exact, rel=1e-5)
    assert r.lip_upper == pytest.approx(a, rel=1e-5) and r.lip_local.numpy() == pytest.approx(a, rel=1e-4)
    assert r.eps_measured.numpy() == pytest.approx(float(c.norm()), rel=1e-5)
    assert r.bound_path_estimate.numpy() == pytest.approx(r.deviation_path.numpy(), rel=1e-4, abs=1e-7)
    # the continuous bound exceeds the sampler's exact deviation by (e^a − 1)/(R(ha)^N − 1), → 1 as N grows
    ratio = gronwall_bound(float(c.norm()), a) / exact
    assert ratio == pytest.approx(math.expm1(a) / (lam**steps - 1), rel=1e-5)
    assert 1.0 <= ratio < (1.1 if solver != "euler" else 1.5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_linear_field_bound_is_loose_by_the_predicted_factor_when_the_field_contracts(solver):
    """v = −a·x: Lipschitz a, but errors shrink. With Λ = R(ha), r = R(−ha) (R the stability polynomial):
    measured c·(1 − r^N)/a; defects c·(1 − r)/a; a-posteriori Σ Λ^j·defect; a-priori c·(Λ^N − 1)/a."""
    a, steps = 2.0, 16
    c = torch.full((D,), 0.01)
    r = report(linear_field(-a), linear_field(-a, c), solver, steps)
    lam, rr = float(solver_lipschitz(a / steps, solver)), float(solver_lipschitz(-a / steps, solver))
    cn, n = float(c.norm()), steps
    measured = cn * (1 - rr**n) / a
    assert r.deviation.numpy() == pytest.approx(measured, rel=1e-5)
    assert r.defect.numpy() == pytest.approx(cn * (1 - rr) / a, rel=1e-4)
    post = cn * (1 - rr) / a * (lam**n - 1) / (lam - 1)
    assert r.bound_a_posteriori.numpy() == pytest.approx(post, rel=1e-4)
    assert r.bound_a_priori / measured == pytest.approx((lam**n - 1) / (1 - rr**n), rel=1e-4)
    # (e^a − 1)/(1 − e^−a) = e^a: the price of bounding growth by ‖J‖ rather than by its log-norm (−a)
    assert r.bound_a_priori / measured == pytest.approx(math.exp(a), rel=0.2)  # Euler, 16 steps: farthest off


# --- small random networks: the theorems must hold -------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_random_mlp_deviation_never_exceeds_the_rigorous_bounds(solver, bits):
    f = mlp_field(seed=bits)
    r = report(f, round_weights(f, bits), solver, steps=8)
    assert torch.all(r.deviation <= r.bound_a_posteriori * (1 + 1e-6) + 1e-6)
    assert torch.all(r.deviation_path.max(dim=1).values <= r.bound_a_priori * (1 + 1e-6) + 1e-6)
    assert r.bound_a_posteriori.max() <= r.bound_a_priori * (1 + 1e-6)  # measured defects beat the worst case
    assert math.isfinite(r.bound_a_priori) and r.bound_a_posteriori.max() < 1e3 * r.deviation.max() + 1e-5


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 6), gain=st.floats(0.5, 4.0), solver=st.sampled_from(SOLVERS))
def test_property_measured_le_a_posteriori(seed, bits, gain, solver):
    f = mlp_field(seed, gain=gain)
    r = report(f, round_weights(f, bits), solver, steps=5, n=4, seed=seed, power_iters=2)
    assert torch.all(r.deviation <= r.bound_a_posteriori * (1 + 1e-6) + 1e-6)
    assert r.deviation.max() <= r.bound_a_priori * (1 + 1e-6) + 1e-6


def test_w2_between_output_sets_is_below_the_coupling_and_the_bound():
    f = mlp_field(3)
    q = round_weights(f, 2)
    r = report(f, q, "rk4", steps=6, n=12)
    noise = make_noise(12, SHAPE, 0)
    a = integrate(lambda x, t: f(x, t.expand(12)), noise, "rk4", 6)[0].flatten(1).double()
    b = integrate(lambda x, t: q(x, t.expand(12)), noise, "rk4", 6)[0].flatten(1).double()
    cost = torch.cdist(a, b).pow(2).detach().numpy()
    rows, cols = linear_sum_assignment(cost)
    w2 = math.sqrt(cost[rows, cols].mean())  # exact W2 between the two empirical sets
    assert w2 <= r.w2_coupling + 1e-9
    assert r.w2_coupling <= math.sqrt(float(r.bound_a_posteriori.pow(2).mean())) + 1e-9
    assert np.isclose(r.w2_coupling, float(r.deviation.pow(2).mean().sqrt()))


# --- the UNet: estimates, plumbing, errors ---------------------------------------------------------------


def test_unet_report_shapes_and_estimates():
    torch.manual_seed(0)
    model = UNet(tiny_config(num_classes=3)).eval()
    noise, y = make_noise(3, (1, 8, 8), 0), torch.tensor([0, 1, 2])
    sens = fp32_sensitivity(model, noise, y, "heun", 6, guidance=1.5, power_iters=4)
    reps = {b: degradation_report(model, round_weights(model, b), noise, y, "heun", 6, 1.5, sensitivity=sens)
            for b in (2, 8)}  # fmt: skip
    r2, r8 = reps[2], reps[8]
    assert r8.deviation_path.shape == (3, 7) and r8.eps_measured.shape == (3, 6) and r8.lip_local.shape == (3, 6)
    assert torch.all(r8.deviation_path[:, 0] == 0)
    assert r8.deviation.max() < r2.deviation.max() and r8.eps_measured.max() < r2.eps_measured.max()
    assert r8.weight_error < r2.weight_error and r8.bound_a_priori_estimate < r2.bound_a_priori_estimate
    for r in (r2, r8):
        assert torch.all(r.deviation <= r.bound_a_posteriori)  # rigorous (and, for a UNet, +inf)
        assert torch.all(torch.isfinite(r.bound_a_posteriori_estimate))
        assert math.isfinite(r.eps_upper) and r.eps_along_q.max() <= r.eps_upper  # Theorem 3 covers x̂_k
        assert set(r.summary()) >= {"deviation_max", "bound_a_posteriori_estimate", "bound_a_priori"}
    with pytest.raises(ValueError, match="sensitivity"):
        degradation_report(model, model, noise, y, "heun", 7, 1.5, sensitivity=sens)
    with pytest.raises(ValueError, match="fixed-step"):
        degradation_report(model, model, noise, y, "dopri5", 6)


# --- every shipped quantizer ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_quantizer_on_a_random_mlp_stays_within_the_rigorous_bounds(method, bits):
    f = mlp_field(seed=7)
    q, _ = quantize_model(f, QuantConfig(method=method, bits=bits, granularity="channel"))
    r = report(f, q, "heun", steps=8)
    assert r.weight_error > 0
    assert torch.all(r.deviation <= r.bound_a_posteriori * (1 + 1e-6) + 1e-6)
    assert r.deviation.max() <= r.bound_a_priori * (1 + 1e-6) + 1e-6
    assert math.isfinite(r.bound_a_priori)


@pytest.fixture(scope="module")
def unet_sensitivity():
    torch.manual_seed(0)
    model = UNet(tiny_config(num_classes=3)).eval()
    noise = make_noise(2, (1, 8, 8), 1)
    return model, fp32_sensitivity(model, noise, None, "euler", 5, power_iters=3)


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_quantizer_on_the_unet(unet_sensitivity, method, bits):
    model, sens = unet_sensitivity
    q, _ = quantize_model(model, QuantConfig(method=method, bits=bits, scope="all"))
    r = degradation_report(model, q, sens.noise, None, "euler", 5, sensitivity=sens)
    assert torch.all(r.deviation <= r.bound_a_posteriori)  # a theorem, though +inf for a UNet
    assert torch.all(torch.isfinite(r.bound_a_posteriori_estimate)) and math.isfinite(r.bound_a_priori_estimate)
    assert r.eps_along_q.max() <= r.eps_upper  # Theorem 3 on the ball that holds every quantized state
