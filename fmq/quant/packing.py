"""Packed quantized models (format ``fmq-packed/2``): one safetensors file, six flat tensors and a JSON header.

=============  =======  ==========================================================================
tensor         dtype    holds, layer after layer in state-dict order
=============  =======  ==========================================================================
``indices``    uint8    each quantized tensor's indices: ``bits`` bits each, LSB first, row-major
                        (coding ``fixed``), or its ANS-coded stream (coding ``ans``, :mod:`.entropy`)
``freqs``      uint16   the entropy model (K frequencies) of each ``ans`` layer
``levels``     float16  (G, K) level tables of layers with store ``levels`` (:mod:`.storage`)
``params``     float32  (G, 2) grid parameters of ``affine`` (lo, step) and ``pwl`` (m, p) layers
``exponents``  int8     (G,) top exponents of ``pow2`` layers
``kept``       f32/f16  every tensor that is not quantized (biases, norms, embeddings), concatenated
=============  =======  ==========================================================================

With ``coding="ans"`` the ``levels`` and ``kept`` tensors are also compressed losslessly where that makes
them smaller (codec ``xz-shuffle``: the values' bytes grouped by significance, then xz; stored as uint8).

The header's string metadata: ``fmq_format``, ``model_config``, ``quant_config`` (the QuantConfig JSON as
given), ``meta`` (where the FP32 model came from), ``kept_dtype``, ``codecs``, ``checksums`` (CRC-32 of each tensor's
bytes) and ``layers``: a JSON table with, per quantized tensor, its name, shape, bits (each layer its own:
mixed-precision configs give every layer a width), K levels, granularity, method, store, coding and
byte count in ``indices``, written as columns (a column whose entries are all equal is written once).
The names and shapes of the kept tensors follow from the model config.

The size of a packed model is the size of this file on disk, everything counted. Every field is checked
on load (:func:`read_packed`); a truncated or altered file is refused with a message naming the file and
what is wrong. Loading rebuilds exactly the levels the fake-quantized model of
:func:`fmq.quantize.quantize_model` uses, so both compute identical outputs.
"""

from __future__ import annotations

import json
import lzma
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from ..checkpoint import CheckpointError, atomic_save_tensors, load_tensors
from ..models import ModelConfig, UNet
from .codebook import Codebook, Granularity, check_bits, group_ids, parse_granularity
from .entropy import ans_decode, ans_encode, counts, entropy_bits, model_frequencies
from .storage import PARAMS_PER_GROUP, STORES, Stored, decode_levels, encode_levels

__all__ = ["FORMAT", "CODINGS", "KEPT_DTYPES", "PackedLayer", "PackedFile", "pack_indices", "unpack_indices",
           "save_packed", "read_packed", "load_packed", "packed_size", "skeleton"]

FORMAT = "fmq-packed/2"
CODINGS = ("fixed", "ans")  # how indices are stored: b bits each, or ANS-coded with the layer's frequencies
KEPT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_BLOBS = {"indices": torch.uint8, "freqs": torch.uint16, "levels": torch.float16, "params": torch.float32,
          "exponents": torch.int8}
_REEXPORT = ("re-export it from the FP32 checkpoint with `python -m fmq quantize --checkpoint FP32.safetensors "
             "--method M --bits B --out FILE`")


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
    """Inverse of :func:`pack_indices`: (numel,) uint8. Index i sits at bits i·b .. i·b+b-1 of the stream."""
    bits = check_bits(bits)
    raw = packed.reshape(-1)
    need = -(-numel * bits // 8)
    if raw.numel() != need:
        raise ValueError(f"packed indices have {raw.numel()} bytes, {numel} indices at {bits} bits need {need}")
    if bits == 8:
        return raw.clone()
    mask = 2**bits - 1
    if 8 % bits == 0:  # whole indices per byte
        return ((raw[:, None] >> _shifts(bits, raw.device)) & mask).reshape(-1)[:numel]
    pos = torch.arange(numel, dtype=torch.int64) * bits  # an index spans at most two bytes
    w = torch.cat([raw, raw.new_zeros(1)]).to(torch.int32)
    byte = pos >> 3
    return (((w[byte] | (w[byte + 1] << 8)) >> (pos & 7)) & mask).to(torch.uint8)


@lru_cache(maxsize=16)
def _shifts(bits: int, device: torch.device) -> torch.Tensor:
    return torch.arange(0, 8, bits, dtype=torch.uint8, device=device)


@dataclass(eq=False)
class PackedLayer:
    """One quantized tensor as a packed model holds it: fixed-width indices and stored levels."""

    name: str
    shape: tuple[int, ...]
    bits: int
    num_levels: int  # K slots per group
    granularity: Granularity
    method: str
    stored: Stored
    packed: torch.Tensor  # uint8, the indices at ``bits`` bits each (what stays resident)
    coding: str  # how the file stores the indices
    file_bytes: int  # bytes of the indices in the file (fixed-width or ANS-coded)
    entropy: float  # empirical entropy of the indices, bits per index

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def indices(self) -> torch.Tensor:
        return unpack_indices(self.packed, self.bits, self.numel).reshape(self.shape)

    def levels(self) -> torch.Tensor:
        return decode_levels(self.stored, self.num_levels, self.bits)

    def num_groups(self) -> int:
        return group_ids(self.shape, self.granularity)[0]

    def codebook(self) -> Codebook:
        return Codebook(self.levels(), self.indices(), self.shape, self.granularity, self.bits, self.method,
                        self.stored)

    def resident_bytes(self) -> int:
        """Bytes this layer keeps in memory in a packed runtime: indices and stored levels."""
        return self.packed.numel() + self.stored.nbits() // 8


@dataclass(eq=False)
class PackedFile:
    """The contents of a packed file, validated."""

    path: Path
    model_config: ModelConfig
    quant_config: object  # fmq.quantize.QuantConfig
    meta: dict
    layers: list[PackedLayer]
    kept: dict[str, torch.Tensor]  # float32 values (fp16 ones if the file keeps fp16)
    kept_dtype: str

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


def _crc(t: torch.Tensor) -> int:
    return zlib.crc32(t.contiguous().view(torch.uint8).numpy().tobytes()) if t.numel() else 0


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([p.reshape(-1).to(dtype) for p in parts]) if parts else torch.zeros(0, dtype=dtype)


def save_packed(model: UNet, config, path: str | Path, source_meta: dict | None = None,
                codebooks: dict[str, Codebook] | None = None, coding: str = "fixed",
                kept_dtype: str = "float32") -> Path:
    """Quantize the FP32 ``model`` with ``config`` (a QuantConfig) and write the packed file.

    ``codebooks`` (``report.codebooks`` from :func:`~fmq.quantize.quantize_model` with the same model and
    config) skips quantizing again; their levels are stored so that they come back exactly, or refused.
    ``coding``: ``"fixed"`` (b bits per index) or ``"ans"`` (entropy-coded where that makes the layer
    smaller; never a larger file than ``"fixed"``, which is written instead). ``kept_dtype``: ``"float32"``
    or ``"float16"`` for the tensors that are not quantized (fp16 rounds them: the loaded model then differs
    from the fake-quantized one by that rounding; ``benchmarks/bench_packing.py`` measures it).
    """
    from ..quantize import quantize_model

    if coding not in CODINGS:
        raise ValueError(f"coding must be one of {CODINGS}, got {coding!r}")
    if kept_dtype not in KEPT_DTYPES:
        raise ValueError(f"kept_dtype must be one of {sorted(KEPT_DTYPES)}, got {kept_dtype!r}")
    if codebooks is None:
        _, report = quantize_model(model, config)
        codebooks = report.codebooks
    tensors, metadata = _contents(model, config, codebooks, "fixed", kept_dtype, source_meta)
    if coding == "ans":
        coded = _contents(model, config, codebooks, "ans", kept_dtype, source_meta)
        if len(safetensors_bytes(*coded)) < len(safetensors_bytes(tensors, metadata)):
            tensors, metadata = coded
    path = Path(path)
    atomic_save_tensors(tensors, path, metadata)
    return path


def _contents(model: UNet, config, codebooks: dict[str, Codebook], coding: str, kept_dtype: str,
              source_meta: dict | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and header of a packed file."""
    blobs: dict[str, list[torch.Tensor]] = {k: [] for k in _BLOBS}
    kept, layers = [], []
    for name, t in model.state_dict().items():
        cb = codebooks.get(name)
        if cb is None:
            if not t.is_floating_point():
                raise ValueError(f"tensor {name!r} ({t.dtype}) is neither quantized nor a float tensor")
            kept.append(t.detach().cpu())
            continue
        if tuple(cb.shape) != tuple(t.shape):
            raise ValueError(f"codebook for {name!r} has shape {cb.shape}, the model tensor {tuple(t.shape)}")
        stored = cb.stored if isinstance(cb.stored, Stored) else encode_levels(cb)
        if not torch.equal(decode_levels(stored, cb.num_levels, cb.bits), cb.levels):
            stored = Stored("levels", levels=cb.levels.to(torch.float16))
            if not torch.equal(stored.levels.float(), cb.levels):
                raise ValueError(f"codebook levels of {name!r} are not fp16 values; use quantize_model's codebooks")
        fixed = pack_indices(cb.indices, cb.bits)
        c = counts(cb.indices.numpy(), cb.num_levels)
        data, layer_coding = fixed, "fixed"
        if coding == "ans" and cb.numel:
            freqs = model_frequencies(c)
            coded = torch.from_numpy(ans_encode(cb.indices.numpy(), freqs))
            if coded.numel() + 2 * freqs.size < fixed.numel():
                data, layer_coding = coded, "ans"
                blobs["freqs"].append(torch.from_numpy(freqs))
        blobs["indices"].append(data)
        for key in ("levels", "params", "exponents"):
            if getattr(stored, key) is not None:
                blobs[key].append(getattr(stored, key))
        layers.append({"name": name, "shape": list(cb.shape), "bits": cb.bits, "levels": cb.num_levels,
                       "granularity": str(cb.granularity), "method": cb.method, "store": stored.store,
                       "coding": layer_coding, "bytes": int(data.numel())})
    tensors = {k: _cat(v, _BLOBS[k]) for k, v in blobs.items()}
    tensors["kept"] = _cat(kept, KEPT_DTYPES[kept_dtype])
    codecs = {}
    if coding == "ans":  # the float tables too, where lossless compression makes them smaller
        for name in _COMPRESSIBLE:
            packed = _xz_pack(tensors[name])
            if packed.numel() < tensors[name].numel() * tensors[name].element_size():
                tensors[name], codecs[name] = packed, _CODEC
    compact = {"separators": (",", ":"), "sort_keys": True}
    metadata = {
        "fmq_format": FORMAT,
        "model_config": model.config.to_json(),
        "quant_config": config.to_json(),
        "layers": json.dumps(_columns(layers), separators=(",", ":")),
        "meta": json.dumps(source_meta or {}, **compact),
        "kept_dtype": kept_dtype,
        "codecs": json.dumps(codecs, **compact),
        "checksums": json.dumps({k: _crc(v) for k, v in tensors.items()}, **compact),
    }
    return tensors, metadata


_CODEC = "xz-shuffle"  # the value's bytes regrouped by significance (all first bytes, then all second ...), xz
_COMPRESSIBLE = ("levels", "kept")


def _xz_pack(t: torch.Tensor) -> torch.Tensor:
    """Lossless: byte planes of ``t`` (sign/exponent bytes together compress well), then xz (LZMA2 + CRC-64)."""
    planes = t.contiguous().view(torch.uint8).reshape(-1, t.element_size()).T.contiguous()
    return torch.frombuffer(bytearray(lzma.compress(planes.numpy().tobytes(), preset=6)),
                            dtype=torch.uint8)


def _xz_unpack(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`_xz_pack`; ValueError if the data does not decompress to whole values."""
    try:
        raw = lzma.decompress(t.numpy().tobytes())
    except lzma.LZMAError as e:
        raise ValueError(f"it does not decompress ({e})") from e
    size = torch.empty(0, dtype=dtype).element_size()
    if len(raw) % size:
        raise ValueError(f"it decompresses to {len(raw)} bytes, not whole {dtype} values")
    planes = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(size, -1) if raw else \
        torch.zeros(size, 0, dtype=torch.uint8)
    return planes.T.contiguous().view(dtype).reshape(-1)


_FIELDS = ("name", "shape", "bits", "levels", "granularity", "method", "store", "coding", "bytes")


def _columns(layers: list[dict]) -> dict:
    """Layer entries as columns; a column whose entries are all equal is written once (a smaller header)."""
    out = {}
    for key in _FIELDS:
        col = [entry[key] for entry in layers]
        out[key] = col[0] if col and all(v == col[0] for v in col) and key not in ("name", "shape", "bytes") else col
    return out


def _rows(columns: dict) -> list[dict]:
    """Inverse of :func:`_columns`."""
    if not isinstance(columns, dict) or set(columns) != set(_FIELDS):
        raise ValueError(f"the layer table must have the columns {list(_FIELDS)}")
    n = len(columns["name"]) if isinstance(columns["name"], list) else -1
    cols = {k: v if isinstance(v, list) else [v] * n for k, v in columns.items()}
    if n < 0 or any(len(v) != n for v in cols.values()):
        raise ValueError("the layer table's columns differ in length")
    return [{k: cols[k][i] for k in _FIELDS} for i in range(n)]


def skeleton(config: ModelConfig) -> dict[str, torch.Tensor]:
    """Names, shapes, dtypes and strides of a model's state as meta tensors (no memory held)."""
    return dict(_skeleton(config.to_json()))


@lru_cache(maxsize=16)
def _skeleton(config_json: str) -> tuple[tuple[str, torch.Tensor], ...]:
    state = UNet(ModelConfig.from_json(config_json)).state_dict()
    return tuple((k, torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device="meta")) for k, v in state.items())


class _Reader:
    """Consumes a flat tensor front to back; a short or over-long tensor is an error naming it."""

    def __init__(self, name: str, t: torch.Tensor) -> None:
        self.name, self.t, self.at = name, t.reshape(-1), 0

    def take(self, n: int) -> torch.Tensor:
        if n < 0 or self.at + n > self.t.numel():
            raise ValueError(f"the {self.name!r} data ends early ({self.t.numel()} values, need {self.at + n})")
        out = self.t[self.at:self.at + n]
        self.at += n
        return out

    def done(self) -> None:
        if self.at != self.t.numel():
            raise ValueError(f"the {self.name!r} data has {self.t.numel() - self.at} values no layer uses")


def _layer(info: dict, ref: torch.Tensor, blobs: dict[str, _Reader]) -> PackedLayer:
    shape = tuple(int(s) for s in info["shape"])
    if shape != tuple(ref.shape) or not ref.is_floating_point():
        raise ValueError(f"shape {shape} does not fit the model's float tensor {tuple(ref.shape)}")
    bits, k = check_bits(info["bits"]), int(info["levels"])
    if not 1 <= k <= 2**bits:
        raise ValueError(f"{k} levels do not fit {bits}-bit indices")
    gran = parse_granularity(info["granularity"])
    n_groups, _ = group_ids(shape, gran)
    store, coding, numel = info["store"], info["coding"], math.prod(shape)
    if store not in STORES or coding not in CODINGS:
        raise ValueError(f"unknown store {store!r} or coding {coding!r}")
    data = blobs["indices"].take(int(info["bytes"]))
    if coding == "fixed":
        packed = data.clone()
        idx = unpack_indices(packed, bits, numel)
    else:
        idx = torch.from_numpy(ans_decode(data.numpy(), blobs["freqs"].take(k).numpy().astype(np.int64), numel))
        packed = pack_indices(idx, bits)
    if numel and int(idx.max()) >= k:
        raise ValueError(f"an index exceeds the {k} codebook slots")
    if store == "levels":
        stored = Stored(store, levels=blobs["levels"].take(n_groups * k).reshape(n_groups, k).clone())
    elif store == "pow2":
        stored = Stored(store, exponents=blobs["exponents"].take(n_groups).clone())
    else:
        p = PARAMS_PER_GROUP[store]
        stored = Stored(store, params=blobs["params"].take(n_groups * p).reshape(n_groups, p).clone())
    if store == "pwl" and bits < 2:
        raise ValueError("a pwl grid needs at least 2 bits")
    if store in ("pow2", "pwl", "affine") and k != 2**bits:
        raise ValueError(f"a {store} grid has 2**bits levels, the header says {k}")
    levels = decode_levels(stored, k, bits)
    if not torch.isfinite(levels).all():
        raise ValueError("its levels are not finite")
    return PackedLayer(info["name"], shape, bits, k, gran, str(info["method"]), stored, packed, coding,
                       data.numel(), entropy_bits(counts(idx.numpy(), k)))


def read_packed(path: str | Path) -> PackedFile:
    """Read and check every field of a packed file; errors name the file and what is wrong."""
    from ..quantize import QuantConfig

    path = Path(path)
    tensors, metadata = load_tensors(path)
    found = metadata.get("fmq_format", "none")
    if found == "fmq-packed/1":
        raise CheckpointError(f"{path} is an fmq-packed/1 file from an older fmq, which this version no longer "
                              f"reads; {_REEXPORT}")
    if found != FORMAT:
        raise CheckpointError(f"{path} is not a packed fmq model (format {found!r}, expected {FORMAT!r})")
    try:
        model_cfg = ModelConfig.from_json(metadata["model_config"])
        qcfg = QuantConfig.from_json(metadata["quant_config"])
        layers = _rows(json.loads(metadata["layers"]))
        meta = json.loads(metadata["meta"])
        checksums = json.loads(metadata["checksums"])
        codecs = json.loads(metadata["codecs"])
        kept_dtype = metadata["kept_dtype"]
        if kept_dtype not in KEPT_DTYPES or not isinstance(checksums, dict) or not isinstance(meta, dict):
            raise ValueError("kept_dtype, checksums or meta has the wrong type")
        if not isinstance(codecs, dict) or set(codecs) - set(_COMPRESSIBLE) or set(codecs.values()) - {_CODEC}:
            raise ValueError(f"codecs must map some of {_COMPRESSIBLE} to {_CODEC!r}")
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: packed header is invalid ({e}); {_REEXPORT}") from e
    expected = {**_BLOBS, "kept": KEPT_DTYPES[kept_dtype]}
    if set(tensors) != set(expected):
        raise CheckpointError(f"{path}: the file holds tensors {sorted(tensors)}, a packed model has "
                              f"{sorted(expected)}")
    for name, dtype in expected.items():
        t = tensors[name]
        stored = torch.uint8 if name in codecs else dtype
        if t.dtype != stored or t.ndim != 1:
            raise CheckpointError(f"{path}: tensor {name!r} is {t.dtype} of shape {tuple(t.shape)}, "
                                  f"expected 1-D {stored}")
        if checksums.get(name) != _crc(t):
            raise CheckpointError(f"{path}: the {name!r} data is altered (its checksum does not match the header)")
        if name in codecs:
            try:
                tensors[name] = _xz_unpack(t, dtype)
            except ValueError as e:
                raise CheckpointError(f"{path}: the {name!r} data is corrupt: {e}") from e
    state = skeleton(model_cfg)
    blobs = {k: _Reader(k, tensors[k]) for k in _BLOBS}
    out, names = [], set()
    for info in layers:
        name = info.get("name") if isinstance(info, dict) else None
        try:
            if name not in state or name in names:
                raise ValueError("no such tensor in the model, or listed twice")
            out.append(_layer(info, state[name], blobs))
            names.add(name)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"{path}: quantized tensor {name!r} is corrupt ({e})") from e
    try:
        for r in blobs.values():
            r.done()
        flat, kept = _Reader("kept", tensors["kept"]), {}
        for name, ref in state.items():
            if name not in names:
                v = flat.take(ref.numel()).to(torch.float32).reshape(ref.shape)
                if not torch.isfinite(v).all():
                    raise ValueError(f"kept tensor {name!r} contains NaN or Inf")
                kept[name] = v
        flat.done()
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return PackedFile(path, model_cfg, qcfg, meta, out, kept, kept_dtype)


def load_packed(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode with dequantized FP32 weights, QuantConfig, meta dict) from a packed file.

    :func:`fmq.packed.packed_model` runs a packed file without dequantizing it whole."""
    pf = read_packed(path)
    state = dict(pf.kept)
    for layer in pf.layers:
        state[layer.name] = layer.codebook().dequantize()
    model = UNet(pf.model_config)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    model.requires_grad_(False)
    return model, pf.quant_config, pf.meta


def packed_size(path: str | Path) -> int:
    """Bytes of a packed file on disk."""
    return Path(path).stat().st_size
