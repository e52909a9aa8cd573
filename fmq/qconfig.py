"""What to quantize and how: :class:`QuantConfig` (+ :class:`CalibConfig` for calibrated methods) and the
one definition of "the tensors this config quantizes" (:func:`select_tensors`).

Both configs are small frozen dataclasses that round-trip to JSON; a packed file's header carries the
config it was made with, so a file says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from .methods import check_method_bits, method_spec
from .quant import leaves_untouched, parse_granularity

__all__ = ["QuantConfig", "CalibConfig", "select_tensors", "SCOPES"]

SCOPES = ("weights", "all")
_WEIGHT_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                   nn.Linear)


def _from_dict(cls, d: dict, what: str, tuples: tuple[str, ...]):
    """A config dataclass from its JSON dict: unknown fields refused by name, JSON lists back to tuples."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields: {sorted(unknown)}")
    d = {k: tuple(v) if k in tuples else v for k, v in d.items()}
    return cls(**d)


@dataclass(frozen=True)
class CalibConfig:
    """How a calibrated method learns from the FP32 flow (``fmq.calibrate``). Defaults reach the targets
    of ``benchmarks/bench_calibration.py`` on the shipped models."""

    samples: int = 256  # FP32 trajectories the calibration states come from (128 overfit: README)
    traj_steps: int = 10  # Heun steps of those trajectories; every grid state is a calibration state
    seed: int = 0  # which calibration draw (noise from a stream disjoint from every evaluation seed)
    steps: int = 200  # optimiser steps of the codebook refinement (methods that refine need at least 1)
    batch: int = 64  # calibration states per refinement step
    lr: float = 4e-3  # Adam learning rate, relative to each layer's weight scale
    assignments: bool = True  # also move weights between levels (straight-through), not only the levels
    early: float = 1.0  # loss weight of a state at t = 0 against t = 1, linear in t (1 = uniform; README)
    restarts: int = 1  # refinement runs on other batch orders; the least held-out loss is kept (README)
    widths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)  # widths a mixed method may give a layer
    probe: int = 32  # calibration states per sensitivity measurement of a (layer, width)

    def __post_init__(self) -> None:
        for name in ("samples", "traj_steps", "batch", "probe", "restarts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"calibration {name} must be a positive integer, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"calibration steps must be a non-negative integer, got {self.steps!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"calibration lr must be positive, got {self.lr!r}")
        if isinstance(self.early, bool) or not (isinstance(self.early, int | float) and self.early > 0):
            raise ValueError(f"calibration early (the loss weight at t = 0 against t = 1) must be positive, "
                             f"got {self.early!r}")
        widths = tuple(sorted({int(w) for w in self.widths}))
        if not widths or widths[0] < 1 or widths[-1] > 8:
            raise ValueError(f"calibration widths must be integers in 1..8, got {self.widths!r}")
        object.__setattr__(self, "widths", widths)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CalibConfig:
        return _from_dict(cls, d, "calibration", ("widths",))


@dataclass(frozen=True)
class QuantConfig:
    method: str = "ot"  # a key of fmq.methods.METHODS
    bits: int | float = 4  # index bits per weight, 1..8; for a mixed method the average budget in bits per weight
    granularity: str = "channel"  # "tensor" | "channel" | "group:G" (G consecutive input weights)
    scope: str = "weights"  # "weights": Conv/Linear weights; "all": every float tensor (the paper's protocol)
    skip: tuple[str, ...] = ()  # tensor or module names (fnmatch patterns) kept in FP32
    calibration: CalibConfig | None = None  # calibrated methods only (defaults filled in)

    def __post_init__(self) -> None:
        spec = method_spec(self.method)
        object.__setattr__(self, "bits", check_method_bits(self.method, self.bits))
        object.__setattr__(self, "granularity", str(parse_granularity(self.granularity)))
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        skip = (self.skip,) if isinstance(self.skip, str) else tuple(self.skip)
        object.__setattr__(self, "skip", tuple(str(s) for s in skip))
        cal = self.calibration
        if isinstance(cal, dict):
            cal = CalibConfig.from_dict(cal)
        if spec.calibrated and cal is None:
            cal = CalibConfig()
        if not spec.calibrated and cal is not None:
            raise ValueError(f"{self.method} is not a calibrated method; it takes no calibration settings")
        if spec.refined and cal.steps == 0:
            raise ValueError(f"{self.method} trains its codebooks: it needs at least 1 refinement step (0 given); "
                             "ot-mixed is the mixed-precision method without refinement")
        object.__setattr__(self, "calibration", cal)

    @property
    def label(self) -> str:
        """How the config reads in a legend: "ot 2-bit", "ot-mixed-cal 1.5 bits/weight"."""
        if method_spec(self.method).mixed:
            return f"{self.method} {self.bits:g} bits/weight"
        return f"{self.method} {self.bits}-bit"

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["skip"] = list(self.skip)
        if self.calibration is None:
            del d["calibration"]
        else:
            d["calibration"] = self.calibration.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> QuantConfig:
        return _from_dict(cls, d, "quant", ("skip",))

    @classmethod
    def from_json(cls, s: str) -> QuantConfig:
        return cls.from_dict(json.loads(s))


def _skipped(name: str, patterns: tuple[str, ...]) -> bool:
    module = name.rpartition(".")[0]
    return any(fnmatchcase(name, p) or fnmatchcase(module, p) or name.startswith(p + ".") for p in patterns)


def select_tensors(model: nn.Module, config: QuantConfig) -> tuple[list[str], list[str]]:
    """State-dict names to quantize and to keep in FP32 under ``config.scope`` and ``config.skip``; the paper's
    quantizers also keep every tensor with fewer than 2**bits elements (:func:`fmq.quant.leaves_untouched`)."""
    if config.scope == "weights":
        wanted = {f"{m_name}.weight" if m_name else "weight" for m_name, mod in model.named_modules()
                  if isinstance(mod, _WEIGHT_MODULES) and getattr(mod, "weight", None) is not None}
    else:
        wanted = None
    chosen, kept = [], []
    for name, t in model.state_dict().items():
        ok = (t.is_floating_point() and (wanted is None or name in wanted) and not _skipped(name, config.skip)
              and not leaves_untouched(config.method, t.numel(), config.bits))  # the paper's small tensors
        (chosen if ok else kept).append(name)
    return chosen, kept
