"""Calibrated methods in the app: calibration runs once with its progress shown, then every page reuses it."""

from __future__ import annotations

from fmq.qconfig import CalibConfig

from .test_pages import figures, goto


def test_calibration_shows_its_progress_once_and_pages_reuse_it(make_app):
    at = goto(make_app(model_id="mnist", methods=["ot", "ot-mixed-cal"], bits=2, cal_effort="quick"), "generate")
    labels = [e.label for e in at.main if type(e).__name__ == "Status"]
    assert any(label.startswith("Calibrated ot-mixed-cal 2 bits/weight in") for label in labels), labels
    md = " ".join(m.value for m in at.markdown)
    assert "ot-mixed-cal · 2 bits/weight" in md and "ot · 2-bit" in md
    # another page with the same settings: no second calibration, the stored model is used
    at = goto(at, "weights")
    assert not [e for e in at.main if type(e).__name__ == "Status" and "alibrat" in e.label]
    hist, _, alloc = figures(at)
    names = [t["name"] for t in hist["data"][1:]]
    assert any(n.startswith("ot-mixed-cal") for n in names) and any(n.startswith("ot (") for n in names)
    table = {r["method"]: r for r in at.dataframe[0].value.to_dict("records")}
    width = table["ot-mixed-cal"]["bits"]  # this layer's width under the budget
    # compared with plain OT at its own width: the sidebar's ot when they agree, else the start drawn dotted
    assert (width == 2) == (f"plain ot, {width}-bit: start of ot-mixed-cal" not in names)
    assert [t["name"] for t in alloc["data"]] == ["ot-mixed-cal"]


def test_the_calibration_effort_keys_only_the_calibrated_methods():
    from views._settings import Settings

    sett = Settings(model_id="mnist", methods=("ot", "ot-mixed-cal"), bits=2, granularity="channel", solver="heun",
                    steps=8, n=16, seed=0, label=None, guidance=1.0, cal=100)
    default = CalibConfig().steps
    assert sett.cal_for("ot") == default != 100  # a plain method's cached results survive an effort change
    assert sett.cal_for("ot-mixed-cal") == 100 and sett.cal_for("ot", "ot-cal") == 100


def test_the_mixed_budget_goes_to_the_mixed_methods_only():
    from views._settings import Settings

    base = dict(model_id="mnist", methods=("ot", "ot-cal", "ot-mixed-cal"), bits=2, granularity="channel",
                solver="heun", steps=8, n=16, seed=0, label=None, guidance=1.0)
    sett = Settings(**base, budget=1.5)
    assert (sett.bits_for("ot"), sett.bits_for("ot-cal"), sett.bits_for("ot-mixed-cal")) == (2, 2, 1.5)
    assert Settings(**base).bits_for("ot-mixed-cal") == 2  # no budget of its own: the bit slider's
    from views import _cache

    # the Weights panel's view stays a cached function (a helper once slid in under its decorator)
    assert hasattr(_cache.layer_view, "clear") and _cache.bits_for("ot-mixed", 2, 1.5) == 1.5
