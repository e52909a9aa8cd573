"""Calibrated methods in the app: the config of a (method, bits) point with the sidebar's calibration effort,
the store of calibrated models every page and user shares, and calibration with its progress drawn.

Calibration takes seconds to minutes, so it runs in the page (not inside a cached function, whose drawn
elements Streamlit would replay): a status box, a bar per stage and the training loss as it falls. A
settings change reruns the page and stops the calibration at its next progress report, leaving nothing
half-made in the store.
"""

from __future__ import annotations

import streamlit as st

from fmq import compare
from fmq.checkpoint import Checkpoint
from fmq.methods import method_spec
from fmq.qconfig import CalibConfig, QuantConfig
from views._settings import Settings

DEFAULT_STEPS = CalibConfig().steps
STORE_SIZE = 8  # calibrated models kept (each a model copy: a few MB)
STAGES = {"trajectories": "FP32 calibration trajectories (cached per model)",
          "sensitivity": "measuring each layer's effect on the velocity (cached per model)",
          "error compensation": "GPTQ error compensation, layer by layer",
          "refinement": "training the codebooks against the FP32 velocity"}


def quant_config(method: str, bits, granularity: str, cal: int = DEFAULT_STEPS) -> QuantConfig:
    """The QuantConfig of a (method, bits) point; ``cal`` (refinement steps) matters to calibrated methods only."""
    spec = method_spec(method)
    return QuantConfig(method=method, bits=bits if spec.mixed else int(bits), granularity=granularity,
                       calibration=CalibConfig(steps=int(cal)) if spec.calibrated else None)


def calibrated(method: str) -> bool:
    return method_spec(method).calibrated


@st.cache_resource(show_spinner=False)
def _store() -> dict:
    """{(model key, config JSON): compare.Quantized} of every session: minutes of work each."""
    return {}


def stored(key: str, cfg: QuantConfig) -> compare.Quantized | None:
    return _store().get((key, cfg.to_json()))


def store(key: str, cfg: QuantConfig, q: compare.Quantized) -> compare.Quantized:
    s = _store()
    s[(key, cfg.to_json())] = q
    while len(s) > STORE_SIZE:
        s.pop(next(iter(s)))
    return q


def prepare_calibrated(key: str, sett: Settings, ck: Checkpoint) -> None:
    """Calibrate the chosen calibrated methods at the sidebar's bits (a mixed one at its budget), showing each stage
    and the falling loss."""
    for m in sett.methods:
        if not calibrated(m):
            continue
        try:
            cfg = quant_config(m, sett.bits_for(m), sett.granularity, sett.cal_for(m))
        except ValueError:
            continue  # the page's own call reports it
        if stored(key, cfg) is None:
            _calibrate_shown(key, cfg, ck)


def _calibrate_shown(key: str, cfg: QuantConfig, ck: Checkpoint) -> None:
    with st.status(f"Calibrating {cfg.label} against the FP32 flow (change any setting to stop)…",
                   expanded=True) as status:
        bar = st.progress(0.0, text=STAGES["trajectories"])
        chart = st.empty()
        losses: list[float] = []

        def show(stage: str, done: int, total: int, loss: float) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{STAGES.get(stage, stage)}: {done}/{total}")
            if stage == "refinement" and loss == loss:
                losses.append(loss)
                if len(losses) % 4 == 1 or done == total:
                    chart.line_chart({"velocity MSE": losses}, height=160, x_label="× 5 steps",
                                     y_label="training loss")

        try:
            q = compare.quantize(ck.model, cfg, progress=show)
        except ValueError as e:
            status.update(label=f"{cfg.method}: {e}", state="error")
            return
        store(key, cfg, q)
        status.update(label=f"Calibrated {cfg.label} in {q.seconds:.0f} s", state="complete", expanded=False)
