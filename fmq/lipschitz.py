"""Rigorous global bounds for a velocity network: Lipschitz constant in x and the velocity error sup.

For the map x ↦ v(x, t, y) on one sample (per-sample ℓ2 over all C·H·W entries; samples never mix in the
UNet) we propagate, layer by layer in the order of the forward pass, four numbers per tensor:

* ``lip``  Lipschitz constant in x of the *quantized* network's tensor at that point,
* ``fp``   an upper bound on the FP32 network's tensor norm ‖h‖ over ‖x‖ ≤ X,
* ``q``    the same for the quantized network ‖ĥ‖,
* ``err``  an upper bound on ‖h − ĥ‖ (same input x, all t and y).

Rules (W, b → Ŵ, b̂; S = positions a bias is broadcast over; ‖·‖ operator norms as bounded below):

    affine   lip·‖Ŵ‖,  ‖W‖·fp + ‖b‖√S,  ‖Ŵ‖·q + ‖b̂‖√S,  ‖W−Ŵ‖·fp + ‖b−b̂‖√S + ‖Ŵ‖·err
    SiLU     ×1.0999 on lip and err (max |silu'|), norms unchanged (|silu z| ≤ |z|)
    GroupNorm  lip·max|γ̂|/√eps (the normalisation's Jacobian is ≤ 1/√(σ²+eps)); the output norm is
             bounded whatever the input: ‖GN(x)‖ ≤ √(Σ_g max_g γ²·m_g) + √S‖β‖ (each group has norm < √m_g)
    residual / concatenation   sums / root-sum-squares
    attention  on the ball the GroupNorm confines (Q, K, V) to, softmax attention is Lipschitz with
             c_h = √(N + (ρ_V ρ_K/2√d)² + (ρ_V ρ_Q/2√d)²) per head (see docs/theory.md, §3)

and always err ≤ fp + q. Convolution norms are the smaller of two rigorous bounds: the im2col bound
‖W_mat‖₂·√(⌈k_h/s⌉⌈k_w/s⌉) and the exact norm of the circular convolution on the (H+k−1)×(W+k−1) grid
that contains the zero-padded one, max over frequencies ω of ‖K̂(ω)‖₂ (Sedghi et al. 2019).

Everything here is an upper bound, valid for every t and y. For UNets it is far from tight (each
GroupNorm contributes up to 1/√eps ≈ 316); see docs/theory.md for what is rigorous and what is useful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .models import ResBlock, SelfAttention, UNet

__all__ = [
    "SILU_LIP",
    "NetworkBound",
    "conv_norm_upper",
    "groupnorm_lipschitz",
    "groupnorm_radius",
    "nearest_upsample_norm",
    "network_bound",
]

SILU_LIP = 1.0999  # max_z d/dz[z·σ(z)] = 1.09984 at z ≈ 2.3994, rounded up so it stays an upper bound
_SAFETY = 1.0 + 1e-6  # covers float64 rounding in the SVDs, so a computed norm never falls below the true one
_SAFETY_32 = 1.0 + 1e-4  # the same for the single-precision SVDs of the frequency-domain kernels


@dataclass
class NetworkBound:
    lipschitz: float  # Lip of x ↦ v̂(x, t, y), per-sample ℓ2, for every t and y (upper bound; may be inf)
    lipschitz_fp: float  # the same for the FP32 network v
    eps: float  # sup of ‖v(x,t,y) − v̂(x,t,y)‖ over ‖x‖ ≤ x_norm and all t, y (upper bound)
    out_norm_fp: float  # sup of ‖v(x,t,y)‖ over the same set
    out_norm_q: float  # sup of ‖v̂(x,t,y)‖ over the same set
    x_norm: float  # the radius X the norm and error bounds assume
    factors: dict[str, float] = field(default_factory=dict)  # per-layer Lipschitz factor of the quantized net


def _mul(a: float, b: float) -> float:
    """a·b with 0·inf = 0: a zero weight error times an unbounded norm contributes nothing."""
    return 0.0 if a == 0.0 or b == 0.0 else a * b


@dataclass
class _B:
    lip: float
    fp: float
    q: float
    err: float

    def __post_init__(self) -> None:
        self.err = min(self.err, self.fp + self.q)  # triangle inequality: never worse than both norms


def _add(a: _B, b: _B) -> _B:
    return _B(a.lip + b.lip, a.fp + b.fp, a.q + b.q, a.err + b.err)


def _cat(a: _B, b: _B) -> _B:
    h = math.hypot
    return _B(h(a.lip, b.lip), h(a.fp, b.fp), h(a.q, b.q), h(a.err, b.err))


def _scale(a: _B, c: float) -> _B:
    return _B(_mul(a.lip, c), _mul(a.fp, c), _mul(a.q, c), _mul(a.err, c))


def _norm2(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2)) * _SAFETY


def conv_norm_upper(weight: torch.Tensor, hw: tuple[int, int], stride: int = 1, fft: bool = True) -> float:
    """Upper bound on the ℓ2 operator norm of x (C_in, H, W) ↦ conv2d(x, weight, stride, zero padding ≤ k−1).

    ``weight`` (C_out, C_in, k_h, k_w). Striding only drops outputs, so it never increases the norm.
    ``fft=False`` keeps the im2col bound alone (one small SVD instead of (H+k−1)(W+k−1) of them; at most
    √(k_h·k_w) looser).
    """
    cout, cin, kh, kw = weight.shape
    w = weight.detach().double()
    im2col = _norm2(w.reshape(cout, -1)) * math.sqrt(math.ceil(kh / stride) * math.ceil(kw / stride))
    if kh == kw == 1:
        return min(im2col, _norm2(w[:, :, 0, 0]))
    if not fft:
        return im2col
    grid = (hw[0] + kh - 1, hw[1] + kw - 1)  # large enough that the circular wrap only meets zero padding
    k_hat = torch.fft.fft2(w.float(), s=grid).permute(2, 3, 0, 1)  # (Mh, Mw, C_out, C_in)
    # single precision SVD: backward stable, so σ_max is off by ~1e-7 relative; _SAFETY_32 covers it
    fft = float(torch.linalg.matrix_norm(k_hat, ord=2).max()) * _SAFETY_32
    return min(im2col, fft)


def nearest_upsample_norm(src: tuple[int, int], dst: tuple[int, int]) -> float:
    """Exact ℓ2 norm of nearest-neighbour resizing src -> dst: √(most copies of one row · of one column)."""
    counts = []
    for a, b in zip(src, dst):
        idx = F.interpolate(torch.arange(a, dtype=torch.float64).view(1, 1, a), size=b, mode="nearest")
        counts.append(int(torch.bincount(idx.flatten().long(), minlength=a).max()))
    return math.sqrt(counts[0] * counts[1])


def groupnorm_lipschitz(gn: nn.GroupNorm) -> float:
    """max|γ|/√eps: the Jacobian of z ↦ z/√(‖z‖²/m + eps) has norm ≤ 1/√(‖z‖²/m + eps) ≤ 1/√eps."""
    g = gn.weight.detach().abs().max().item() if gn.affine else 1.0
    return g / math.sqrt(gn.eps) * _SAFETY


def groupnorm_radius(gamma: torch.Tensor, beta: torch.Tensor | None, groups: int, hw: int) -> float:
    """Bound on ‖γ⊙n + β‖ for GroupNorm outputs on (C, H·W = hw): each normalised group has ‖n_g‖² < m_g.

    ``gamma``, ``beta`` (C,); m_g = (C/groups)·hw entries per group.
    """
    g2 = gamma.detach().double().reshape(groups, -1).pow(2).amax(dim=1)  # (groups,)
    m = gamma.numel() // groups * hw
    r = math.sqrt(float(g2.sum()) * m)
    if beta is not None:
        r += math.sqrt(hw) * float(beta.detach().double().norm())
    return r * _SAFETY


def _diff(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None else a.detach() - b.detach()


class _Walker:
    """Propagates _B through a (FP32, quantized) pair of identical architectures."""

    def __init__(self, cache: dict, fft: bool) -> None:
        self.factors: dict[str, float] = {}
        self.cache = cache  # (id(weight), hw, stride) -> norm; weights shared by both runs are normed once
        self.fft = fft

    def _op(self, w: torch.Tensor, hw: tuple[int, int] | None, stride: int) -> float:
        key = (id(w), hw, stride)
        if key not in self.cache:
            self.cache[key] = _norm2(w) if hw is None else conv_norm_upper(w, hw, stride, self.fft)
        return self.cache[key]

    def _op3(self, f: nn.Module, g: nn.Module, hw: tuple[int, int] | None, stride: int) -> tuple[float, float, float]:
        """‖W‖, ‖Ŵ‖, ‖W − Ŵ‖ (0 without computing when the two layers share the weight)."""
        nw, nwq = self._op(f.weight, hw, stride), self._op(g.weight, hw, stride)
        if f.weight is g.weight or torch.equal(f.weight, g.weight):
            return nw, nwq, 0.0
        d = f.weight.detach() - g.weight.detach()
        return nw, nwq, (_norm2(d) if hw is None else conv_norm_upper(d, hw, stride, self.fft))

    def affine(self, name: str, f: nn.Module, g: nn.Module, a: _B, hw: tuple[int, int] = (1, 1)) -> _B:
        if isinstance(f, nn.Linear):
            (nw, nwq, nd), s = self._op3(f, g, None, 1), 1
        elif isinstance(f, nn.Conv2d):
            if f.groups != 1 or f.dilation != (1, 1) or f.padding_mode != "zeros" or f.stride[0] != f.stride[1]:
                raise TypeError(f"{name}: only plain zero-padded convolutions are supported")
            st = f.stride[0]
            nw, nwq, nd = self._op3(f, g, hw, st)
            out_hw = tuple((n + 2 * p - k) // st + 1 for n, p, k in zip(hw, f.padding, f.kernel_size))
            s = out_hw[0] * out_hw[1]
        else:
            raise TypeError(f"{name}: no bound for {type(f).__name__}")
        rs = math.sqrt(s)
        nb = 0.0 if f.bias is None else float(f.bias.detach().double().norm()) * rs
        nbq = 0.0 if g.bias is None else float(g.bias.detach().double().norm()) * rs
        ndb = 0.0 if f.bias is None else float(_diff(f.bias, g.bias).double().norm()) * rs
        self.factors[name] = nwq
        return _B(
            _mul(a.lip, nwq),
            _mul(nw, a.fp) + nb,
            _mul(nwq, a.q) + nbq,
            _mul(nd, a.fp) + ndb + _mul(nwq, a.err),
        )

    def silu(self, a: _B) -> _B:
        return _B(a.lip * SILU_LIP, a.fp, a.q, a.err * SILU_LIP)

    def groupnorm(self, name: str, f: nn.GroupNorm, g: nn.GroupNorm, a: _B, hw: int) -> _B:
        lq = groupnorm_lipschitz(g)
        self.factors[name] = lq
        if not f.affine:
            raise TypeError(f"{name}: GroupNorm without affine parameters is not supported")
        d = groupnorm_radius(f.weight - g.weight, _diff(f.bias, g.bias), f.num_groups, hw)
        rf = groupnorm_radius(f.weight, f.bias, f.num_groups, hw)
        rq = groupnorm_radius(g.weight, g.bias, g.num_groups, hw)
        return _B(_mul(a.lip, lq), rf, rq, d + _mul(lq, a.err))

    def resblock(self, name: str, f: ResBlock, g: ResBlock, a: _B, emb: _B, hw: tuple[int, int]) -> _B:
        n = hw[0] * hw[1]
        h = self.silu(self.groupnorm(f"{name}.norm1", f.norm1, g.norm1, a, n))
        h = self.affine(f"{name}.conv1", f.conv1, g.conv1, h, hw)
        e = self.affine(f"{name}.emb", f.emb, g.emb, self.silu(emb))
        h = _B(h.lip, h.fp + e.fp * math.sqrt(n), h.q + e.q * math.sqrt(n), h.err + e.err * math.sqrt(n))
        h = self.silu(self.groupnorm(f"{name}.norm2", f.norm2, g.norm2, h, n))
        h = self.affine(f"{name}.conv2", f.conv2, g.conv2, h, hw)  # dropout: identity (eval mode)
        skip = a if isinstance(f.skip, nn.Identity) else self.affine(f"{name}.skip", f.skip, g.skip, a, hw)
        return _add(skip, h)

    def attention(self, name: str, f: SelfAttention, g: SelfAttention, a: _B, hw: tuple[int, int]) -> _B:
        n = hw[0] * hw[1]
        c = f.qkv.in_channels
        heads, d = f.heads, c // f.heads
        z = self.groupnorm(f"{name}.norm", f.norm, g.norm, a, n)
        qkv = self.affine(f"{name}.qkv", f.qkv, g.qkv, z, hw)
        # per-head radii of Q, K, V (max over both networks: the segment between them stays in the ball)
        rho = torch.zeros(3, heads, dtype=torch.float64)
        for mod, r_in in ((f.qkv, z.fp), (g.qkv, z.q)):
            w = mod.weight.detach().double()[:, :, 0, 0].reshape(3, heads, d, c)
            b = mod.bias.detach().double().reshape(3, heads, d) if mod.bias is not None else torch.zeros(3, heads, d)
            r = torch.linalg.matrix_norm(w, ord=2) * _SAFETY * r_in + b.norm(dim=-1) * math.sqrt(n)
            rho = torch.maximum(rho, r)
        rq, rk, rv = rho
        ch = torch.sqrt(n + (rv * rk / (2 * math.sqrt(d))) ** 2 + (rv * rq / (2 * math.sqrt(d))) ** 2)
        lc = float(ch.max()) * _SAFETY
        self.factors[f"{name}.softmax"] = lc
        # rows of A·V are convex combinations of rows of V, so ‖A·V‖ ≤ √N·‖V‖ ≤ √N·‖qkv‖
        core = _B(_mul(qkv.lip, lc), math.sqrt(n) * qkv.fp, math.sqrt(n) * qkv.q, _mul(lc, qkv.err))
        return _add(a, self.affine(f"{name}.proj", f.proj, g.proj, core, hw))


def _unet(fp: UNet, q: UNet, x_norm: float, w: _Walker) -> _B:
    cfg = fp.config
    half = cfg.base_channels // 2
    t_emb = _B(0.0, math.sqrt(half), math.sqrt(half), 0.0)  # ‖[cos, sin]‖ = √half exactly
    emb = w.affine("time_mlp.0", fp.time_mlp[0], q.time_mlp[0], t_emb)
    emb = w.affine("time_mlp.2", fp.time_mlp[2], q.time_mlp[2], w.silu(emb))
    if fp.label_emb is not None:
        e, eq = fp.label_emb.weight.detach().double(), q.label_emb.weight.detach().double()
        lab = _B(0.0, float(e.norm(dim=1).max()), float(eq.norm(dim=1).max()), float((e - eq).norm(dim=1).max()))
        emb = _add(emb, lab)
    # pixel (un)shuffle only permutes entries: norms and Lipschitz constants pass through unchanged
    res = (cfg.image_size // cfg.patch_size,) * 2
    h = w.affine("stem", fp.stem, q.stem, _B(1.0, x_norm, x_norm, 0.0), res)
    hs, sizes = [h], [res]
    for i, (f, g) in enumerate(zip(fp.down, q.down)):
        if isinstance(f, ResBlock):
            h = w.resblock(f"down.{i}", f, g, h, emb, res)
        else:
            h = w.affine(f"down.{i}.conv", f.conv, g.conv, h, res)
            res = tuple((n - 1) // 2 + 1 for n in res)  # stride 2, padding 1, kernel 3
        hs.append(h)
        sizes.append(res)
    h = w.resblock("mid1", fp.mid1, q.mid1, h, emb, res)
    if isinstance(fp.mid_attn, SelfAttention):
        h = w.attention("mid_attn", fp.mid_attn, q.mid_attn, h, res)
    h = w.resblock("mid2", fp.mid2, q.mid2, h, emb, res)
    for i, (f, g) in enumerate(zip(fp.up, q.up)):
        if isinstance(f, ResBlock):
            h = w.resblock(f"up.{i}", f, g, _cat(h, hs.pop()), emb, res)
            sizes.pop()
        else:
            h = _scale(h, nearest_upsample_norm(res, sizes[-1]))
            res = sizes[-1]
            h = w.affine(f"up.{i}.conv", f.conv, g.conv, h, res)
    h = w.silu(w.groupnorm("out_norm", fp.out_norm, q.out_norm, h, res[0] * res[1]))
    return w.affine("out_conv", fp.out_conv, q.out_conv, h, res)


def _sequential(fp: nn.Sequential, q: nn.Sequential, x_norm: float, w: _Walker) -> _B:
    h, dim = _B(1.0, x_norm, x_norm, 0.0), None
    for (name, f), g in zip(fp.named_children(), q.children()):
        if isinstance(f, nn.Linear):
            h, dim = w.affine(name, f, g, h), f.out_features
        elif isinstance(f, nn.SiLU):
            h = w.silu(h)
        elif isinstance(f, nn.Tanh):
            cap = math.sqrt(dim) if dim is not None else math.inf  # |tanh| ≤ 1 entrywise
            h = _B(h.lip, min(h.fp, cap), min(h.q, cap), h.err)
        elif not isinstance(f, (nn.ReLU, nn.Identity, nn.Flatten, nn.Unflatten)):
            raise TypeError(f"layer {name}: no bound for {type(f).__name__}")
    return h


def network_bound(
    model_fp: nn.Module, model_q: nn.Module, x_norm: float = math.inf, fft_convs: bool = False
) -> NetworkBound:
    """Rigorous Lipschitz, output-norm and error bounds for a UNet or an nn.Sequential of Linear/activations.

    ``x_norm``: radius X of the inputs (per-sample ℓ2) the norm and error bounds must hold for; the
    Lipschitz constants hold everywhere. With X = inf the UNet's output norms stay finite (every path to
    the output passes a GroupNorm), which is what makes an a-priori radius ‖x₀‖ + sup‖v̂‖ available.
    Pass ``model_q = model_fp`` for the FP32 constants alone. ``fft_convs`` uses the tighter frequency-domain
    convolution norms (a minute on a 28×28 UNet on two cores, against a second for im2col alone).
    """
    if type(model_fp) is not type(model_q):
        raise TypeError(f"models differ in type: {type(model_fp).__name__} vs {type(model_q).__name__}")
    runs, cache = [], {}
    for a, b in ((model_fp, model_q), (model_fp, model_fp)):
        w = _Walker(cache, fft_convs)
        if isinstance(a, UNet):
            out = _unet(a, b, float(x_norm), w)
        elif isinstance(a, nn.Sequential):
            out = _sequential(a, b, float(x_norm), w)
        else:
            raise TypeError(f"no structural bound for {type(a).__name__}; give a UNet or an nn.Sequential")
        runs.append((out, w.factors))
    (o, factors), (o_fp, _) = runs
    return NetworkBound(o.lip, o_fp.lip, o.err, o.fp, o.q, float(x_norm), factors)
