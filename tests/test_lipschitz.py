"""Rigorous network bounds: each rule against the exact operator norm or against inequalities that can fail."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmq.jacobians import local_lipschitz
from fmq.lipschitz import (
    SILU_LIP,
    conv_norm_upper,
    groupnorm_lipschitz,
    groupnorm_radius,
    nearest_upsample_norm,
    network_bound,
)
from fmq.models import UNet

from .conftest import tiny_config


def dense_norm(f, shape) -> float:
    """Exact ℓ2 operator norm of a linear map on tensors of ``shape``, via its dense matrix."""
    n = math.prod(shape)
    jac = torch.autograd.functional.jacobian(lambda z: f(z.reshape(1, *shape)).flatten(), torch.zeros(n))
    return float(torch.linalg.matrix_norm(jac.double(), ord=2))


def spec(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


def round_weights(model: nn.Module, bits: int) -> nn.Module:
    """A copy with every matrix/kernel rounded to a symmetric uniform grid (stand-in quantizer)."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for p in q.parameters():
            if p.ndim > 1:
                step = p.abs().max() / (2 ** (bits - 1) - 1 or 1)
                p.copy_(torch.round(p / step) * step)
    return q


@pytest.mark.parametrize("k,stride,hw", [(3, 1, (5, 6)), (3, 2, (6, 6)), (3, 2, (7, 7)), (1, 1, (4, 4))])
def test_conv_norm_is_an_upper_bound_and_fft_is_tight(k, stride, hw):
    torch.manual_seed(k + stride)
    conv = nn.Conv2d(3, 4, k, stride=stride, padding=k // 2, bias=False)
    exact = dense_norm(conv, (3, *hw))
    fft, im2col = conv_norm_upper(conv.weight, hw, stride), conv_norm_upper(conv.weight, hw, stride, fft=False)
    assert exact <= fft <= im2col * (1 + 1e-6)
    if stride == 1:  # the circular embedding adds only a few rows of zeros: close to exact
        assert fft <= 1.25 * exact


def test_silu_lipschitz_constant():
    z = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    s = torch.sigmoid(z)
    slope = (s * (1 + z * (1 - s))).abs().max().item()
    assert slope <= SILU_LIP < slope + 1e-3


@pytest.mark.parametrize("src,dst", [((4, 4), (8, 8)), ((4, 4), (7, 7)), ((2, 3), (5, 5))])
def test_nearest_upsample_norm_is_exact(src, dst):
    exact = dense_norm(lambda z: F.interpolate(z, size=dst, mode="nearest"), (1, *src))
    assert nearest_upsample_norm(src, dst) == pytest.approx(exact, rel=1e-9)


def test_groupnorm_bound_holds_and_is_reached_at_constant_groups():
    torch.manual_seed(0)
    gn = nn.GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.uniform_(-2, 2)
        gn.bias.normal_()
    lip, shape = groupnorm_lipschitz(gn), (4, 3, 3)
    for scale in (1e-4, 1e-2, 1.0, 100.0):
        x, d = torch.randn(16, *shape) * scale, torch.randn(16, *shape) * 1e-3 * scale
        ratio = (gn(x + d) - gn(x)).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
        assert ratio.max() <= lip
        out = gn(x * 1e3).flatten(1).norm(dim=1)  # however large the input, the output stays in the ball
        assert out.max() <= groupnorm_radius(gn.weight, gn.bias, 2, 9)
    # at a constant group the Jacobian is γ/√(σ²+eps) with σ = 0: the bound is attained (up to eps's rounding)
    x0 = torch.ones(1, *shape, dtype=torch.float64)
    gn64 = copy.deepcopy(gn).double()
    jac = torch.autograd.functional.jacobian(lambda z: gn64(z.reshape(1, *shape)).flatten(), x0.flatten())
    assert float(torch.linalg.matrix_norm(jac, ord=2)) == pytest.approx(lip, rel=1e-4)


def test_sequential_lipschitz_is_the_product_of_spectral_norms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 6), nn.Unflatten(1, (6,)))
    nb = network_bound(net, net)
    prod = spec(net[1].weight) * spec(net[3].weight)
    assert nb.lipschitz == pytest.approx(prod, rel=1e-5) and nb.lipschitz >= prod and nb.eps == 0.0
    # tanh keeps the output bounded whatever the input: sup‖v‖ ≤ ‖W2‖·√5 + ‖b2‖
    sup = spec(net[3].weight) * math.sqrt(5) + float(net[3].bias.detach().norm())
    assert nb.out_norm_fp == pytest.approx(sup, rel=1e-5)


def test_sequential_error_bound_holds_on_the_ball():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8))
    q = round_weights(net, 3)
    radius = 3.0
    nb = network_bound(net, q, radius)
    x = torch.randn(512, 8)
    x = x / x.norm(dim=1, keepdim=True) * radius * torch.rand(512, 1)
    err = (net(x) - q(x)).norm(dim=1)
    assert err.max() <= nb.eps
    assert nb.eps <= 20 * err.max()  # a bound, but not a vacuous one for a two-layer net


def test_unet_bounds_hold():
    torch.manual_seed(0)
    model = UNet(tiny_config(num_classes=3, patch_size=2)).eval()
    q = round_weights(model, 4)
    nb = network_bound(model, q, x_norm=30.0)
    assert math.isfinite(nb.lipschitz) and nb.lipschitz > 1e6  # GroupNorm's 1/√eps, layer after layer
    x = torch.randn(6, 1, 8, 8) * 3.0
    x = x / x.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 30.0
    t, y = torch.rand(6), torch.tensor([0, 1, 2, 3, 0, 3])
    with torch.no_grad():
        v, vq = model(x, t, y), q(x, t, y)
        huge = model(x * 1e4, t, y)  # far outside any ball: GroupNorm still bounds the output
    assert (v - vq).flatten(1).norm(dim=1).max() <= nb.eps
    assert v.flatten(1).norm(dim=1).max() <= nb.out_norm_fp
    assert huge.flatten(1).norm(dim=1).max() <= network_bound(model, model).out_norm_fp
    local, _ = local_lipschitz(q, x, 0.5, y, iters=10)
    assert local.max() <= nb.lipschitz
