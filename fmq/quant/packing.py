"""Packed quantized models: b-bit indices, fp16 codebooks and FP32 kept tensors in one safetensors file.

For every quantized tensor ``name`` the file holds ``name#idx`` (uint8 bytes: the indices packed at
exactly ``bits`` bits each, least significant bit first, row-major) and ``name#levels`` ((G, K) fp16);
every other tensor of the state dict is stored as it is (FP32). The header's string metadata carries
``fmq_format``, ``model_config``, ``quant_config``, ``layers`` (shape, bits, granularity, method of
each quantized tensor) and ``meta`` (JSON, e.g. where the FP32 model came from).

The size of a packed model is the size of this file on disk: indices, codebooks, kept tensors and
the header included. Loading dequantizes with the same fp16 levels the fake-quantized model of
:func:`fmq.quantize.quantize_model` uses, so both compute identical outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, atomic_save_tensors, load_tensors, validate_state
from ..models import ModelConfig, UNet
from .codebook import Codebook, check_bits, parse_granularity

__all__ = ["FORMAT", "pack_indices", "unpack_indices", "save_packed", "load_packed", "packed_size"]

FORMAT = "fmq-packed/1"


def pack_indices(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 indices (< 2**bits) -> ceil(n * bits / 8) bytes, ``bits`` bits each, LSB first."""
    bits = check_bits(bits)
    a = indices.reshape(-1).cpu().numpy().astype(np.uint8)
    if a.size and int(a.max()) >= 2**bits:
        raise ValueError(f"index {int(a.max())} does not fit in {bits} bits")
    if bits == 8:
        return torch.from_numpy(a.copy())
    planes = (a[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # (n, bits)
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_indices(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_indices`: (numel,) uint8."""
    bits = check_bits(bits)
    raw = packed.reshape(-1).cpu().numpy().astype(np.uint8)
    need = -(-numel * bits // 8)
    if raw.size != need:
        raise ValueError(f"packed indices have {raw.size} bytes, {numel} indices at {bits} bits need {need}")
    if bits == 8:
        return torch.from_numpy(raw.copy())
    planes = np.unpackbits(raw, count=numel * bits, bitorder="little").reshape(numel, bits)
    return torch.from_numpy((planes << np.arange(bits, dtype=np.uint8)).sum(1, dtype=np.uint8))


def save_packed(model: UNet, config, path: str | Path, source_meta: dict | None = None,
                codebooks: dict[str, Codebook] | None = None) -> Path:
    """Quantize the FP32 ``model`` with ``config`` (a QuantConfig) and write the packed file.

    ``codebooks`` (``report.codebooks`` from :func:`~fmq.quantize.quantize_model` with the same model
    and config) skips quantizing again. Returns the path; its size on disk is the packed size.
    """
    from ..quantize import quantize_model

    if codebooks is None:
        _, report = quantize_model(model, config)
        codebooks = report.codebooks
    tensors: dict[str, torch.Tensor] = {}
    layers = {}
    for name, t in model.state_dict().items():
        cb = codebooks.get(name)
        if cb is None:
            tensors[name] = t.detach().float() if t.is_floating_point() else t.detach()
            continue
        if tuple(cb.shape) != tuple(t.shape):
            raise ValueError(f"codebook for {name!r} has shape {cb.shape}, the model tensor {tuple(t.shape)}")
        levels16 = cb.levels.to(torch.float16)
        if not torch.equal(levels16.float(), cb.levels):
            raise ValueError(f"codebook levels of {name!r} are not fp16 values; use quantize_model's codebooks")
        tensors[f"{name}#idx"] = pack_indices(cb.indices, cb.bits)
        tensors[f"{name}#levels"] = levels16
        layers[name] = {"shape": list(cb.shape), "bits": cb.bits, "granularity": str(cb.granularity),
                        "method": cb.method}
    metadata = {
        "fmq_format": FORMAT,
        "model_config": model.config.to_json(),
        "quant_config": config.to_json(),
        "layers": json.dumps(layers, sort_keys=True),
        "meta": json.dumps(source_meta or {}, sort_keys=True),
    }
    path = Path(path)
    atomic_save_tensors(tensors, path, metadata)
    return path


def load_packed(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode with dequantized weights, QuantConfig, meta dict) from a packed file."""
    from ..quantize import QuantConfig

    path = Path(path)
    tensors, metadata = load_tensors(path)
    if metadata.get("fmq_format") != FORMAT:
        found = metadata.get("fmq_format", "none")
        raise CheckpointError(f"{path} is not a packed fmq model (format {found!r}, expected {FORMAT!r})")
    try:
        model_cfg = ModelConfig.from_json(metadata["model_config"])
        qcfg = QuantConfig.from_json(metadata["quant_config"])
        layers = json.loads(metadata["layers"])
        meta = json.loads(metadata.get("meta", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: packed header is invalid ({e})") from e
    state = {k: v for k, v in tensors.items() if "#" not in k}
    for name, info in layers.items():
        try:
            shape = tuple(int(s) for s in info["shape"])
            bits = int(info["bits"])
            numel = int(np.prod(shape)) if shape else 1
            idx = unpack_indices(tensors[f"{name}#idx"], bits, numel).reshape(shape)
            levels = tensors[f"{name}#levels"].float()
            cb = Codebook(levels, idx, shape, parse_granularity(info["granularity"]), bits, info.get("method", ""))
            if numel and int(idx.max()) >= cb.num_levels:
                raise ValueError(f"an index exceeds the {cb.num_levels} codebook slots")
            state[name] = cb.dequantize()
        except (KeyError, ValueError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"{path}: quantized tensor {name!r} is corrupt ({e})") from e
    model = UNet(model_cfg)
    validate_state(model.state_dict(), state, str(path))
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    model.requires_grad_(False)
    return model, qcfg, meta


def packed_size(path: str | Path) -> int:
    """Bytes of a packed file on disk."""
    return Path(path).stat().st_size
