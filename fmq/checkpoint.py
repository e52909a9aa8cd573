"""Checkpoints: safetensors tensors + JSON metadata in the safetensors header. Nothing is unpickled.

A checkpoint holds the (EMA) weights of a :class:`~fmq.models.UNet` and, in the header's string
metadata, ``fmq_format``, ``model_config`` (JSON of :class:`ModelConfig`) and ``meta`` (JSON: data set,
steps, final loss, date, sha256 of the training data, the command that trained it, ...).
A copy of the metadata is written beside it as ``<name>.json`` for people browsing the folder;
loading reads only the ``.safetensors`` file.

Loading validates before building anything: the file must parse as safetensors, carry fmq metadata,
and every tensor must match the configured model's names, shapes and dtypes exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .models import ModelConfig, UNet

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_header",
    "atomic_save_tensors",
    "load_tensors",
    "fingerprint",
]

FORMAT = "fmq-checkpoint/1"
# other files fmq writes, named in the words a person would use for them
_OTHER_FORMATS = {"fmq-classifier/1": "an fmq classifier (it labels images)",
                  "fmq-packed/1": "a packed quantized fmq model (load it with fmq.quant.packing.load_packed)"}


class CheckpointError(ValueError):
    """The file is not a valid fmq checkpoint; the message says why."""


@dataclass
class Checkpoint:
    model: UNet
    config: ModelConfig
    meta: dict = field(default_factory=dict)
    path: Path | None = None


def cache_root() -> Path:
    """Where fmq keeps work it can always recompute (sweep rows, calibration states): ``$FMQ_CACHE``, default
    ``~/.cache/fmq``."""
    return Path(os.environ.get("FMQ_CACHE", Path.home() / ".cache" / "fmq"))


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file via a temporary file + rename, so an interrupted save never corrupts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _sniff(path: Path) -> None:
    """Recognise common foreign formats so the error can say what the file is."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        raise CheckpointError(f"{path} is a Python pickle; fmq loads only safetensors files (never unpickles)")
    if head[:2] == b"PK":
        raise CheckpointError(
            f"{path} is a zip archive (a torch.save file?); fmq loads only safetensors files (never unpickles)"
        )
    if len(head) < 8:
        raise CheckpointError(f"{path} is too short to be a safetensors file ({len(head)} bytes)")
    header_len = int.from_bytes(head[:8], "little")
    size = path.stat().st_size
    if header_len <= 0 or header_len > size - 8 or head[8:9] != b"{":
        raise CheckpointError(f"{path} is not a safetensors file (bad header length or start)")


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the header metadata of a safetensors file, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _sniff(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({e})") from e
    return tensors, metadata


def read_header(path: str | Path) -> tuple[ModelConfig, dict]:
    """Model config and metadata of a checkpoint, without loading tensors into a model."""
    _, metadata = load_tensors(path)
    return _parse_metadata(Path(path), metadata)


def _parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[ModelConfig, dict]:
    found = metadata.get("fmq_format")
    if found in _OTHER_FORMATS:
        raise CheckpointError(f"{path} is {_OTHER_FORMATS[found]}, not an image generator: give a checkpoint "
                              "written by `python -m fmq train`")
    if found != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an fmq checkpoint (format {found or 'none'!r}, expected {FORMAT!r})"
        )
    try:
        config = ModelConfig.from_json(metadata["model_config"])
        meta = json.loads(metadata.get("meta", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: model config in the header is invalid ({e})") from e
    return config, meta


def validate_state(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError unless ``found`` has exactly the names, shapes and dtypes of ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: tensors do not fit the model config; missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, ref in expected.items():
        t = found[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(t.shape)}, the config needs {tuple(ref.shape)}"
            )
        if t.dtype != ref.dtype:
            raise CheckpointError(f"{where}: tensor {name!r} has dtype {t.dtype}, expected {ref.dtype}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{where}: tensor {name!r} contains NaN or Inf")


def save_checkpoint(model: UNet, path: str | Path, meta: dict | None = None, sidecar: bool = True) -> Path:
    path = Path(path)
    meta = dict(meta or {})
    metadata = {"fmq_format": FORMAT, "model_config": model.config.to_json(), "meta": json.dumps(meta)}
    atomic_save_tensors(model.state_dict(), path, metadata)
    if sidecar:
        info = {"format": FORMAT, "model_config": model.config.to_dict(), **meta}
        path.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate an fmq checkpoint; returns a model in eval mode."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    config, meta = _parse_metadata(path, metadata)
    model = UNet(config)
    validate_state(model.state_dict(), tensors, str(path))
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    model.requires_grad_(False)
    return Checkpoint(model=model, config=config, meta=meta, path=path)


def fingerprint(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (names and bytes): proves a model was not mutated."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
