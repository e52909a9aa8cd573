import math

import pytest
import torch

from fmq.sampling import FIXED_STEP_ORDER, integrate, make_noise, sample

from .conftest import tiny_config


def cubic(x, t):  # v = 3t^2  =>  x(1) = x(0) + 1
    return torch.full_like(x, 3.0) * t**2


def linear(a):  # v = a x  =>  x(1) = e^a x(0)
    return lambda x, t: a * x


@pytest.mark.parametrize("solver", list(FIXED_STEP_ORDER))
def test_polynomial_in_t(solver):
    x0 = torch.tensor([0.5], dtype=torch.float64)
    errs = [abs(integrate(cubic, x0, solver, n)[0].item() - 1.5) for n in (8, 16, 32)]
    if solver == "rk4":  # RK4 is Simpson's rule here, exact for polynomials of degree <= 3
        assert max(errs) < 1e-12
    else:
        assert errs[0] > errs[1] > errs[2]
        p = FIXED_STEP_ORDER[solver]
        assert math.log2(errs[1] / errs[2]) == pytest.approx(p, abs=0.1)


@pytest.mark.parametrize("solver", list(FIXED_STEP_ORDER))
def test_order_of_convergence_on_exponential(solver):
    a = -1.3
    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    exact = x0 * math.exp(a)
    errs = [(integrate(linear(a), x0, solver, n)[0] - exact).abs().max().item() for n in (10, 20, 40)]
    observed = math.log2(errs[1] / errs[2])
    assert observed == pytest.approx(FIXED_STEP_ORDER[solver], abs=0.15)


def test_dopri5_within_tolerance():
    a = 1.7
    x0 = torch.tensor([1.0, 0.25, -3.0], dtype=torch.float64)
    for tol in (1e-4, 1e-8):
        x1, _, _ = integrate(linear(a), x0, "dopri5", rtol=tol, atol=tol)
        exact = x0 * math.exp(a)
        assert (x1 - exact).abs().max() <= 10 * (tol + tol * exact.abs().max())
    x1, _, _ = integrate(cubic, torch.zeros(1, dtype=torch.float64), "dopri5", rtol=1e-9, atol=1e-9)
    assert x1.item() == pytest.approx(1.0, abs=1e-7)


def test_save_times_fixed_and_adaptive():
    x0 = torch.ones(1, dtype=torch.float64)
    _, times, states = integrate(linear(1.0), x0, "rk4", 10, save_times=[0.0, 0.5, 1.0])
    assert times == [0.0, 0.5, 1.0]
    for t, s in zip(times, states):
        assert s.item() == pytest.approx(math.exp(t), rel=1e-5)
    _, times, states = integrate(linear(1.0), x0, "dopri5", save_times=[0.25, 0.75])
    assert times == [0.25, 0.75]
    assert states[1].item() == pytest.approx(math.exp(0.75), rel=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        integrate(linear(1.0), x0, "euler", 4, save_times=[1.5])


def test_bad_arguments():
    x0 = torch.ones(1)
    with pytest.raises(ValueError, match="unknown solver"):
        integrate(linear(1.0), x0, "leapfrog", 4)
    with pytest.raises(ValueError, match="steps"):
        integrate(linear(1.0), x0, "euler", 0)


def test_sde_with_zero_noise_is_euler():
    v = linear(-0.7)
    x0 = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(integrate(v, x0, "sde", 25, sde_scale=0.0)[0], integrate(v, x0, "euler", 25)[0])


def gaussian_velocity(mu: float, s: float):
    """Exact marginal velocity of the linear path from N(0,1) to N(mu, s^2)."""

    def v(x, t):
        var = (1 - t) ** 2 + t**2 * s**2
        return mu + (t * s**2 - (1 - t)) / var * (x - t * mu)

    return v


@pytest.mark.parametrize("solver,scale", [("heun", 0.0), ("sde", 1.0), ("sde", 2.0)])
def test_ode_and_sde_reach_the_data_distribution(solver, scale):
    mu, s = 1.5, 0.4
    x0 = make_noise(40_000, (1,), seed=1).double()
    x1, _, _ = integrate(gaussian_velocity(mu, s), x0, solver, 200, sde_scale=scale, sde_seed=3)
    assert x1.mean().item() == pytest.approx(mu, abs=0.02)
    assert x1.std().item() == pytest.approx(s, abs=0.02)


def test_same_seed_same_samples_and_nfe():
    torch.manual_seed(0)
    from fmq.models import UNet

    model = UNet(tiny_config(num_classes=3)).eval()
    noise = make_noise(4, (1, 8, 8), seed=7)
    torch.testing.assert_close(noise, make_noise(4, (1, 8, 8), seed=7), rtol=0, atol=0)
    assert not torch.equal(noise, make_noise(4, (1, 8, 8), seed=8))
    y = torch.tensor([0, 1, 2, 0])
    a = sample(model, noise, "heun", 5, y=y, guidance=2.0)
    b = sample(model, noise.clone(), "heun", 5, y=y, guidance=2.0)
    assert torch.equal(a.images, b.images)
    assert a.nfe == 10
    assert sample(model, noise, "rk4", 3).nfe == 12
    s1 = sample(model, noise, "sde", 5, sde_scale=0.5, sde_seed=1)
    s2 = sample(model, noise, "sde", 5, sde_scale=0.5, sde_seed=1)
    s3 = sample(model, noise, "sde", 5, sde_scale=0.5, sde_seed=2)
    assert torch.equal(s1.images, s2.images) and not torch.equal(s1.images, s3.images)


def test_guidance_combines_conditional_and_null():
    torch.manual_seed(0)
    from fmq.models import UNet
    from fmq.sampling import VelocityField

    model = UNet(tiny_config(num_classes=3)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor(0.4), torch.tensor([1, 2])
    with torch.no_grad():
        vc, vn = model(x, t.expand(2), y), model(x, t.expand(2), None)
        got = VelocityField(model, y, guidance=3.0)(x, t)
    torch.testing.assert_close(got, vn + 3.0 * (vc - vn), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unconditional"):
        VelocityField(UNet(tiny_config()), y)


def test_solver_table_counts_evaluations_as_the_solvers_make_them():
    from fmq.sampling import SOLVER_TABLE, describe_steps, evaluations

    x0 = torch.zeros(2, 3)
    for name, info in SOLVER_TABLE.items():
        calls = []

        def v(x, t, calls=calls):
            calls.append(float(t))
            return -x

        integrate(v, x0, name, 5)
        if info.adaptive:
            assert evaluations(name, 5) is None and describe_steps(name, 5) == f"{name} (adaptive steps)"
        else:
            assert evaluations(name, 5) == len(calls), name
            assert describe_steps(name, 5) == f"{name} × 5 steps"
    with pytest.raises(ValueError, match="unknown solver"):
        evaluations("rk45", 3)
