"""Running the chosen methods with the user informed: warnings for settings a method refuses, a status line
with steps for anything slow (a setting changed meanwhile stops the run between steps)."""

from __future__ import annotations

import streamlit as st

from fmq import compare
from fmq.checkpoint import Checkpoint
from views._cache import method_run, quantized
from views._calibration import prepare_calibrated
from views._settings import Settings, bits_text


def safe(fn, *args):
    """(value, None), or (None, message) when a quantizer refuses these settings (e.g. pwl needs 2 bits)."""
    try:
        return fn(*args), None
    except ValueError as e:
        return None, str(e)


def method_results(key: str, sett: Settings, ck: Checkpoint) -> dict[str, compare.MethodResult]:
    """Every chosen method's run at the sidebar's settings, with a status line naming each step (a setting
    changed meanwhile stops the run between steps); a method that cannot run gets a warning instead."""
    out = {}
    total = 2 * len(sett.methods)
    status = st.status("Quantizing and sampling…", expanded=False)
    for i, m in enumerate(sett.methods):
        status.update(label=f"Quantizing with {m} at {bits_text(sett.bits_for(m))} (step {2 * i + 1} of {total}; "
                            "change any setting to stop)…")
        _, err = safe(quantized, key, m, sett.bits_for(m), sett.granularity, ck.model, sett.cal_for(m))
        if not err:
            status.update(label=f"Sampling with {m} (step {2 * i + 2} of {total})…")
            res, err = safe(method_run, key, m, sett.bits_for(m), sett.granularity, sett.run_args(), ck,
                             sett.cal_for(m))
        if err:
            st.warning(f"**{m}** at {bits_text(sett.bits_for(m))}: {err}", icon=":material/warning:")
        else:
            out[m] = res
    status.update(label=f"{len(out)} of {len(sett.methods)} quantized models sampled", state="complete")
    return out


def usable_methods(key: str, sett: Settings, ck: Checkpoint) -> list[str]:
    """The chosen methods that can quantize this model at these settings (the others get a warning)."""
    out = []
    for m in sett.methods:
        _, err = safe(quantized, key, m, sett.bits_for(m), sett.granularity, ck.model, sett.cal_for(m))
        if err:
            st.warning(f"**{m}** at {bits_text(sett.bits_for(m))}: {err}", icon=":material/warning:")
        else:
            out.append(m)
    return out


def need_methods(sett: Settings, key: str | None = None, ck: Checkpoint | None = None) -> bool:
    """Tell the user what is missing when a page needs quantizers; True when it can go on. Given the model, it
    first calibrates the chosen calibrated methods with their progress shown (views._calibration)."""
    if not sett.methods:
        st.info("Pick one or more quantizers in the sidebar to compare against FP32.", icon=":material/arrow_back:")
        return False
    if key is not None and ck is not None:
        prepare_calibrated(key, sett, ck)
    return True
