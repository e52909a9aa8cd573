"""The app's promises beyond drawing: cached FP32 models are never mutated, uploads are validated, the
shipped checkpoints work, pages cope with no checkpoint at all."""

from __future__ import annotations

import pickle

import pytest

from fmq import compare, zoo
from fmq.checkpoint import CheckpointError, fingerprint, load_checkpoint
from views import _models

from .conftest import tiny_checkpoint
from .test_pages import PAGES, figures, goto, values


def test_cached_fp32_models_hash_the_same_after_every_page(make_app, tiny_zoo):
    on_disk = {n: fingerprint(load_checkpoint(tiny_zoo / f"{n}.safetensors").model) for n in ("mnist", "celeba32")}
    for name in on_disk:
        at = make_app(model_id=name, methods=compare.method_names(), bits=2, granularity="group", group_size=16,
                      cal_effort="quick")  # every method, the calibrated ones included
        for page in PAGES:
            goto(at, page)
        ref = zoo.ref_for(tiny_zoo / f"{name}.safetensors", name)
        cached = _models._shipped_model(ref.path, ref.mtime_ns, ref.size)  # the very object every session shares
        assert fingerprint(cached.model) == on_disk[name]


def test_a_rewritten_checkpoint_is_reloaded(make_app, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_CHECKPOINT_DIR", str(tmp_path))
    tiny_checkpoint(tmp_path, "mnist", seed=1)
    at = goto(make_app(model_id="mnist", methods=["uniform"]), "generate")
    before = at.dataframe[0].value["SSIM uniform"].tolist()
    tiny_checkpoint(tmp_path, "mnist", seed=2)  # as the training run does: a new file, a new mtime
    at.run()
    assert at.dataframe[0].value["SSIM uniform"].tolist() != before


def test_upload_a_checkpoint_and_use_it(make_app, tmp_path):
    path = tiny_checkpoint(tmp_path, "cifar10", seed=3)
    at = make_app()
    at.sidebar.file_uploader(key="upload").upload("mine.safetensors", path.read_bytes()).run()
    assert not at.exception and not at.sidebar.error
    assert at.session_state["model_id"].startswith("upload:")
    assert "Uploaded: mine.safetensors" in at.sidebar.selectbox(key="model_id").options
    goto(at, "generate")
    assert len(at.get("image")) == 1 + 2  # FP32 + the default two methods, at 32×32 RGB


@pytest.mark.parametrize("name, data, says", [
    ("pickled.safetensors", pickle.dumps({"a": 1}), "pickle"),
    ("garbage.safetensors", b"\x00" * 64, "not a safetensors file"),
])
def test_a_wrong_upload_gets_a_clear_message_and_the_app_keeps_working(make_app, name, data, says):
    at = make_app(model_id="mnist", methods=["uniform"])
    at.sidebar.file_uploader(key="upload").upload(name, data).run()
    assert not at.exception
    assert any(says in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert at.session_state["model_id"] == "mnist"
    goto(at, "generate")
    assert len(at.get("image")) == 2


def test_upload_messages_name_the_users_file_and_what_it_is(make_app, tmp_path):
    """Bug 1: the message named the server's temporary copy, and a classifier by its format string."""
    from fmq.classifier import Classifier, ClassifierConfig, save_classifier

    clf = save_classifier(Classifier(ClassifierConfig(image_size=28, num_classes=10, width=4)),
                          tmp_path / "clf.safetensors", {"dataset": "mnist"})
    at = make_app(model_id="mnist")
    at.sidebar.file_uploader(key="upload").upload("my_classifier.safetensors", clf.read_bytes()).run()
    (err,) = [e.value for e in at.sidebar.error]
    assert "my_classifier.safetensors is an fmq classifier" in err and "not an image generator" in err
    assert "fmq-classifier/1" not in err and "/tmp" not in err and "tmp" not in err.split("safetensors")[0]
    at.sidebar.file_uploader(key="upload").upload("junk.safetensors", b"\x00" * 64).run()
    (err,) = [e.value for e in at.sidebar.error]
    assert err.startswith("That file can't be used: junk.safetensors is not a safetensors file"), err
    assert "MNIST digits** stays selected" in err


def test_a_bad_upload_after_a_good_one_says_the_good_one_stays(make_app, tmp_path):
    good = tiny_checkpoint(tmp_path, "cifar10", seed=3)
    at = make_app()
    at.sidebar.file_uploader(key="upload").upload("mine.safetensors", good.read_bytes()).run()
    picked = at.session_state["model_id"]
    at.sidebar.file_uploader(key="upload").upload("broken.safetensors", b"\x00" * 64).run()
    assert not at.exception and at.session_state["model_id"] == picked
    (err,) = [e.value for e in at.sidebar.error]
    assert "broken.safetensors" in err and "**Uploaded: mine.safetensors** stays selected" in err


def test_zoo_refuses_other_file_types_and_oversized_uploads(tmp_path):
    """The browser's picker already filters on .safetensors; the library checks again, and the size too."""
    with pytest.raises(CheckpointError, match="only .safetensors"):
        zoo.load_upload(b"\x80\x04K\x01.", "weights.pt")
    data = tiny_checkpoint(tmp_path, "mnist").read_bytes()
    with pytest.raises(CheckpointError, match="limit"):
        zoo.load_upload(data, "big.safetensors", max_bytes=len(data) - 1)
    ck, sha = zoo.load_upload(data, "ok.safetensors")
    assert ck.config.image_size == 28 and len(sha) == 64


def test_no_checkpoints_at_all(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_CHECKPOINT_DIR", str(tmp_path / "empty"))
    at = make_app()
    assert not at.exception and at.sidebar.error
    for page in PAGES[1:]:
        goto(at, page)
        assert at.warning and "No model to show" in at.warning[0].value


SHIPPED = [r.name for r in zoo.shipped()]  # the real checkpoints/ folder, read at collection


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint in checkpoints/ yet")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoints_generate_at_small_n(make_app, monkeypatch, name):
    monkeypatch.delenv("FMQ_CHECKPOINT_DIR")
    at = goto(make_app(model_id=name, methods=["ot", "uniform"], bits=2, n=4, steps=2), "generate")
    assert len(at.get("image")) == 3
    ssim = [float(m.value) for m in at.metric if m.label == "SSIM"]
    assert len(ssim) == 2 and all(-1 <= s <= 1 for s in ssim)
    assert figures(at)[0]["data"][0]["type"] == "heatmap"


def write_results(path, method: str, protocols=("generation",), **settings) -> None:
    """A results CSV in fmq.sweep's columns, one row per bit width, with SSIM = bits / 10 (recognisable)."""
    cols = ["dataset", "method", "bits", "protocol", "granularity", "ssim", "ssim_lo", "ssim_hi", "psnr", "psnr_lo",
            "psnr_hi", "n", "solver", "steps", "seed", "guidance"]
    lines = [",".join(cols)]
    for p in protocols:
        for b in range(1, 9):
            row = {"dataset": "mnist", "method": method, "bits": b, "protocol": p, "granularity": "channel",
                   "ssim": b / 10, "ssim_lo": b / 10 - 0.01, "ssim_hi": b / 10 + 0.01, "psnr": 5.0 * b,
                   "psnr_lo": 5.0 * b - 1, "psnr_hi": 5.0 * b + 1, **settings}
            lines.append(",".join(str(row[c]) for c in cols))
    path.write_text("\n".join(lines) + "\n")


def test_fidelity_shows_shipped_results_and_computes_only_other_settings(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))
    write_results(tmp_path / "mnist.csv", "uniform", n=4, solver="euler", steps=2, seed=0, guidance=1.0)
    at = goto(make_app(model_id="mnist", methods=["uniform"]), "fidelity")
    ssim = figures(at)[0]
    names = [t["name"] for t in ssim["data"]]
    assert "uniform shipped" in names and "uniform live" not in names  # same settings: nothing to compute
    assert at.success and "nothing to compute" in at.success[0].value
    assert set(at.dataframe[0].value["source"]) == {"shipped"}

    at.session_state["steps"] = 3  # another setting: shipped curve at once, live points for this one
    at.run()
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert "uniform shipped" in names and "uniform live" in names
    assert set(at.dataframe[0].value["source"]) == {"shipped", "live"}


def test_fidelity_rows_say_how_they_were_made(make_app, tmp_path, monkeypatch):
    """Bug 2: live rows of the downloadable table had empty dataset, protocol, ..., packed_bytes."""
    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))  # no shipped rows: every row is live
    at = goto(make_app(model_id="mnist", methods=["uniform"], seed=3), "fidelity")
    table = at.dataframe[0].value
    assert set(table["source"]) == {"live"} and len(table) == 8
    made = table[["dataset", "protocol", "granularity", "n", "solver", "steps", "seed", "guidance"]]
    assert made.drop_duplicates().values.tolist() == [["mnist", "generation", "channel", 4, "euler", 2, 3, 1.0]]
    assert (table["bits_per_weight"] > table["bits"]).all()  # codebooks cost extra
    assert (table["packed_bytes"] > 0).all() and table["packed_bytes"].is_monotonic_increasing


def test_dopri5_captions_do_not_count_steps(make_app):
    """Bug 3: the captions read "dopri5 × 8 steps" though dopri5 picks its own steps."""
    at = make_app(model_id="mnist", methods=["uniform"], solver="dopri5")
    for page in ("generate", "trajectories"):
        text = " ".join(c.value for c in goto(at, page).caption)
        assert "dopri5 (adaptive steps)" in text and "dopri5 ×" not in text, page
    assert "adaptive number of evaluations" in at.sidebar.caption[-1].value


def test_theory_with_one_step_draws_points_not_invisible_lines(make_app):
    """Bug 5: one solver step drew two dots and a legend of lines that a single point cannot draw."""
    at = goto(make_app(model_id="mnist", methods=["ot", "uniform"], steps=1, solver="euler"), "theory")
    (fig,) = figures(at)
    assert len(fig["data"]) == 4  # measured and bound for each method
    for t in fig["data"]:
        assert len(values(t["x"])) > 1 or "markers" in t["mode"], (t["name"], t["mode"])
    assert any("one solver step" in c.value for c in at.caption)


def test_weights_offers_exactly_the_tensors_the_config_quantizes(make_app, tiny_zoo):
    """Bug 6: Weights offered (and drew codebooks for) label_emb.weight, which scope 'weights' keeps in FP32."""
    from fmq.quantize import QuantConfig, select_tensors

    model = load_checkpoint(tiny_zoo / "mnist.safetensors").model
    chosen = select_tensors(model, QuantConfig(method="ot", bits=2, granularity="channel"))[0]
    assert "label_emb.weight" in dict(model.named_parameters()) and "label_emb.weight" not in chosen
    at = goto(make_app(model_id="mnist", methods=["ot"], bits=2), "weights")
    assert list(at.selectbox(key="weights_layer").options) == [
        f"{n}  {tuple(model.state_dict()[n].shape)}" for n in chosen]


def test_an_upload_that_says_mnist_is_not_shown_mnists_shipped_results(make_app, tmp_path, monkeypatch):
    """Bug 7: an uploaded model whose metadata said "mnist" got the shipped MNIST curves and paper claims."""
    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))
    write_results(tmp_path / "mnist.csv", "uniform", n=4, solver="euler", steps=2, seed=0, guidance=1.0)
    mine = tiny_checkpoint(tmp_path, "mnist", seed=5)  # its metadata says dataset "mnist"
    at = make_app(methods=["uniform"])
    at.sidebar.file_uploader(key="upload").upload("my_mnist.safetensors", mine.read_bytes()).run()
    goto(at, "fidelity")
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert names == ["uniform live"], names  # no shipped curve, no paper's claims
    table = at.dataframe[0].value
    assert set(table["source"]) == {"live"} and set(table["dataset"]) == {"Uploaded: my_mnist.safetensors"}
    assert any("uploaded model" in c.value for c in at.caption)


def test_fidelity_shows_the_papers_protocol_with_its_claims(make_app, tmp_path, monkeypatch):
    """Generations carry no claim markers (the paper measured none on pictures); the paper's protocol shows the
    shipped velocity rows of the paper's own OT (ot-equal-mass) beside the sidebar's ot, with the claims."""
    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))
    write_results(tmp_path / "mnist.csv", "ot-equal-mass", protocols=("generation", "velocity"), n=4,
                  solver="euler", steps=2, seed=0, guidance=1.0)
    at = goto(make_app(model_id="mnist", methods=["uniform"], steps=2, n=4, solver="euler"), "fidelity")
    assert at.radio(key="fidelity_protocol").value == "generation"
    assert all(t["name"] != "paper's claims" for t in figures(at)[0]["data"])
    assert any("its own protocol" in c.value for c in at.caption)
    at.radio(key="fidelity_protocol").set_value("velocity").run()
    ssim = figures(at)[0]["data"]
    names = [t["name"] for t in ssim]
    assert "ot-equal-mass shipped" in names and "paper's claims" in names and "uniform live" not in names
    claim = next(t for t in ssim if t["name"] == "paper's claims")
    assert 0.8 in claim["y"] and "paper: ot-equal-mass ≈ 0.8" in claim["text"]
    table = at.dataframe[0].value  # the claims beside what the shipped sweep measured there (SSIM 2/10 here)
    row = table[(table["method"] == "ot-equal-mass") & (table["measure"] == "SSIM")].iloc[0]
    assert row["paper"] == "≈ 0.8" and row["measured here"] == pytest.approx(0.2)
    assert any("t = 0" in m.value for m in at.markdown)  # one plain sentence on what this protocol measures
