"""Every quantization method fmq knows, with what it needs: one registration per method.

A method is either *plain* (a pure per-tensor function of the weights, in :mod:`fmq.quant`) or
*calibrated* (it also needs the FP32 model's velocities on calibration states, :mod:`fmq.calibrate`).
A *mixed* method gives each layer its own bit width; its ``bits`` is then an average budget in bits
per weight over the quantized tensors, codebooks and per-layer widths included, and may be fractional.

The sidebar, ``python -m fmq quantize|sweep`` and :func:`fmq.quantize.quantize_model` read this table;
a new method is one entry here plus its function, not a special case in each of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .quant.codebook import BITS  # the one bit range, re-exported beside the registry

__all__ = ["MethodSpec", "METHODS", "method_spec", "check_method_bits", "plain_methods", "BITS", "WIDTH_BITS"]

WIDTH_BITS = 8  # a mixed method stores each layer's width: counted in that layer's bits per weight


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str  # one line: what it is (sidebar help, README)
    min_bits: int = 1  # least width (plain) or least budget (mixed) it accepts
    max_bits: int = 8
    calibrated: bool = False  # needs calibration states from the FP32 flow (fmq.calibrate)
    mixed: bool = False  # bits is an average budget in bits per weight; each layer has its own width
    refined: bool = False  # its codebooks are trained against the FP32 velocity (needs refinement steps)
    ragged: bool = False  # groups of similar (not only equal) length share one solver batch
    paper: bool = False  # the paper's own variant (arXiv 2511.11418's code)


_SPECS = [
    MethodSpec("ot", "exact 2-Wasserstein-optimal codebook (exact 1-D k-means): least error of any 2^b levels",
               ragged=True),
    MethodSpec("ot-equal-mass", "the paper's OT: equal-count chunks of the sorted weights, each chunk's mean",
               paper=True),
    MethodSpec("uniform", "evenly spaced levels from the minimum to the maximum weight"),
    MethodSpec("pwl", "piecewise-linear (Fang et al. 2020): a fine grid in the centre, a coarse one in the tails",
               min_bits=2),
    MethodSpec("log2", "signed powers of two (Miyashita et al. 2016), zero coded"),
    MethodSpec("pwl-paper", "the paper's piecewise-linear variant: quantile breakpoints, bin-midpoint levels",
               paper=True),
    MethodSpec("log2-paper", "the paper's log grid: powers of two on each side of zero", paper=True),
    MethodSpec("ot-cal", "exact OT codebooks, then levels and assignments trained to match the FP32 velocity",
               calibrated=True, refined=True),
    MethodSpec("ot-mixed", "a bit width per layer from its measured effect on the velocity, under an average "
               "budget in bits per weight; exact OT codebooks", calibrated=True, mixed=True),
    MethodSpec("ot-mixed-cal", "ot-mixed's widths, then its codebooks trained to match the FP32 velocity: "
               "2 bits per weight that keep the pictures", calibrated=True, mixed=True, refined=True),
    MethodSpec("ot-gptq", "exact OT levels, weights assigned GPTQ-style: each column's rounding error pushed onto the "
               "next columns through the layer's input statistics (a comparison point)", calibrated=True),
]

METHODS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown quantization method {name!r}; choose one of {', '.join(METHODS)}") from None


def plain_methods() -> list[str]:
    """The methods that need nothing but the weights (fast: about a second for a whole model)."""
    return [n for n, s in METHODS.items() if not s.calibrated]


def check_method_bits(name: str, bits) -> int | float:
    """``bits`` as the method takes it: an integer width for a uniform-width method, a budget for a mixed one."""
    spec = method_spec(name)
    if spec.mixed:
        if isinstance(bits, bool) or not isinstance(bits, int | float) or not math.isfinite(bits):
            raise ValueError(f"{name}: the bit budget must be a number of bits per weight, got {bits!r}")
        if not spec.min_bits <= bits <= spec.max_bits:
            raise ValueError(f"{name}: the bit budget must lie in {spec.min_bits}..{spec.max_bits} bits per weight,"
                             f" got {bits:g}")
        return float(bits) if bits != int(bits) else int(bits)
    if isinstance(bits, float) and bits.is_integer():
        bits = int(bits)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
    return bits  # a width below spec.min_bits is refused by the quantizer itself, naming why
