"""AppTest for every page, on every shipped data set's shape, every method, at 2 and 8 bits: what is drawn."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from fmq import compare
from fmq.methods import method_spec

from .conftest import ROOT, SHAPES

# every plain method and the mixed-precision one without refinement (a few seconds on the tiny models); the
# refined methods take a minute per model here and have tests of their own (test_calibrated_pages.py)
METHODS = [m for m in compare.method_names() if not method_spec(m).refined]
PAGES = ("home", "generate", "weights", "fidelity", "trajectories", "theory", "compression")


# Streamlit's chart frontend replaces these hex colours (its own template's placeholders) with theme colours,
# whatever theme the chart asks for; a trace that names one is drawn in another colour
PLACEHOLDER_COLOUR = re.compile(r"#0000(0[1-9]|1[0-9]|20)\b", re.IGNORECASE)


def figures(at) -> list[dict]:
    """Every plotly figure on the page as its JSON spec (its traces checked to name no placeholder colour)."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    for spec in specs:
        hit = PLACEHOLDER_COLOUR.search(json.dumps(spec["data"]))
        assert hit is None, f"a trace is drawn in {hit.group()}, which Streamlit recolours"
    return specs


def values(v) -> np.ndarray:
    """A trace's x/y/z as numbers: plotly writes numpy arrays as base64 typed arrays {dtype, bdata, shape}."""
    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return arr.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else arr
    return np.array([np.nan if x is None else x for x in np.ravel(v)], dtype=float) if v is not None else np.array([])


def trace_types(fig: dict) -> list[str]:
    return [t.get("type", "scatter") for t in fig["data"]]


def goto(at, page: str):
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def number(text: str) -> float:
    return float(text.split()[0])


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("bits", [2, 8])
def test_generate(make_app, dataset, bits):
    at = goto(make_app(model_id=dataset, methods=METHODS, bits=bits), "generate")
    assert len(at.get("image")) == 1 + len(METHODS)  # FP32 + one grid per method, same noise
    ssim = [number(m.value) for m in at.metric if m.label == "SSIM"]
    psnr = [number(m.value) for m in at.metric if m.label == "PSNR dB"]
    assert len(ssim) == len(psnr) == len(METHODS)
    assert all(-1 <= s <= 1 for s in ssim) and all(0 <= p <= 100 for p in psnr)
    if bits == 8:  # 256 well-placed levels barely move a model (log2 levels are sparse far from 0, by design)
        by_method = dict(zip(METHODS, ssim))
        assert by_method["ot"] > 0.95 and by_method["uniform"] > 0.95, by_method
    (heat,) = figures(at)
    assert trace_types(heat) == ["heatmap"]
    z = values(heat["data"][0]["z"]).astype(float)
    assert np.nanmin(z) >= 0 and np.nanmax(z) <= 2
    table = at.dataframe[0].value
    assert len(table) == 4 and {f"SSIM {m}" for m in METHODS} <= set(table.columns)


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("bits", [2, 8])
def test_weights(make_app, dataset, bits):
    at = goto(make_app(model_id=dataset, methods=METHODS, bits=bits), "weights")
    hist, layers, alloc = figures(at)
    assert trace_types(hist) == ["histogram"] + ["scatter"] * len(METHODS)
    for m, trace in zip(METHODS, hist["data"][1:]):  # each method's levels, drawn as vertical lines
        levels = set(values(trace["x"])[~np.isnan(values(trace["x"]))])
        assert 1 <= len(levels) <= (256 if method_spec(m).mixed else 2**bits)  # mixed: this layer's own width
    mixed = [m for m in METHODS if method_spec(m).mixed]
    assert trace_types(alloc) == ["bar"] * len(mixed)
    for trace in alloc["data"]:  # bits per layer, weighted by weights: the index bits fit the budget
        w, b = values(trace["customdata"]), values(trace["y"])
        assert (b >= 1).all() and (w * b).sum() / w.sum() <= bits
    assert trace_types(layers) == ["scatter"] * len(METHODS)
    assert all((values(t["y"]) >= 0).all() for t in layers["data"])
    rows = at.dataframe[0].value
    assert list(rows["method"]) == METHODS and (rows["W2"] >= 0).all() and (rows["MSE"] >= 0).all()


def test_weights_channel_picker_reruns_only_its_fragment(make_app):
    at = goto(make_app(model_id="mnist", methods=["ot", "uniform"], bits=2), "weights")
    first = figures(at)[0]["layout"]["title"]["text"]
    at.slider(key="weights_slice_channel").set_value(3).run()
    assert not at.exception
    assert "channel 3" in figures(at)[0]["layout"]["title"]["text"] and "channel 0" in first


@pytest.mark.parametrize("dataset", list(SHAPES))
def test_fidelity_live_points_for_every_method_and_bits(make_app, dataset):
    at = goto(make_app(model_id=dataset, methods=METHODS), "fidelity")
    ssim, psnr = figures(at)
    live = {t["name"].removesuffix(" live"): t for t in ssim["data"] if t["name"].endswith(" live")}
    # every plain method from 2 to 8 bits; at 1 bit only the methods defined there (pwl needs a bit for the region);
    # a calibrated method only at the sidebar's bits (each width is a calibration of its own)
    assert set(live) == set(METHODS)
    for m, t in live.items():
        assert set(values(t["x"])) == {2} if method_spec(m).calibrated else set(range(2, 9)) <= set(values(t["x"]))
    assert all(((values(t["y"]) >= -1) & (values(t["y"]) <= 1)).all() for t in live.values())
    assert all(((values(t["y"]) >= 0) & (values(t["y"]) <= 100)).all()
               for t in psnr["data"] if t["name"].endswith(" live"))
    table = at.dataframe[0].value
    assert set(table["bits"]) >= {2, 8} and set(table["method"]) == set(METHODS)
    csv = at.get("download_button")[0]
    assert csv.proto.label == "Download CSV"


def test_fidelity_second_visit_is_cached(make_app):
    at = goto(make_app(model_id="mnist", methods=["uniform"]), "fidelity")
    first = figures(at)[0]["data"]
    at.run()
    assert figures(at)[0]["data"] == first  # the same points, from the cache


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("bits", [2, 8])
def test_trajectories(make_app, dataset, bits):
    at = goto(make_app(model_id=dataset, methods=METHODS, bits=bits), "trajectories")
    assert len(at.get("image")) == 1 + len(METHODS)
    (dev,) = figures(at)
    assert trace_types(dev) == ["scatter"] * len(METHODS)
    for t in dev["data"]:
        x, y = values(t["x"]), values(t["y"])
        assert x[0] == 0 and x[-1] == 1
        assert y[0] == pytest.approx(0, abs=1e-6)  # same noise at t = 0
        assert (y >= 0).all()


@pytest.mark.parametrize("bits", [2, 8])
def test_theory(make_app, bits):
    at = goto(make_app(model_id="cifar10", methods=METHODS, bits=bits), "theory")
    (fig,) = figures(at)
    measured = [t for t in fig["data"] if t["name"].endswith("measured")]
    assert len(measured) == len(METHODS)
    assert at.dataframe[0].value["measured at t=1"].ge(0).all()


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("bits", [2, 8])
def test_compression(make_app, dataset, bits):
    at = goto(make_app(model_id=dataset, methods=METHODS, bits=bits), "compression")
    table = at.dataframe[0].value
    assert list(table["method"]) == METHODS and (table["bits"] == bits).all()
    assert (table["packed bytes"] > 0).all() and (table["ratio"] > 0).all()
    assert (table["bits per weight"] >= bits).all()  # codebooks and FP32 tensors cost extra, never less
    assert (table["entropy-coded bytes"] <= table["packed bytes"]).all()
    assert (table["index entropy"] <= bits).all() and (table["in memory"] < table["FP32 bytes"]).all()
    if bits == 2:
        assert (table["packed bytes"] < table["FP32 bytes"]).all()
        assert (5 * table["in memory"] < table["FP32 bytes"]).all()  # tiny test models: more kept tensors
    (fig,) = figures(at)
    assert trace_types(fig) == ["bar"] * (1 + len(METHODS))  # FP32, then one per method
    assert at.get("download_button")


def test_home_lists_shipped_models(make_app):
    at = make_app()
    assert not at.exception
    assert "Does an image generator survive 2-bit weights?" in at.title[0].value
    assert set(at.sidebar.selectbox(key="model_id").options) >= {"MNIST digits", "Fashion-MNIST"}
    two_bits = len(list((ROOT / "assets" / "two_bits").glob("*.png")))  # FP32 / 2-bit / calibrated, one per set
    assert len(at.get("image")) == len(SHAPES) + two_bits  # one sample grid per shipped model (file, or drawn live)


def test_home_links_open_the_calibrated_comparison_on_the_chosen_model(make_app):
    from urllib.parse import parse_qsl

    from fmq.compare import method_names
    from views import _link

    at = make_app(model_id="fashion_mnist")
    links = {link.proto.label: dict(parse_qsl(link.proto.query_string)) for link in at.get("page_link")}
    two = links["Try it: ot against ot-mixed-cal at 2 bits per weight"]
    lower = links["Lower: ot-mixed-cal at 1.5 bits per weight"]
    assert two["data"] == lower["data"] == "fashion_mnist" and lower["budget"] == "1.5" and "budget" not in two
    models = {m: m for m in SHAPES}
    for params in (two, lower):  # every value is one the link reader takes
        assert _link._parse(params, models, method_names())[1] == []
