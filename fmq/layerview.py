"""Per-layer views of quantization: a layer's FP32 weights with each method's codebook levels, per-layer
W2/MSE tables, and real packed sizes. The library side of the app's Weights and Compression pages.

Nothing here modifies the model it is given; codebooks come from :func:`fmq.quant.quantize_tensor` on a
detached copy of one weight tensor, packed files from :func:`fmq.quant.packing.save_packed`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .methods import method_spec
from .metrics import w2_distance
from .models import count_parameters

__all__ = ["LayerView", "start_key", "weight_layers", "slice_count", "layer_view", "layer_table", "fp32_bytes",
           "CompressionRow", "pack"]


@dataclass
class LayerView:
    """One layer (and one slice of it: a channel or a group) as FP32 weights and per-method codebooks."""

    name: str
    shape: tuple[int, ...]
    granularity: str
    index: int  # which slice (channel or group); 0 at tensor granularity
    values: np.ndarray  # the slice's FP32 weights, flattened
    levels: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (K,) codebook of the slice
    w2: dict[str, float] = field(default_factory=dict)  # method -> W2(slice, quantized slice)
    mse: dict[str, float] = field(default_factory=dict)  # method -> mean squared error on the slice
    bits: dict[str, int] = field(default_factory=dict)  # method -> width of its codebook for this layer
    starts: dict[str, list[str]] = field(default_factory=dict)  # start key -> calibrated methods that start there


def start_key(bits: int) -> str:
    """The key, in ``LayerView.levels``, of the plain exact-OT codebook at ``bits`` that calibrated methods
    start from."""
    return f"ot {int(bits)}-bit start"


def weight_layers(model: nn.Module, config: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor ``config`` (a QuantConfig) quantizes, in state-dict order.

    The one definition is :func:`fmq.quantize.select_tensors`: scope ``weights`` takes Conv and Linear
    weights (not an embedding table), ``all`` every float tensor, minus ``skip``.
    """
    from .quantize import select_tensors

    state = model.state_dict()
    return [(n, tuple(state[n].shape)) for n in select_tensors(model, config)[0]]


def _groups(shape: Sequence[int], granularity: str) -> tuple[int, np.ndarray]:
    """(number of codebooks, codebook index of every weight in row-major order) — the quantizers' own rule."""
    from .quant.codebook import group_ids, parse_granularity

    return group_ids(tuple(shape), parse_granularity(granularity))


def slice_count(shape: Sequence[int], granularity: str) -> int:
    """How many codebooks a tensor of ``shape`` has at ``granularity`` (channels, groups, or 1)."""
    return _groups(shape, granularity)[0]


def layer_view(model: nn.Module, name: str, methods: Sequence[str], bits: int, granularity: str,
               index: int = 0, books: dict[str, Any] | None = None, starts: bool = False) -> LayerView:
    """FP32 weights of slice ``index`` (a channel or group) of layer ``name``, and each method's codebook for it.

    ``books`` {method: Codebook of this layer} supplies codebooks that cannot be made from the layer alone
    (calibrated methods: take them from the quantized model's report); the others are quantized here.
    With ``starts``, each refined method's codebook also gets the plain exact-OT codebook it started
    from, at that codebook's own width (a mixed method's width for this layer, not the sidebar's), under
    :func:`start_key` (one per width) — unless a plain ``ot`` at that width is already shown.
    """
    from .quant import quantize_tensor

    params = dict(model.named_parameters())
    if name not in params:
        raise ValueError(f"no parameter named {name!r}; see weight_layers(model, config)")
    w = params[name].detach().clone().float()
    count, ids = _groups(w.shape, granularity)
    if not 0 <= index < count:
        raise ValueError(f"slice index must be in 0..{count - 1} at {granularity} granularity, got {index}")
    mask = torch.from_numpy(ids == index)
    values = w.reshape(-1)[mask]
    view = LayerView(name, tuple(w.shape), granularity, index, values.numpy().copy())
    books = books or {}
    shown: list[tuple[str, Any]] = []
    for m in methods:
        if m in books:
            cb = books[m]
        elif method_spec(m).calibrated:
            continue  # its codebook depends on the whole model: not quantized by this tensor's scope here
        else:
            cb = quantize_tensor(w, m, bits, granularity)
        shown.append((m, cb))
    if starts:
        plain_ot = {int(cb.bits) for m, cb in shown if m == "ot"}
        for m, cb in list(shown):
            b = int(cb.bits)
            if not method_spec(m).refined or b in plain_ot:  # unrefined: its levels are that plain OT already
                continue
            if start_key(b) not in view.starts:
                shown.append((start_key(b), quantize_tensor(w, "ot", b, granularity)))
            view.starts.setdefault(start_key(b), []).append(m)
    for m, cb in shown:
        deq = cb.dequantize().reshape(-1)[mask]
        view.levels[m] = np.unique(cb.levels[index].double().numpy())
        view.bits[m] = int(cb.bits)
        view.w2[m] = w2_distance(values, deq)
        view.mse[m] = float((values - deq).pow(2).mean())
    return view


def layer_table(reports: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (layer, index, method, numel, bits, w2, mse, bits_per_weight) from {method: QuantReport}."""
    rows = []
    for method, report in reports.items():
        for i, lr in enumerate(report.layers):
            rows.append({"index": i, "layer": lr.name, "method": method, "numel": int(lr.numel), "bits": int(lr.bits),
                         "w2": float(lr.w2), "mse": float(lr.mse), "bits_per_weight": float(lr.bits_per_weight)})
    return rows


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of the model's full state as an FP32 safetensors file (what packing is measured against)."""
    return len(safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}))


@dataclass
class CompressionRow:
    method: str
    bits: int | float  # the config's width (a mixed method's average budget)
    fp32_bytes: int
    packed_bytes: int  # size of the packed file on disk (b-bit indices), codebooks and kept FP32 tensors included
    weights: int  # parameters in the model
    bits_per_weight: float  # 8 · packed bytes / parameters: everything counted
    ratio: float  # fp32_bytes / packed_bytes
    entropy_bytes: int = 0  # the same file with ANS-coded indices
    entropy_ratio: float = 0.0  # fp32_bytes / entropy_bytes
    index_entropy: float = 0.0  # empirical entropy of the indices, bits per weight (mean over layers by size)
    resident_bytes: int = 0  # weights the packed runtime keeps in memory (fmq.packed)
    fp32_resident_bytes: int = 0  # the FP32 model's weights in memory
    layers: list[dict] = field(default_factory=list)  # per quantized layer: name, bits, entropy, coding, bytes


def pack(model: nn.Module, config: Any, source_meta: dict | None = None,
         directory: str | Path | None = None, codebooks: dict | None = None) -> tuple[CompressionRow, bytes]:
    """Quantize and pack ``model`` with ``config``: the plain file (its bytes are returned), the same with
    entropy-coded indices, and the packed runtime built from the plain file (its resident bytes)."""
    from .packed import fp32_weight_bytes, packed_model, resident_weight_bytes
    from .quant.packing import read_packed, save_packed
    from .quantize import quantize_model

    if codebooks is None:  # a calibrated method must give its report's codebooks (calibration is not redone)
        codebooks = quantize_model(model, config)[1].codebooks
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        plain = save_packed(model, config, Path(tmp) / "plain.safetensors", source_meta=source_meta,
                            codebooks=codebooks)
        coded = save_packed(model, config, Path(tmp) / "ans.safetensors", source_meta=source_meta,
                            codebooks=codebooks, coding="ans")
        data, coded_size = plain.read_bytes(), coded.stat().st_size
        runtime = packed_model(plain)
        layers = read_packed(coded).layers
    full = fp32_bytes(model)
    params = count_parameters(model)
    n = sum(layer.numel for layer in layers)
    entropy = sum(layer.entropy * layer.numel for layer in layers) / n if n else 0.0
    table = [{"layer": layer.name, "bits": layer.bits, "entropy": layer.entropy, "coding": layer.coding,
              "indices bytes": layer.file_bytes, "store": layer.stored.store} for layer in layers]
    row = CompressionRow(config.method, config.bits, full, len(data), params, 8 * len(data) / params,
                         full / len(data), coded_size, full / coded_size, entropy, resident_weight_bytes(runtime),
                         fp32_weight_bytes(runtime), table)
    return row, data
