import csv

import numpy as np
import torch

from fmq.checkpoint import save_checkpoint
from fmq.classifier import Classifier, ClassifierConfig, save_classifier
from fmq.cli import main
from fmq.models import UNet
from fmq.zoo import sweep_inputs

from .conftest import tiny_config, toy_images


def _npz_with_test_split(path, n=40):
    images, labels = toy_images(n)
    split = (np.arange(n) >= n // 2).astype(np.uint8)  # second half is the test split
    np.savez_compressed(path, images=images, labels=labels, split=split)
    return images, split


def test_sweep_inputs_draw_test_images_and_find_the_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_CHECKPOINT_DIR", str(tmp_path))
    images, split = _npz_with_test_split(tmp_path / "toy.npz")
    cond, uncond = tiny_config(num_classes=2), tiny_config()
    save_classifier(Classifier(ClassifierConfig(image_size=8, num_classes=2, width=4)),
                    tmp_path / "mnist_classifier.safetensors", {"dataset": "mnist"})

    got, clf = sweep_inputs("mnist", cond, tmp_path / "toy.npz", n=8, seed=1)
    assert got.shape == (20, 1, 8, 8)  # max(n, 512) capped by the 20 test images
    test = torch.from_numpy(images[split == 1]).float() / 127.5 - 1
    # every drawn image is one of the test images, each at most once
    match = (got[:, 0, None] - test[None]).abs().flatten(2).amax(-1) < 1e-6  # (20, 20)
    assert match.any(1).all() and match.sum(0).max() == 1
    assert clf is not None
    again, _ = sweep_inputs("mnist", cond, tmp_path / "toy.npz", n=8, seed=1)
    assert torch.equal(got, again)  # same seed, same images: the sweep cache key stays stable

    _, clf = sweep_inputs("mnist", uncond, tmp_path / "toy.npz")
    assert clf is None  # no class asked for, nothing to classify
    no_split = tmp_path / "all_train.npz"
    np.savez_compressed(no_split, images=images, labels=np.zeros(len(images), np.int64),
                        split=np.zeros(len(images), np.uint8))
    every, _ = sweep_inputs("mnist", cond, no_split)
    assert every.shape == (40, 1, 8, 8)  # no test rows: drawn from all of them
    none, _ = sweep_inputs("mnist", cond, tmp_path / "missing.npz")
    assert none is None


def test_cli_sweep_writes_csv_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMQ_CACHE", str(tmp_path / "cache"))
    _npz_with_test_split(tmp_path / "toy.npz")
    torch.manual_seed(0)
    ckpt = save_checkpoint(UNet(tiny_config()), tmp_path / "toy.safetensors", {"dataset": "toy"})
    out = tmp_path / "res" / "toy.csv"
    args = ["sweep", "--dataset", "toy", "--checkpoint", str(ckpt), "--data", str(tmp_path / "toy.npz"),
            "--methods", "ot,uniform", "--bits", "2,8", "--n", "4", "--steps", "2", "--protocol",
            "generation,velocity", "--out", str(out)]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out)))
    assert [(r["protocol"], r["method"], r["bits"]) for r in rows] == [
        (p, m, b) for p in ("generation", "velocity") for m in ("ot", "uniform") for b in ("2", "8")]
    assert all(float(r["latent_var_ratio"]) > 0 for r in rows)  # the test images reached the sweep
    ssim = {(r["protocol"], r["method"], r["bits"]): float(r["ssim"]) for r in rows}
    assert ssim[("generation", "ot", "8")] > ssim[("generation", "ot", "2")]
    for name in ("toy.png", "toy.html", "toy_velocity.png", "toy_velocity.html"):
        assert (out.parent / name).stat().st_size > 0
    assert "8 rows" in capsys.readouterr().out
    # `plot` redraws the same four files from the CSV alone, titled by the rows' own settings
    for name in ("toy.png", "toy.html", "toy_velocity.png", "toy_velocity.html"):
        (out.parent / name).unlink()
    assert main(["plot", str(out)]) == 0
    for name in ("toy.png", "toy.html", "toy_velocity.png", "toy_velocity.html"):
        assert (out.parent / name).stat().st_size > 0
    assert "toy: generation protocol, channel, n=4, heun 2 steps" in (out.parent / "toy.html").read_text()
    assert ("toy: velocity protocol (the paper's: v at t = 0 on the first 4 test images), channel"
            in (out.parent / "toy_velocity.html").read_text())


def test_cli_plot_rejects_what_is_not_a_results_csv(tmp_path, capsys):
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["plot", str(foreign)]) == 2
    assert "not a sweep results CSV" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.csv")]) == 2
    assert "no such results CSV" in capsys.readouterr().err
    assert not (tmp_path / "other.png").exists()
