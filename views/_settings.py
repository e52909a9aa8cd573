"""The sidebar's settings as one frozen value per run, and the words pages use to describe them."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from fmq.qconfig import CalibConfig
from fmq.sampling import describe_steps

# calibration effort -> refinement steps (benchmarks/bench_calibration.py --curve prints SSIM against seconds
# for each; the README quotes it)
CALIB_EFFORT = {"quick": 100, "standard": 200, "thorough": 400}
# the mixed methods' own average budget (bits per weight, codebooks included) when it is not the bit slider's
BUDGETS = (1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6)
SAME_AS_BITS = "same as bits"


@dataclass(frozen=True)
class Settings:
    """The sidebar, read once per run."""

    model_id: str  # ModelRef.name of a shipped model, or "upload:<sha>"
    methods: tuple[str, ...]
    bits: int
    granularity: str  # "channel" | "tensor" | "group:G"
    solver: str
    steps: int
    n: int
    seed: int
    label: int | None  # None = every class in turn (or an unconditional model)
    guidance: float
    cal: int = CalibConfig().steps  # refinement steps of the calibrated methods (the sidebar's effort)
    budget: int | float | None = None  # the mixed methods' average bits per weight; None = ``bits``

    def bits_for(self, method: str) -> int | float:
        """What ``method`` is asked for: the mixed budget for a mixed method (when one is set), else the bits."""
        return bits_for(method, self.bits, self.budget)

    def cal_for(self, *methods: str) -> int:
        """The refinement steps that matter to ``methods``: the effort's when one of them is calibrated, else the
        default, so a cache keyed on it keeps the plain methods' results when only the effort changes."""
        from fmq.methods import METHODS

        calibrated = any(METHODS[m].calibrated for m in methods if m in METHODS)
        return self.cal if calibrated else CalibConfig().steps

    def run_args(self) -> tuple:
        """The sampling settings as a hashable tuple (a cache key part)."""
        return (self.n, self.seed, self.label, self.solver, self.steps, self.guidance)

    def describe(self) -> str:
        cls = "" if self.label is None else f", class {self.label}"
        return (f"{self.n} samples, {describe_steps(self.solver, self.steps)}, seed {self.seed}{cls}"
                f", guidance {self.guidance:g}, codebooks {gran_text(self.granularity)}")


def bits_for(method: str, bits: int, budget: int | float | None) -> int | float:
    """``budget`` for a mixed method when there is one, else ``bits`` (the one rule; Settings.bits_for uses it)."""
    from fmq.methods import METHODS

    spec = METHODS.get(method)
    return budget if budget is not None and spec is not None and spec.mixed else bits


def bits_text(bits: int | float) -> str:
    """"1 bit", "2 bits", "1.5 bits"."""
    return f"{bits:g} bit" if bits == 1 else f"{bits:g} bits"


def quant_label(method: str, bits) -> str:
    """"ot · 2-bit", or "ot-mixed-cal · 2 bits/weight" for a mixed method (its bits are an average budget)."""
    from fmq.methods import method_spec

    return f"{method} · {bits:g} bits/weight" if method_spec(method).mixed else f"{method} · {bits}-bit"


def gran_text(granularity: str) -> str:
    """"per channel", "per tensor", "groups of 16" (what a legend or caption says for "group:16")."""
    return f"groups of {granularity.split(':')[1]}" if granularity.startswith("group:") else f"per {granularity}"


def settings() -> Settings:
    s = st.session_state
    gran = s.get("granularity", "channel")
    if gran == "group":
        gran = f"group:{s.get('group_size', 64)}"
    label = s.get("label", "any")
    budget = s.get("budget", SAME_AS_BITS)
    budget = None if budget not in BUDGETS else (int(budget) if float(budget).is_integer() else float(budget))
    return Settings(
        model_id=s.get("model_id", ""), methods=tuple(s.get("methods", ())), bits=int(s.get("bits", 2)),
        granularity=gran, solver=s.get("solver", "heun"), steps=int(s.get("steps", 8)), n=int(s.get("n", 16)),
        seed=int(s.get("seed", 0)), label=None if label in (None, "any") else int(label),
        guidance=float(s.get("guidance", 1.0)), cal=CALIB_EFFORT.get(s.get("cal_effort"), CalibConfig().steps),
        budget=budget,
    )
