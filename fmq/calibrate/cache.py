"""Per-model calibration work kept on disk: the states (FP32 trajectories) and the measured sensitivity.

Both depend only on the FP32 model (its fingerprint: every tensor's bytes), the calibration draw and the
settings that shape them, so every bit budget, refinement length and page of the app reuses them. Files
live under ``$FMQ_CACHE/calibration`` (default ``~/.cache/fmq``), beside the sweep's cache; a file that
cannot be read is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..checkpoint import atomic_save_tensors, cache_root, fingerprint
from ..qconfig import CalibConfig
from .sensitivity import Sensitivity, measure_sensitivity
from .states import CalibrationSet, collect_states

__all__ = ["calibration_dir", "cached_states", "cached_sensitivity"]

VERSION = 1


def calibration_dir() -> Path:
    return cache_root() / "calibration"


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps({**parts, "version": VERSION}, sort_keys=True).encode()).hexdigest()[:24]


def _states_key(model: nn.Module, cfg: CalibConfig) -> str:
    return _key(model=fingerprint(model)[:24], samples=cfg.samples, traj_steps=cfg.traj_steps, seed=cfg.seed)


def cached_states(model: nn.Module, cfg: CalibConfig) -> CalibrationSet:
    """:func:`collect_states`, read from disk when this model and draw were collected before."""
    path = calibration_dir() / f"states-{_states_key(model, cfg)}.safetensors"
    if path.is_file():
        try:
            d = load_file(str(path))
            return CalibrationSet(d["x"], d["t"], d.get("y"), d["v"], int(cfg.seed), 0.0)
        except Exception:  # a truncated or foreign file: recompute  # noqa: BLE001
            pass
    calib = collect_states(model, cfg)
    tensors = {"x": calib.x, "t": calib.t, "v": calib.v, **({} if calib.y is None else {"y": calib.y})}
    atomic_save_tensors(tensors, path, {})
    return calib


def cached_sensitivity(model: nn.Module, names: list[str], calib: CalibrationSet, cfg: CalibConfig,
                       granularity: str, progress=None) -> Sensitivity:
    """:func:`measure_sensitivity` for the default base (exact OT), read from disk when measured before."""
    key = _key(states=_states_key(model, cfg), names=hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
               widths=list(cfg.widths), granularity=granularity, probe=cfg.probe,
               **({} if cfg.early == 1 else {"early": cfg.early}))
    path = calibration_dir() / f"sensitivity-{key}.safetensors"
    if path.is_file():
        try:
            d = {k: v.numpy() for k, v in load_file(str(path)).items()}
            return Sensitivity(list(names), tuple(int(w) for w in d["widths"]), d["err"], d["cost"], d["numel"],
                               "ot", granularity, 0.0)
        except Exception:  # noqa: BLE001
            pass
    s = measure_sensitivity(model, names, calib, cfg.widths, granularity, probe=cfg.probe, progress=progress,
                            early=cfg.early)

    atomic_save_tensors({"widths": torch.tensor(s.widths), "err": torch.from_numpy(s.err),
                         "cost": torch.from_numpy(s.cost), "numel": torch.from_numpy(s.numel)}, path, {})
    return s
