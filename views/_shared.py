"""What every page uses, under one name (pages ``import views._shared as sh``); each concern has its module:

* :mod:`views._settings`: the sidebar's settings and the words that describe them;
* :mod:`views._models`: which model a page shows (shipped or uploaded), loaded once, only read;
* :mod:`views._cache`: the cached calls into fmq (quantize, sample, score, pack, bound, shipped results);
* :mod:`views._feedback`: running the chosen methods with warnings and a status line;
* :mod:`views._style`: one colour per method;
* :mod:`views._link`: the sidebar's state in the URL (used by app.py).
"""

from __future__ import annotations

from views._cache import (
    BOUND_SAMPLES,
    bound_report,
    fidelity_point,
    fp32_run,
    layer_rows,
    layer_view,
    method_run,
    packed,
    quant_config,
    quantized,
    shipped_results,
    torch_threads,
)
from views._calibration import calibrated
from views._feedback import method_results, need_methods, safe, usable_methods
from views._models import UPLOADS, current_model, model_refs, page_model, shipped_model
from views._settings import BUDGETS, CALIB_EFFORT, SAME_AS_BITS, Settings, bits_text, gran_text, quant_label, settings
from views._style import method_color

__all__ = ["BOUND_SAMPLES", "BUDGETS", "CALIB_EFFORT", "SAME_AS_BITS", "UPLOADS", "Settings", "bits_text", "calibrated",
           "quant_label", "bound_report", "current_model",
           "fidelity_point", "fp32_run", "gran_text", "layer_rows", "layer_view", "method_color", "method_results",
           "method_run", "model_refs", "need_methods", "packed", "page_model", "quant_config", "quantized", "safe",
           "settings", "shipped_model", "shipped_results", "torch_threads", "usable_methods"]
