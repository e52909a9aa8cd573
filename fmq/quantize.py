"""Apply a :class:`QuantConfig` to a model: a new, fake-quantized model and a per-layer report.

The given model is never touched (the app shares cached FP32 models between users): the result is a
deep copy whose selected tensors hold the dequantized weights, with the levels exactly as a packed file
rebuilds them (fp16 level tables, or a parametric grid's parameters: :mod:`fmq.quant.storage`), so a
packed model (:mod:`fmq.quant.packing`) computes the same outputs bit for bit.

The report's W2 of a layer is the empirical 2-Wasserstein distance between the original and the
quantized weights of that layer, W2 = sqrt(mean((sort w - sort q(w))²)) (:func:`fmq.metrics.w2_distance`).
What is proven about it: W2 <= sqrt(MSE) for any quantizer (the identity coupling is one coupling);
and for one group, every quantizer with K levels has W2² >= SSE_kmeans / n, which the exact ``ot``
codebook attains, so ``ot`` has the least MSE and the least W2 of all K-level quantizers *of that
group*. With several groups (per channel, per group) ``ot`` still has the least MSE, but the layer's
pooled W2 may be beaten: pooled W2 forgets which group a value came from.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .methods import WIDTH_BITS, method_spec
from .metrics import w2_distance
from .qconfig import SCOPES, CalibConfig, QuantConfig, select_tensors
from .quant import Codebook, quantize_tensors
from .quant.common import as_weight
from .quant.storage import storable, stored_bits

__all__ = ["QuantConfig", "CalibConfig", "LayerReport", "QuantReport", "quantize_model", "select_tensors", "SCOPES"]

@dataclass
class LayerReport:
    name: str  # state-dict name of the tensor
    shape: tuple[int, ...]
    numel: int
    method: str
    bits: int
    levels: int  # codebook slots per group (<= 2**bits)
    w2: float  # W2 between the original and quantized weights of this tensor
    mse: float  # mean squared error per weight
    bits_per_weight: float  # fixed-width index bits + stored levels (fp16 tables or grid parameters), per weight

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class QuantReport:
    config: QuantConfig
    layers: list[LayerReport]
    kept: dict[str, int] = field(default_factory=dict)  # tensors left in FP32: name -> numel
    codebooks: dict[str, Codebook] = field(default_factory=dict, repr=False, compare=False)
    calibration: Any = field(default=None, repr=False, compare=False)  # fmq.calibrate.CalibrationLog

    @property
    def numel(self) -> int:
        """Weights quantized."""
        return sum(r.numel for r in self.layers)

    @property
    def mse(self) -> float:
        """Mean squared error over all quantized weights."""
        return sum(r.mse * r.numel for r in self.layers) / self.numel if self.numel else 0.0

    @property
    def w2(self) -> float:
        """sqrt of the weight-count-weighted mean of the layers' W2² (each layer coupled on its own)."""
        return math.sqrt(sum(r.w2**2 * r.numel for r in self.layers) / self.numel) if self.numel else 0.0

    @property
    def bits_per_weight(self) -> float:
        """Storage of the quantized tensors (indices + stored levels) per quantized weight."""
        return sum(r.bits_per_weight * r.numel for r in self.layers) / self.numel if self.numel else 0.0

    @property
    def model_bits_per_weight(self) -> float:
        """Storage per parameter over the whole model, kept tensors counted at 32 bits."""
        kept = sum(self.kept.values())
        total = self.numel + kept
        return (self.bits_per_weight * self.numel + 32 * kept) / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "layers": [r.to_dict() for r in self.layers],
            "kept": dict(self.kept),
            "summary": {"numel": self.numel, "mse": self.mse, "w2": self.w2, "bits_per_weight": self.bits_per_weight,
                        "model_bits_per_weight": self.model_bits_per_weight},
        }


def quantize_model(model: nn.Module, config: QuantConfig, calibration=None, sensitivity=None,
                   progress=None) -> tuple[nn.Module, QuantReport]:
    """A quantized deep copy of ``model`` and its :class:`QuantReport`; ``model`` is left untouched.

    The one entry point for every method of :data:`fmq.methods.METHODS`. A calibrated method also uses
    ``calibration`` (a :class:`fmq.calibrate.CalibrationSet`; collected from the FP32 model when None) and,
    for a mixed one, ``sensitivity`` (:class:`fmq.calibrate.Sensitivity`; measured when None or not for
    these tensors); ``progress(stage, done, total, loss)`` follows its stages. Plain methods ignore them.
    """
    spec = method_spec(config.method)
    chosen, kept = select_tensors(model, config)
    tensors = model.state_dict()
    report = QuantReport(config=config, layers=[], kept={n: tensors[n].numel() for n in kept})
    for name in chosen:  # check each tensor first, so an error names the layer
        try:
            as_weight(tensors[name])
        except ValueError as e:
            raise ValueError(f"layer {name!r} {tuple(tensors[name].shape)}: {e}") from e
    if spec.calibrated:
        from .calibrate import calibrated_codebooks

        books, report.calibration = calibrated_codebooks(model, chosen, config, calibration, sensitivity, progress)
        books = [books[n] for n in chosen]
    else:
        books = quantize_tensors([tensors[n].detach() for n in chosen], config.method, config.bits,
                                 config.granularity)
    new = copy.deepcopy(model)
    tensors = new.state_dict(keep_vars=True)
    width_bits = WIDTH_BITS if spec.mixed else 0
    for name, cb in zip(chosen, books):
        t = tensors[name]
        w = t.detach()
        try:
            cb, stored = storable(cb)
        except ValueError as e:
            raise ValueError(f"layer {name!r} {tuple(w.shape)}: {e}") from e
        q = cb.dequantize()
        err = (q.double() - w.double()).pow(2).mean().item() if w.numel() else 0.0
        report.layers.append(LayerReport(
            name=name, shape=tuple(w.shape), numel=w.numel(), method=config.method, bits=cb.bits,
            levels=cb.num_levels, w2=w2_distance(w, q), mse=err,
            bits_per_weight=(stored_bits(cb, stored) + width_bits) / cb.numel if cb.numel else 0.0,
        ))
        report.codebooks[name] = cb
        with torch.no_grad():
            t.copy_(q.to(t.dtype))
    return new, report
