"""GPTQ-style error compensation on a non-uniform grid (exact OT levels): a comparison point.

GPTQ (Frantar et al. 2023) quantizes a layer's weight matrix W (rows = output channels, columns = inputs)
one column at a time and pushes each column's rounding error onto the columns not yet quantized, weighted
by the inverse of the layer's input Hessian H = XᵀX (X: the layer's inputs on calibration states), so that
the layer's *output* error ‖(W − Ŵ)X‖ stays small, not the weight error. With Cholesky U of H⁻¹ (upper):

    q_i = nearest level of W[:, i] in its row's codebook;   e = (W[:, i] − q_i) / U[i, i]
    W[:, i+1:] −= e ⊗ U[i, i+1:]

Here the levels are each output channel's exact OT codebook of the FP32 weights (fixed); only which level
each weight takes changes. Conv weights are flattened to (out, in·kh·kw) with the unfolded input patches
as X. Inputs are the FP32 model's, taken by forward hooks on calibration states (not re-run through the
already quantized layers). Per channel or per tensor only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quant import Codebook
from .states import CalibrationSet

__all__ = ["layer_hessians", "gptq_codebooks"]

DAMP = 0.01  # added to H's diagonal, relative to its mean: keeps the inverse stable


@torch.no_grad()
def layer_hessians(model: nn.Module, names: list[str], calib: CalibrationSet, idx: torch.Tensor) -> dict:
    """H = XᵀX / rows of each quantized Conv2d/Linear weight ``names`` over calibration states ``idx``."""
    modules = dict(model.named_modules())
    hess: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []
    for name in names:
        mod = modules.get(name.rpartition(".")[0])
        if not isinstance(mod, nn.Conv2d | nn.Linear):
            raise ValueError(f"ot-gptq handles Conv2d and Linear weights; {name!r} is not one")

        def hook(m, inp, _out, name=name):
            x = inp[0].float()
            if isinstance(m, nn.Conv2d):
                cols = F.unfold(x.contiguous(), m.kernel_size, m.dilation, m.padding, m.stride)  # (B, D, L)
                x = cols.transpose(1, 2).reshape(-1, cols.shape[1])
            else:
                x = x.reshape(-1, x.shape[-1])
            hess[name] = hess.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + len(x)

        handles.append(mod.register_forward_hook(hook))
    try:
        for i in range(0, len(idx), 64):
            x, t, y, _ = calib.batch(idx[i:i + 64])
            model(x, t, y)
    finally:
        for h in handles:
            h.remove()
    return {n: hess[n] / counts[n] for n in hess}


@torch.no_grad()
def gptq_codebooks(model: nn.Module, books: dict[str, Codebook], calib: CalibrationSet, idx: torch.Tensor,
                   block: int = 128) -> dict[str, Codebook]:
    """New assignments for ``books`` (per-channel or per-tensor OT codebooks of ``model``'s weights)."""
    params = model.state_dict()
    hess = layer_hessians(model, list(books), calib, idx)
    out = {}
    for name, cb in books.items():
        if str(cb.granularity) not in ("channel", "tensor"):
            raise ValueError(f"ot-gptq works per channel or per tensor, not {cb.granularity}")
        w = params[name].detach().float().reshape(cb.shape[0], -1).clone()  # (rows, D)
        rows, d = w.shape
        levels = cb.levels if cb.num_groups == rows else cb.levels.expand(rows, -1)  # (rows, K)
        h = hess[name].double()
        dead = torch.diag(h) == 0
        h[dead, dead] = 1.0
        w[:, dead] = 0.0
        h += DAMP * torch.diag(h).mean() * torch.eye(d, dtype=h.dtype)
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
        idx_out = torch.zeros(rows, d, dtype=torch.long)
        for b0 in range(0, d, block):
            b1 = min(b0 + block, d)
            wb = w[:, b0:b1].clone()
            err = torch.zeros_like(wb)
            for j in range(b1 - b0):
                col = wb[:, j]
                k = (col[:, None] - levels).abs().argmin(1)
                q = levels.gather(1, k[:, None]).squeeze(1)
                idx_out[:, b0 + j] = k
                e = (col - q) / u[b0 + j, b0 + j]
                wb[:, j:] -= e[:, None] * u[b0 + j, b0 + j:b1][None, :]
                err[:, j] = e
            w[:, b1:] -= err @ u[b0:b1, b1:]
        out[name] = Codebook(cb.levels, idx_out.to(torch.uint8).reshape(cb.shape), cb.shape, cb.granularity,
                             cb.bits, cb.method)
    return out
