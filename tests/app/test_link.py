"""The sidebar's state in the URL: a link opens the app on its settings, a bad value is named, the sidebar is
written back to the URL; CIFAR-10 opens at guidance 3."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from .conftest import APP, FAST
from .test_pages import goto


def open_link(tiny_zoo, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("FMQ_CHECKPOINT_DIR", str(tiny_zoo))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_a_link_opens_on_its_settings(tiny_zoo, monkeypatch):
    at = open_link(tiny_zoo, monkeypatch, data="cifar10", methods="ot,uniform", bits="4", gran="group:32",
                   solver="euler", steps="2", n="4", seed="7", guidance="2")
    assert not at.exception and not at.sidebar.warning
    s = at.session_state
    assert (s["model_id"], s["methods"], s["bits"], s["granularity"], s["group_size"]) == (
        "cifar10", ["ot", "uniform"], 4, "group", 32)
    assert (s["solver"], s["steps"], s["n"], s["seed"], s["guidance"]) == ("euler", 2, 4, 7, 2.0)
    goto(at, "generate")
    assert [m.value for m in at.markdown if "-bit" in m.value] == ["**ot · 4-bit**", "**uniform · 4-bit**"]
    # the sidebar is written back, so a reload or a copied address opens the same settings
    assert dict(at.query_params) == {"data": "cifar10", "methods": "ot,uniform", "bits": "4", "gran": "group:32",
                                     "solver": "euler", "steps": "2", "n": "4", "seed": "7", "class": "any",
                                     "guidance": "2"}


def test_a_changed_setting_goes_into_the_link(make_app):
    at = make_app(model_id="mnist", methods=["uniform"])
    at.sidebar.slider(key="bits").set_value(5).run()
    assert at.query_params["bits"] == "5" and at.query_params["methods"] == "uniform"
    at.sidebar.selectbox(key="solver").set_value("dopri5").run()
    assert at.query_params["solver"] == "dopri5" and "steps" not in at.query_params  # dopri5 picks its steps


def test_a_bad_value_in_a_link_is_named_and_the_default_kept(tiny_zoo, monkeypatch):
    at = open_link(tiny_zoo, monkeypatch, data="imagenet", bits="12", methods="ot,magic", **{k: str(v) for k, v in
                                                                                                FAST.items()})
    assert not at.exception
    (warn,) = [w.value for w in at.sidebar.warning]
    assert "`data=imagenet`" in warn and "`bits=12` (1..8)" in warn and "`methods=ot,magic`" in warn
    assert at.session_state["bits"] == 2 and at.session_state["model_id"] == "mnist"
    at.run()
    assert not at.sidebar.warning  # said once, not on every run


def test_the_calibration_effort_rides_in_the_link(tiny_zoo, monkeypatch):
    at = open_link(tiny_zoo, monkeypatch, methods="ot,ot-mixed-cal", effort="quick")
    assert not at.exception and not at.sidebar.warning
    assert at.session_state["cal_effort"] == "quick" and at.sidebar.selectbox(key="cal_effort").value == "quick"
    assert at.query_params["effort"] == "quick"
    at.sidebar.multiselect(key="methods").set_value(["ot"]).run()
    assert "effort" not in at.query_params  # only said when a calibrated method is chosen
    bad = open_link(tiny_zoo, monkeypatch, methods="ot-cal", effort="forever")
    assert "`effort=forever` (quick, standard, thorough)" in bad.sidebar.warning[0].value
    assert bad.session_state["cal_effort"] == "standard"


def test_a_mixed_budget_between_widths_rides_in_the_link_and_reaches_the_pages(tiny_zoo, monkeypatch):
    at = open_link(tiny_zoo, monkeypatch, data="mnist", methods="ot,ot-mixed", bits="2", budget="1.5", n="4",
                   steps="2")
    assert not at.exception and not at.sidebar.warning
    assert at.session_state["budget"] == 1.5 and at.sidebar.selectbox(key="budget").value == 1.5
    assert at.query_params["budget"] == "1.5"
    at = goto(at, "generate")
    assert not at.exception
    labels = [m.value for m in at.markdown if "-bit" in m.value or "bits/weight" in m.value]
    assert labels == ["**ot · 2-bit**", "**ot-mixed · 1.5 bits/weight**"]  # plain at the slider, mixed at the budget
    at.sidebar.selectbox(key="budget").set_value("same as bits").run()
    assert "budget" not in at.query_params  # said only when it is not the slider's
    at.sidebar.multiselect(key="methods").set_value(["ot"]).run()
    assert not at.sidebar.get("selectbox") or "budget" not in [b.key for b in at.sidebar.selectbox]
    bad = open_link(tiny_zoo, monkeypatch, methods="ot-mixed", budget="0.3")
    assert "`budget=0.3`" in bad.sidebar.warning[0].value and bad.session_state["budget"] == "same as bits"


def test_cifar10_opens_at_guidance_3_and_the_link_can_say_otherwise(make_app, tiny_zoo, monkeypatch):
    at = make_app(model_id="mnist")
    assert at.session_state["guidance"] == 1.0
    at.sidebar.selectbox(key="model_id").set_value("cifar10").run()
    assert at.session_state["guidance"] == 3.0 and at.sidebar.slider(key="guidance").value == 3.0
    at.sidebar.slider(key="guidance").set_value(1.5).run()
    assert at.session_state["guidance"] == 1.5  # a choice made on this model stays
    at = open_link(tiny_zoo, monkeypatch, data="cifar10", guidance="1")
    assert at.session_state["guidance"] == 1.0


def test_cifar10_fidelity_uses_the_guidance_3_results_and_names_the_file(make_app, tmp_path, monkeypatch):
    from .test_app_state import write_results

    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))
    made = dict(n=4, solver="euler", steps=2, seed=0)
    write_results(tmp_path / "cifar10.csv", "uniform", guidance=1.0, **made)
    write_results(tmp_path / "cifar10_guidance3.csv", "uniform", guidance=3.0, **made)
    at = goto(make_app(model_id="cifar10", methods=["uniform"]), "fidelity")
    assert at.session_state["guidance"] == 3.0
    assert at.success and "cifar10_guidance3.csv was made with these very settings" in at.success[0].value
    assert set(at.dataframe[0].value["guidance"]) == {3.0}
    at.sidebar.slider(key="guidance").set_value(1.0).run()
    assert "cifar10.csv was made with these very settings" in at.success[0].value


def test_a_stale_address_on_a_rerun_does_not_undo_a_moved_widget(make_app):
    """The browser sends its address with every rerun; one the app has just rewritten may not have reached
    it yet. Reading it then reset the slider just moved (found by the browser test)."""
    at = make_app(model_id="mnist", methods=["uniform"])
    at.query_params["bits"] = "2"  # what the browser still shows
    at.sidebar.slider(key="bits").set_value(5).run()
    assert at.session_state["bits"] == 5 and at.query_params["bits"] == "5"
