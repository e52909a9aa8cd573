"""How a codebook's levels are stored: as a parametric grid's parameters, or as fp16 level tables.

A packed file stores, for every group of a quantized tensor, only what rebuilds its levels:

=========  =====================  ==============================================  ===================
store      methods                stored per group                                levels rebuilt as
=========  =====================  ==============================================  ===================
affine     uniform                lo, step (fp32)                                 fp16(lo + k step)
pow2       log2                   e_max (int8; -128: an all-zero group)           fp16(0, ±2^(e_max-j))
pwl        pwl                    m, p (fp32): range and breakpoint               fp16(pwl_levels(m, p))
levels     every other method     the K levels (fp16)                             as stored
=========  =====================  ==============================================  ===================

The rebuild is a fixed float32 computation, and the fake-quantized model of
:func:`fmq.quantize.quantize_model` uses the rebuilt levels (:func:`storable`), so a packed model
computes bit for bit what the fake-quantized model computes. The parameters are read off the
quantizer's levels; a layer whose levels are not the full grid (a group shorter than 2**bits keeps only
the levels its weights use) or whose rebuilt grid differs from its fp16-rounded levels by more than
fp16 rounding is stored as a level table instead, so a parametric store never changes a weight beyond
the fp16 rounding every store has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codebook import Codebook

__all__ = ["STORES", "Stored", "store_for", "encode_levels", "decode_levels", "storable", "stored_bits",
           "PARAMS_PER_GROUP"]

STORES = ("levels", "affine", "pow2", "pwl")
_BY_METHOD = {"uniform": "affine", "log2": "pow2", "pwl": "pwl"}
PARAMS_PER_GROUP = {"levels": 0, "affine": 2, "pow2": 0, "pwl": 2}  # fp32 numbers per group
_ZERO_GROUP = -128  # pow2: the exponent code of an all-zero group
_TOLERANCE = 2.0**-9  # relative to the group's largest |level|: about one fp16 rounding step


@dataclass(frozen=True, eq=False)
class Stored:
    """What a packed file holds for one tensor's levels: exactly one of the three tensors is used."""

    store: str  # one of STORES
    levels: torch.Tensor | None = None  # (G, K) fp16, store "levels"
    params: torch.Tensor | None = None  # (G, 2) fp32, stores "affine" (lo, step) and "pwl" (m, p)
    exponents: torch.Tensor | None = None  # (G,) int8, store "pow2"

    def nbits(self) -> int:
        """Bits these parameters take in the file."""
        return sum(8 * t.numel() * t.element_size() for t in (self.levels, self.params, self.exponents)
                   if t is not None)


def store_for(method: str) -> str:
    """The store a method's codebooks use when their levels form its full grid."""
    return _BY_METHOD.get(method, "levels")


def _affine(params: torch.Tensor, k: int) -> torch.Tensor:
    lo, step = params[:, :1], params[:, 1:]
    return lo + step * torch.arange(k, dtype=torch.float32)


def _pow2(exponents: torch.Tensor, k: int, bits: int) -> torch.Tensor:
    e = exponents.to(torch.float32)[:, None]
    if bits == 1:
        lv = torch.cat([-torch.exp2(e), torch.exp2(e)], 1)
    else:
        n = 2 ** (bits - 1) - 1
        powers = torch.exp2(e - torch.arange(n - 1, -1, -1, dtype=torch.float32))  # ascending magnitudes
        lv = torch.cat([-powers.flip(1), torch.zeros_like(e), powers], 1)
        lv = torch.cat([lv, lv[:, -1:].expand(-1, k - lv.shape[1])], 1)  # the spare slot repeats the top
    return torch.where(exponents[:, None] == _ZERO_GROUP, torch.zeros_like(lv), lv)


def _pwl(params: torch.Tensor, k: int, bits: int) -> torch.Tensor:
    m, p = params[:, :1], params[:, 1:]
    nc, nt = 2 ** (bits - 1), 2 ** (bits - 2)
    centre = -p + 2 * p * torch.arange(nc, dtype=torch.float32) / (nc - 1)
    tail = (p + m) / 2 if nt == 1 else p + (m - p) * torch.arange(nt, dtype=torch.float32) / (nt - 1)
    return torch.cat([-tail.flip(1), centre, tail], 1)


def decode_levels(stored: Stored, num_levels: int, bits: int) -> torch.Tensor:
    """(G, K) float32 levels (fp16 values) from what is stored; the one rebuild both sides use."""
    if stored.store == "levels":
        return stored.levels.to(torch.float32)
    if stored.store == "affine":
        lv = _affine(stored.params, num_levels)
    elif stored.store == "pow2":
        lv = _pow2(stored.exponents, num_levels, bits)
    elif stored.store == "pwl":
        lv = _pwl(stored.params, num_levels, bits)
    else:
        raise ValueError(f"unknown level store {stored.store!r}; expected one of {STORES}")
    return lv.to(torch.float16).to(torch.float32)


def _fit(cb: Codebook, store: str) -> list[Stored]:
    """Candidate parameters of ``store`` read off ``cb``'s levels (several where one reading may miss)."""
    lv, bits = cb.levels, cb.bits
    top = lv.abs().amax(1)
    if store == "affine":  # lo and hi are always levels (the extreme weights are exact)
        lo, hi = lv[:, 0], lv.amax(1)
        return [Stored("affine", params=torch.stack([lo, (hi - lo) / (2**bits - 1)], 1).contiguous())]
    if store == "pow2":  # the top level is 2^e_max, or 2^(e_max - 1) when no weight rounded up to 2^e_max
        e = torch.round(torch.log2(torch.where(top > 0, top, torch.ones_like(top))))
        if (e.abs() > 120).any():
            return []
        zero = top == 0
        return [Stored("pow2", exponents=torch.where(zero, torch.full_like(e, _ZERO_GROUP), e + d).to(torch.int8))
                for d in (0, 1)]
    if store == "pwl" and bits >= 2 and cb.num_levels == 2**bits:  # the full grid: p and m are levels
        nc, nt = 2 ** (bits - 1), 2 ** (bits - 2)
        p = lv[:, nt + nc - 1]
        m = lv[:, -1] if nt > 1 else 2 * lv[:, -1] - p
        return [Stored("pwl", params=torch.stack([m, p], 1).contiguous())]
    return []


def _on_grid(grid: torch.Tensor, used: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest grid slot (G, Kc) of every used level, and per group whether all of them lie on the grid."""
    pos = torch.searchsorted(grid.contiguous(), used.contiguous()).clamp(1, grid.shape[1] - 1)
    lower = (used - grid.gather(1, pos - 1)).abs() <= (grid.gather(1, pos) - used).abs()
    pos = torch.where(lower, pos - 1, pos) if grid.shape[1] > 1 else torch.zeros_like(pos)
    ok = ((grid.gather(1, pos) - used).abs() <= _TOLERANCE * scale).all(1)
    return pos, ok


def storable(cb: Codebook) -> tuple[Codebook, Stored]:
    """``cb`` as a packed file stores it: the levels its stored form rebuilds (what the fake-quantized model
    uses), its indices into them, and that form. A parametric grid is always the method's full grid of
    2**bits levels, so a group shorter than that points into it; when its parameters cannot rebuild every
    used level to within fp16 rounding, the levels are stored as fp16. Raises if a level does not fit fp16."""
    rounded = cb.with_levels_as(torch.float16).levels  # raises for levels beyond fp16's range
    if cb.num_groups and cb.numel:
        k = 2 if store_for(cb.method) == "pow2" and cb.bits == 1 else 2**cb.bits
        scale = rounded.abs().amax(1, keepdim=True)
        best, best_ok, best_pos = None, None, None
        for fit in _fit(cb, store_for(cb.method)):
            values = fit.params if fit.params is not None else fit.exponents.float()
            if not torch.isfinite(values).all():
                continue
            grid = decode_levels(fit, k, cb.bits)
            if not torch.isfinite(grid).all():
                continue
            pos, ok = _on_grid(grid, rounded, scale)
            if best is None:
                best, best_ok, best_pos = fit, ok, pos
            else:  # groups the first reading missed take this one
                take = ~best_ok & ok
                merged = {key: torch.where(take.view(-1, *[1] * (getattr(fit, key).ndim - 1)), getattr(fit, key),
                                           getattr(best, key)) for key in ("params", "exponents")
                          if getattr(fit, key) is not None}
                best, best_pos, best_ok = Stored(fit.store, **merged), torch.where(take[:, None], pos, best_pos), \
                    best_ok | ok
        if best is not None and bool(best_ok.all()):
            groups = cb.group_ids()
            idx = best_pos.reshape(-1)[groups * best_pos.shape[1] + cb.indices.reshape(-1).long()]
            levels = decode_levels(best, k, cb.bits)
            indices = idx.to(torch.uint8).reshape(cb.shape)
            return Codebook(levels, indices, cb.shape, cb.granularity, cb.bits, cb.method, best), best
    stored = Stored("levels", levels=rounded.to(torch.float16))
    return Codebook(rounded, cb.indices, cb.shape, cb.granularity, cb.bits, cb.method, stored), stored


def encode_levels(cb: Codebook) -> Stored:
    """What a packed file stores for ``cb``'s levels (see :func:`storable`)."""
    return storable(cb)[1]


def stored_bits(cb: Codebook, stored: Stored) -> int:
    """Bits of a tensor in a packed file without entropy coding: fixed-width indices plus its stored levels."""
    return cb.bits * cb.numel + stored.nbits()
