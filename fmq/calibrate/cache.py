"""Per-model calibration work kept on disk: the states (FP32 trajectories) and the measured sensitivity.

Both depend only on the FP32 model (its fingerprint: every tensor's bytes), the calibration draw and the
settings that shape them, so every bit budget, refinement length and page of the app reuses them. Files
live under ``$FMQ_CACHE/calibration`` (default ``~/.cache/fmq``), beside the sweep's cache; a file that
cannot be read is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import fingerprint
from ..qconfig import CalibConfig
from .sensitivity import Sensitivity, measure_sensitivity
from .states import CalibrationSet, collect_states

__all__ = ["calibration_dir", "cached_states", "cached_sensitivity"]

VERSION = 1


def calibration_dir() -> Path:
    return Path(os.environ.get("FMQ_CACHE", Path.home() / ".cache" / "fmq")) / "calibration"


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps({**parts, "version": VERSION}, sort_keys=True).encode()).hexdigest()[:24]


def _states_key(model: nn.Module, cfg: CalibConfig) -> str:
    return _key(model=fingerprint(model)[:24], samples=cfg.samples, traj_steps=cfg.traj_steps, seed=cfg.seed)


def _atomic(write, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    tensors = {"x": calib.x.contiguous(), "t": calib.t.contiguous(), "v": calib.v.contiguous()}
    if calib.y is not None:
        tensors["y"] = calib.y.contiguous()
    _atomic(lambda p: save_file(tensors, p), path)
    return calib


def cached_sensitivity(model: nn.Module, names: list[str], calib: CalibrationSet, cfg: CalibConfig,
                       granularity: str, progress=None) -> Sensitivity:
    """:func:`measure_sensitivity` for the default base (exact OT), read from disk when measured before."""
    key = _key(states=_states_key(model, cfg), names=hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
               widths=list(cfg.widths), granularity=granularity, probe=cfg.probe)
    path = calibration_dir() / f"sensitivity-{key}.npz"
    if path.is_file():
        try:
            d = np.load(path)
            return Sensitivity(list(names), tuple(int(w) for w in d["widths"]), d["err"], d["cost"], d["numel"],
                               "ot", granularity, 0.0)
        except Exception:  # noqa: BLE001
            pass
    s = measure_sensitivity(model, names, calib, cfg.widths, granularity, probe=cfg.probe, progress=progress)

    def write(p: str) -> None:
        with open(p, "wb") as f:
            np.savez(f, widths=np.array(s.widths), err=s.err, cost=s.cost, numel=s.numel)

    _atomic(write, path)
    return s
