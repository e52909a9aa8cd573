"""Calibrated quantization: codebooks that learn from the FP32 flow, and bits where they matter.

The plain quantizers of :mod:`fmq.quant` see only the weights. The methods here also see what the FP32
model does on calibration states (:mod:`.states`: FP32 trajectories from noise seeds no evaluation uses):

* ``ot-cal``       exact OT codebooks at b bits, then refined against the FP32 velocity (:mod:`.refine`);
* ``ot-mixed``     a width per layer under an average budget of b bits per weight, chosen from each layer's
                   measured effect on the velocity (:mod:`.sensitivity`) by an exact knapsack DP
                   (:mod:`.allocate`), exact OT codebooks at those widths;
* ``ot-mixed-cal`` both: the mixed widths, then refinement;
* ``ot-gptq``      GPTQ-style error compensation on the OT grid (:mod:`.gptq`), a comparison point
                   (per channel or per tensor).

:func:`calibrated_codebooks` runs a recipe; :func:`fmq.quantize.quantize_model` is the entry point that
calls it. Every step reports progress through one callback ``progress(stage, done, total, loss)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..qconfig import QuantConfig
from ..quant import Codebook, quantize_tensors
from .allocate import BudgetError, allocate
from .cache import cached_sensitivity, cached_states
from .gptq import gptq_codebooks
from .refine import RefineLog, refine_codebooks
from .sensitivity import WIDTH_BITS, Sensitivity, measure_sensitivity, probe_indices
from .states import CALIBRATION_SEED_BASE, CalibrationSet, collect_states

__all__ = ["RECIPES", "Recipe", "CalibrationLog", "calibrated_codebooks", "collect_states", "CalibrationSet",
           "measure_sensitivity", "allocate", "refine_codebooks", "BudgetError", "CALIBRATION_SEED_BASE",
           "WIDTH_BITS", "Sensitivity"]

Progress = Callable[[str, int, int, float], None]  # (stage, done, total, loss or nan)


@dataclass(frozen=True)
class Recipe:
    mixed: bool  # a width per layer under a budget
    refine: bool  # levels (and assignments) trained against the FP32 velocity
    gptq: bool = False  # GPTQ-style error compensation


RECIPES: dict[str, Recipe] = {
    "ot-cal": Recipe(mixed=False, refine=True),
    "ot-mixed": Recipe(mixed=True, refine=False),
    "ot-mixed-cal": Recipe(mixed=True, refine=True),
    "ot-gptq": Recipe(mixed=False, refine=False, gptq=True),
}
GPTQ_STATES = 256  # calibration states whose layer inputs make the Hessians


@dataclass
class CalibrationLog:
    """What calibration did: times per stage, the widths chosen, the refinement's losses."""

    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    widths: dict[str, int] = field(default_factory=dict)  # tensor -> bits (mixed)
    refine: RefineLog | None = None
    sensitivity: Sensitivity | None = None


def _budget_widths(sens: Sensitivity, budget: float) -> dict[str, int]:
    total = float(sens.numel.sum())
    try:
        pick = allocate(sens.cost, sens.err, budget * total)
    except BudgetError:
        least = float(sens.cost.min(1).sum()) / total
        unit = "bit" if budget == 1 else "bits"
        raise BudgetError(f"a budget of {budget:g} {unit} per weight is below the {least:.3f} bits per weight that "
                          f"the narrowest widths ({min(sens.widths)} bit, codebooks included) need here") from None
    return {n: sens.widths[j] for n, j in zip(sens.names, pick)}


def calibrated_codebooks(model: nn.Module, names: list[str], config: QuantConfig,
                         calibration: CalibrationSet | None = None, sensitivity: Sensitivity | None = None,
                         progress: Progress | None = None) -> tuple[dict[str, Codebook], CalibrationLog]:
    """Codebooks for the tensors ``names`` of ``model`` by the calibrated method ``config.method``.

    ``calibration`` (states) and ``sensitivity`` may be given when cached; they are computed otherwise.
    """
    import time

    recipe = RECIPES.get(config.method)
    if recipe is None:
        raise ValueError(f"{config.method!r} is not a calibrated method; calibrated ones: {', '.join(RECIPES)}")
    cc = config.calibration
    log = CalibrationLog()
    tell = progress or (lambda *a: None)
    if calibration is None:
        t0 = time.perf_counter()
        tell("trajectories", 0, 1, float("nan"))
        try:
            calibration = cached_states(model, cc)
        except RuntimeError as e:  # a model whose layers do not fit its own config cannot be sampled
            raise ValueError(f"calibration needs FP32 trajectories, and this model cannot be sampled: {e}") from e
        log.seconds["trajectories"] = time.perf_counter() - t0
    if recipe.mixed:
        if sensitivity is None or sensitivity.names != list(names) or sensitivity.widths != cc.widths \
                or sensitivity.granularity != config.granularity:
            t0 = time.perf_counter()
            sensitivity = cached_sensitivity(model, names, calibration, cc, config.granularity,
                                             progress=lambda d, n: tell("sensitivity", d, n, np.nan))
            log.seconds["sensitivity"] = time.perf_counter() - t0
        log.sensitivity = sensitivity
        t0 = time.perf_counter()
        widths = _budget_widths(sensitivity, float(config.bits))
        log.seconds["allocation"] = time.perf_counter() - t0
    else:
        widths = dict.fromkeys(names, int(config.bits))
    log.widths = widths
    params = model.state_dict()
    books: dict[str, Codebook] = {}
    for b in sorted(set(widths.values())):
        group = [n for n in names if widths[n] == b]
        for n, cb in zip(group, quantize_tensors([params[n].detach() for n in group], "ot", b, config.granularity)):
            books[n] = cb.with_levels_as(torch.float16)
    if recipe.gptq:
        t0 = time.perf_counter()
        tell("error compensation", 0, 1, float("nan"))
        books = gptq_codebooks(model, books, calibration, probe_indices(len(calibration), GPTQ_STATES, cc.seed))
        log.seconds["error compensation"] = time.perf_counter() - t0
    if recipe.refine and cc.steps > 0:
        t0 = time.perf_counter()
        books, log.refine = refine_codebooks(model, books, calibration, cc.steps, cc.batch, cc.lr, cc.assignments,
                                             cc.seed, cc.early,
                                             progress=lambda d, n, loss: tell("refinement", d, n, loss),
                                             restarts=cc.restarts)
        log.seconds["refinement"] = time.perf_counter() - t0
    return {n: books[n] for n in names}, log
