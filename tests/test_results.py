"""fmq.results: the row schema round-trips through CSV, and shipped results are matched to settings by
what the rows say, never by a file's name."""

from __future__ import annotations

import csv

import pytest

from fmq.quant import BITS
from fmq.results import (
    COLUMNS,
    PAPER_CLAIMS,
    SweepRow,
    Wanted,
    answers,
    paper_claims,
    read_results,
    results_files,
    shipped_results,
    write_csv,
)


def row(method: str, bits: int, guidance: float = 1.0, steps: int = 20, **kw) -> SweepRow:
    d = dict(method=method, bits=bits, protocol="generation", granularity="channel", ssim=0.5, ssim_lo=0.4,
             ssim_hi=0.6, psnr=20.0, psnr_lo=19.0, psnr_hi=21.0, deviation=1.0, traj_deviation=0.5,
             class_acc=float("nan"), w2=0.01, mse=1e-4, bits_per_weight=bits + 0.1, packed_bytes=1000 * bits,
             latent_var_ratio=1.0, latent_collapsed=0, latent_mean_var=2.0, latent_std_var=1.0, n=64, solver="heun",
             steps=steps, seed=0, guidance=guidance, seconds=1.0)
    d.update(kw)
    return SweepRow(**d)


def sweep(methods=("ot", "uniform"), **kw) -> list[SweepRow]:
    return [row(m, b, **kw) for m in methods for b in BITS]


def test_csv_round_trip_keeps_every_column(tmp_path):
    rows = [row("ot", 2, extra={"fp32_class_acc": 0.9}), row("pwl", 1, ssim=float("nan"))]
    path = write_csv(rows, tmp_path / "r.csv", dataset="toy")
    header = next(csv.reader(open(path)))
    assert header == [*COLUMNS, "fp32_class_acc"]
    back = read_results(path)
    assert back[0]["dataset"] == "toy" and back[0]["bits"] == 2 and back[0]["packed_bytes"] == 2000
    assert back[0]["guidance"] == 1.0 and back[0]["fp32_class_acc"] == 0.9
    assert back[1]["ssim"] != back[1]["ssim"]  # nan survives
    back[0]["ssim"] = -5  # callers get copies: the cached parse is not changed
    assert read_results(path)[0]["ssim"] == 0.5
    with pytest.raises(ValueError, match="no such results CSV"):
        read_results(tmp_path / "missing.csv")


def test_answers_needs_every_point_made_with_the_same_settings(tmp_path):
    rows = read_results(write_csv(sweep(), tmp_path / "r.csv", "toy"))
    want = Wanted(methods=("ot", "uniform"))
    assert answers(rows, want)
    assert not answers(rows, Wanted(methods=("ot", "uniform"), steps=8))
    assert not answers(rows, Wanted(methods=("ot", "log2")))  # log2 is not in the file
    assert not answers(rows, Wanted(methods=("ot",), label=3))  # sweeps use every class in turn
    assert not answers([r for r in rows if r["bits"] != 5], want)  # a missing width
    mixed = read_results(write_csv([row("ot-mixed", b) for b in (1.5, 2, 3)], tmp_path / "m.csv", "toy"))
    assert answers(mixed, Wanted(methods=("ot-mixed",), bits=(2, 3)))
    assert not answers(mixed, Wanted(methods=("ot-mixed",), bits=(1, 2)))  # its 1.5 does not stand in for 1


def test_shipped_results_pick_the_file_whose_rows_match(tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_RESULTS_DIR", str(tmp_path))
    write_csv(sweep(), tmp_path / "cifar10.csv", "cifar10")
    write_csv(sweep(guidance=3.0), tmp_path / "cifar10_guidance3.csv", "cifar10")
    write_csv(sweep(), tmp_path / "fashion_mnist.csv", "fashion_mnist")
    assert [p.name for p in results_files("cifar10")] == ["cifar10.csv", "cifar10_guidance3.csv"]
    assert [p.name for p in results_files("mnist")] == []  # fashion_mnist.csv is not mnist's

    at3 = shipped_results("cifar10", Wanted(methods=("ot", "uniform"), guidance=3.0))
    assert at3.path.name == "cifar10_guidance3.csv" and at3.exact
    assert {r["guidance"] for r in at3.rows} == {3.0}
    assert "cifar10_guidance3.csv: 64 samples, heun × 20 steps, seed 0, guidance 3" in at3.describe()
    at1 = shipped_results("cifar10", Wanted(methods=("ot",), guidance=1.0))
    assert at1.path.name == "cifar10.csv" and at1.exact and {r["method"] for r in at1.rows} == {"ot"}
    # other settings: no exact answer, the file with the same guidance is the reference
    ref = shipped_results("cifar10", Wanted(methods=("ot",), guidance=3.0, steps=8, n=16))
    assert ref.path.name == "cifar10_guidance3.csv" and not ref.exact
    assert shipped_results("cifar10", Wanted(methods=("log2",))) is None
    assert shipped_results("", Wanted(methods=("ot",))) is None  # an upload has no shipped results


def test_paper_claims_are_copies_per_data_set():
    mnist = paper_claims("mnist")
    assert mnist and all(c["dataset"] == "mnist" for c in mnist)
    mnist[0]["value"] = -1
    assert -1 not in [c["value"] for c in PAPER_CLAIMS]
    assert paper_claims("") == [] and len(paper_claims()) == len(PAPER_CLAIMS)
