"""Packed runtime: a model that keeps its quantized layers packed and rebuilds each weight only while it runs.

:func:`packed_model` turns a packed file (:mod:`fmq.quant.packing`) into a :class:`~fmq.models.UNet`
whose quantized weights are not parameters: each such module holds an empty placeholder, and a forward
pre-hook rebuilds the weight into a temporary tensor, levels[group, index], from the indices kept at
``bits`` bits each and the stored levels (fp16 tables or a grid's parameters); a forward hook drops it
again. So at most one layer's FP32 weight exists at a time beside the packed data.

The rebuilt weight holds the same float32 values as the fake-quantized model's weight, in the same
memory layout (channels-last convs: their indices are kept in that order, so the rebuild writes the
layout directly), so the packed model's outputs equal the fake-quantized model's bit for bit
(``tests/test_packed.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .models import UNet
from .quant.codebook import PerChannel, PerGroup, PerTensor
from .quant.packing import PackedFile, PackedLayer, pack_indices, read_packed, skeleton, unpack_indices

__all__ = ["packed_model", "rebuild_weight", "resident_weight_bytes", "fp32_weight_bytes", "packed_layers"]


def rebuild_weight(layer: PackedLayer, stride: tuple[int, ...] | None = None) -> torch.Tensor:
    """The dequantized weight of ``layer`` (float32, on its indices' device), with ``stride`` if given."""
    n, shape, gran = layer.numel, layer.shape, layer.granularity
    idx = _unpack_long(layer.packed, layer.bits, n)  # (n,)
    levels = layer.levels().to(idx.device)  # (G, K)
    g = levels.shape[0]
    if g == 1:
        flat = levels[0][idx]
    elif isinstance(gran, PerChannel) and gran.axis % len(shape) == 0:
        flat = levels.gather(1, idx.view(g, -1)).view(-1)  # (C, rest): one group per row
    else:
        pos = torch.arange(n, device=idx.device)
        if isinstance(gran, PerChannel):
            axis = gran.axis % len(shape)
            gid = (pos // math.prod(shape[axis + 1:])) % shape[axis]
        elif isinstance(gran, PerGroup):
            row = n // shape[0] if len(shape) >= 2 else n
            gid = (pos // row) * -(-row // gran.size) + (pos % row) // gran.size
        else:
            raise ValueError(f"{layer.name}: {g} groups do not fit granularity {gran}")
        flat = levels.view(-1)[gid * levels.shape[1] + idx]
    if stride is None or stride == flat.view(shape).stride():
        return flat.view(shape)
    out = torch.empty_strided(shape, stride, dtype=torch.float32, device=idx.device)
    out.copy_(flat.view(shape))
    return out


_LUT: dict[int, torch.Tensor] = {}


def _unpack_long(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """(n,) int64 indices; for 1, 2 and 4 bits one table lookup per byte (faster than shifting each index)."""
    if bits == 8:
        return packed.long()
    if 8 % bits:
        return unpack_indices(packed, bits, n).long()
    if bits not in _LUT:
        _LUT[bits] = ((torch.arange(256)[:, None] >> torch.arange(0, 8, bits)) & (2**bits - 1)).contiguous()
    lut = _LUT[bits].to(packed.device)
    return lut.index_select(0, packed.long()).view(-1)[:n]


class _Runtime:
    """One packed layer inside a running model: its indices, in the order the weight is laid out in memory,
    and its levels in float32 when they are few (a small table costs less than decoding it every call)."""

    def __init__(self, layer: PackedLayer, spec: torch.Tensor, device: torch.device) -> None:
        self.layer, self.stride = layer, spec.stride()
        shape = layer.shape
        last = (len(shape) == 4 and spec.is_contiguous(memory_format=torch.channels_last)
                and not spec.is_contiguous())
        rowwise = isinstance(layer.granularity, PerTensor) or layer.num_groups() == 1 or (
            isinstance(layer.granularity, PerChannel) and layer.granularity.axis == 0)
        self.channels_last = last and rowwise  # groups are whole output channels: reordering inside them is free
        contiguous = spec.is_contiguous()
        self.direct = rowwise and (self.channels_last or contiguous)  # gather straight into the final layout
        idx = layer.indices()
        if self.channels_last:
            idx = idx.permute(0, 2, 3, 1).contiguous()  # (C, kh, kw, Cin): the channels-last memory order
        self.packed = pack_indices(idx, layer.bits).to(device)
        levels = layer.levels()
        self.levels = levels.to(device) if 4 * levels.numel() <= layer.numel else None  # <= 1 bit per weight

    def weight(self) -> torch.Tensor:
        layer = self.layer
        if not self.direct:
            return rebuild_weight(PackedLayer(**{**vars(layer), "packed": self.packed}), self.stride)
        idx = _unpack_long(self.packed, layer.bits, layer.numel)
        levels = self.levels if self.levels is not None else layer.levels().to(idx.device)
        flat = levels[0][idx] if levels.shape[0] == 1 else levels.gather(1, idx.view(levels.shape[0], -1))
        if not self.channels_last:  # same memory order as the model's tensor; strides of size-1 dims as its are
            return flat.as_strided(layer.shape, self.stride)
        c, cin, kh, kw = layer.shape
        return flat.view(c, kh, kw, cin).permute(0, 3, 1, 2)  # channels-last strides, no copy

    def resident_bytes(self) -> int:
        held = 4 * self.levels.numel() if self.levels is not None else self.layer.stored.nbits() // 8
        return self.packed.numel() + held


def _attach(module: nn.Module, attr: str, rt: _Runtime, device: torch.device) -> None:
    """Replace the parameter ``attr`` of ``module`` by a placeholder and hooks that rebuild it per call."""
    del module._parameters[attr]
    placeholder = torch.empty(0, device=device)  # keeps e.g. `module.weight.device` working between calls
    setattr(module, attr, placeholder)

    def build(mod: nn.Module, args) -> None:
        setattr(mod, attr, rt.weight())

    def drop(mod: nn.Module, args, out) -> None:
        setattr(mod, attr, placeholder)

    module.register_forward_pre_hook(build)
    module.register_forward_hook(drop)


def packed_model(source: PackedFile | str | Path, device: str | torch.device = "cpu") -> UNet:
    """A model in eval mode that runs a packed file without dequantizing it whole.

    Its kept tensors (biases, norms, embeddings) are ordinary float32 parameters; its quantized weights
    stay packed (:func:`packed_layers`) and are rebuilt per forward call of their module."""
    pf = source if isinstance(source, PackedFile) else read_packed(source)
    device = torch.device(device)
    model = UNet(pf.model_config)
    spec = skeleton(pf.model_config)
    missing, unexpected = model.load_state_dict(pf.kept, strict=False)
    if unexpected or set(missing) != {layer.name for layer in pf.layers}:
        raise ValueError(f"{pf.path}: kept and quantized tensors do not cover the model")
    runtimes = []
    for layer in pf.layers:
        module_name, _, attr = layer.name.rpartition(".")
        module = model.get_submodule(module_name)
        if attr not in module._parameters:
            raise ValueError(f"{pf.path}: {layer.name!r} is not a parameter of the model; the packed runtime "
                             "rebuilds parameters only")
        runtimes.append(_Runtime(layer, spec[layer.name], device))
        _attach(module, attr, runtimes[-1], device)
    model.to(device).eval()
    model.requires_grad_(False)
    model._fmq_packed = runtimes  # what resident_weight_bytes counts beside the parameters
    return model


def packed_layers(model: nn.Module) -> list[PackedLayer]:
    """The packed layers of a model from :func:`packed_model` (empty for any other model)."""
    return [rt.layer for rt in getattr(model, "_fmq_packed", [])]


def resident_weight_bytes(model: nn.Module) -> int:
    """Bytes of weights a model keeps in memory: its parameters and buffers, plus packed indices and stored
    levels for a packed model (transient rebuilt weights are not resident)."""
    dense = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return dense + sum(rt.resident_bytes() for rt in getattr(model, "_fmq_packed", []))


def fp32_weight_bytes(model: nn.Module) -> int:
    """Bytes the same model's weights take as FP32 tensors (packed layers counted at 4 bytes per weight)."""
    dense = sum(t.numel() * 4 for t in list(model.parameters()) + list(model.buffers()))
    return dense + 4 * sum(layer.numel for layer in packed_layers(model))
