import math

import pytest
import torch

from fmq.classifier import Classifier, ClassifierConfig
from fmq.metrics import paper_psnr, paper_ssim
from fmq.models import UNet
from fmq.quantize import QuantConfig, quantize_model
from fmq.results import merge_csv, read_results, write_csv
from fmq.sweep import SweepConfig, iter_sweep

from .conftest import tiny_config


@pytest.fixture
def model():
    torch.manual_seed(0)
    return UNet(tiny_config(num_classes=2)).eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_CACHE", str(tmp_path / "cache"))


def test_generation_sweep_rows(model, tmp_path):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real = torch.rand(6, 1, 8, 8) * 2 - 1
    clf = Classifier(ClassifierConfig(image_size=8, num_classes=2, width=4)).eval()
    cfg = SweepConfig(methods=("ot", "uniform"), bits=(1, 8), n=6, steps=3)
    rows = list(iter_sweep(model, cfg, real, clf))
    assert [(r.method, r.bits) for r in rows] == [("ot", 1), ("ot", 8), ("uniform", 1), ("uniform", 8)]
    for r in rows:
        assert -1 <= r.ssim_lo <= r.ssim <= r.ssim_hi <= 1
        assert r.psnr_lo <= r.psnr <= r.psnr_hi
        assert r.packed_bytes > 0 and 0 <= r.class_acc <= 1 and r.latent_var_ratio > 0
        assert r.deviation >= 0 and r.traj_deviation >= 0 and r.w2 >= 0
        # the entropy-coded file is never larger; the indices carry at most their width in information
        assert 0 < r.extra["entropy_bytes"] <= r.packed_bytes and 0 <= r.extra["index_entropy"] <= r.bits
    by = {(r.method, r.bits): r for r in rows}
    # 8 bits is far closer to FP32 than 1 bit, for both methods
    for m in ("ot", "uniform"):
        assert by[(m, 8)].ssim > by[(m, 1)].ssim and by[(m, 8)].deviation < by[(m, 1)].deviation
        assert by[(m, 8)].packed_bytes > by[(m, 1)].packed_bytes
    # the exact OT codebook has the least weight MSE at equal bits
    assert by[("ot", 1)].mse <= by[("uniform", 1)].mse
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the model was not touched


def test_cache_is_reused_and_keyed_by_config(model):
    cfg = SweepConfig(methods=("uniform",), bits=(2,), n=4, steps=2)
    first = list(iter_sweep(model, cfg))[0]
    again = list(iter_sweep(model, cfg))[0]
    assert again.seconds == first.seconds  # read back, not recomputed
    other = list(iter_sweep(model, SweepConfig(methods=("uniform",), bits=(2,), n=4, steps=3)))[0]
    assert other.steps == 3 and other.seconds != first.seconds
    # a sweep of other points reuses the points it shares, whatever else it sweeps
    wider = list(iter_sweep(model, SweepConfig(methods=("uniform", "ot"), bits=(2, 3), n=4, steps=2)))
    assert [(r.method, r.bits) for r in wider] == [("uniform", 2), ("uniform", 3), ("ot", 2), ("ot", 3)]
    assert next(r for r in wider if (r.method, r.bits) == ("uniform", 2)).seconds == first.seconds
    # a calibrated method without a calibration of its own: keyed by the defaults it runs with
    (gptq,) = iter_sweep(model, SweepConfig(methods=("ot-gptq",), bits=(2,), n=4, steps=2))
    assert gptq.method == "ot-gptq" and "skipped" not in gptq.extra and gptq.ssim == gptq.ssim  # measured


def test_velocity_protocol_is_the_papers_formulas_on_the_first_test_images(model):
    real = torch.rand(7, 1, 8, 8) * 2 - 1  # the test split in order, in [-1, 1]
    cfg = SweepConfig(methods=("ot",), bits=(2, 8), n=5, protocol="velocity")
    assert cfg.scope == "all" and SweepConfig().scope == "weights"  # each protocol's own default scope
    r2, r8 = list(iter_sweep(model, cfg, real))
    assert r2.protocol == "velocity" and math.isnan(r2.traj_deviation)
    assert r8.psnr > r2.psnr and r8.deviation < r2.deviation
    # the same numbers by hand: the first n images scaled to [0, 1], raw velocities at t = 0, scope all
    x = (real[:5] + 1) / 2
    q, _ = quantize_model(model, QuantConfig("ot", 2, "channel", "all"))
    with torch.no_grad():
        v, vq = model(x, torch.zeros(5)), q.eval()(x, torch.zeros(5))
    assert r2.ssim == pytest.approx(paper_ssim(v, vq), rel=1e-9) and r2.psnr == pytest.approx(paper_psnr(v, vq))
    assert r2.ssim_lo <= r2.ssim <= r2.ssim_hi and r2.psnr_lo <= r2.psnr <= r2.psnr_hi
    # the paper's latent statistics on all 7 images beside fmq's ratio; FP32's in extra
    for r in (r2, r8):
        assert r.latent_mean_var > 0 and r.latent_std_var >= 0 and r.latent_collapsed >= 0 and r.latent_var_ratio > 0
    assert r8.extra["fp32_latent_mean_var"] > 0
    assert abs(r8.latent_mean_var / r8.extra["fp32_latent_mean_var"] - 1) < abs(r2.latent_mean_var /
                                                                                r2.extra["fp32_latent_mean_var"] - 1)
    with pytest.raises(ValueError, match="test images"):
        list(iter_sweep(model, cfg))
    with pytest.raises(ValueError, match="at least n = 5"):
        list(iter_sweep(model, cfg, real[:3]))


def test_merge_keeps_the_other_protocols_and_methods_rows(model, tmp_path):
    gen = list(iter_sweep(model, SweepConfig(methods=("uniform",), bits=(2,), n=3, steps=2)))
    path = write_csv(gen, tmp_path / "r.csv", dataset="toy")
    old_line = path.read_text().splitlines()[1]
    vel = list(iter_sweep(model, SweepConfig(methods=("uniform",), bits=(2, 3), n=3, protocol="velocity"),
                          torch.rand(4, 1, 8, 8) * 2 - 1))
    assert merge_csv(vel, path, dataset="toy") == 1
    rows = read_results(path)
    assert [(r["protocol"], r["bits"]) for r in rows] == [("generation", 2), ("velocity", 2), ("velocity", 3)]
    assert rows[0]["ssim"] == pytest.approx(gen[0].ssim) and math.isnan(rows[0]["latent_std_var"])
    assert old_line.split(",")[:8] == path.read_text().splitlines()[1].split(",")[:8]
    assert merge_csv(vel[:1], path, dataset="toy") == 2  # sweeping one width again replaces that row only
    assert [(r["protocol"], r["bits"]) for r in read_results(path)] == [("generation", 2), ("velocity", 3),
                                                                         ("velocity", 2)]
    log2 = list(iter_sweep(model, SweepConfig(methods=("log2",), bits=(2,), n=3, steps=2)))
    assert merge_csv(log2, path, dataset="toy") == 3  # another method of a swept protocol: added beside it
    assert [(r["protocol"], r["method"]) for r in read_results(path)] == [
        ("generation", "uniform"), ("velocity", "uniform"), ("velocity", "uniform"), ("generation", "log2")]


def test_bad_config():
    with pytest.raises(ValueError, match="bits"):
        SweepConfig(bits=(0,))
    with pytest.raises(ValueError, match="protocol"):
        SweepConfig(protocol="fid")
    with pytest.raises(ValueError, match="method"):
        SweepConfig(methods=("kmeans++",))


def test_csv_round_trip(model, tmp_path):
    rows = list(iter_sweep(model, SweepConfig(methods=("log2",), bits=(3,), n=3, steps=2)))
    rows[0].extra["bound"] = 1.5
    path = write_csv(rows, tmp_path / "r.csv", dataset="toy")
    back = read_results(path)
    assert back[0]["dataset"] == "toy" and back[0]["method"] == "log2" and back[0]["bits"] == 3
    assert back[0]["ssim"] == pytest.approx(rows[0].ssim) and back[0]["bound"] == 1.5
    assert math.isnan(back[0]["class_acc"])


def test_unsupported_width_gives_a_nan_row(model):
    rows = list(iter_sweep(model, SweepConfig(methods=("pwl",), bits=(1, 2), n=3, steps=2)))
    assert rows[0].bits == 1 and math.isnan(rows[0].ssim) and "skipped" in rows[0].extra
    assert rows[1].bits == 2 and not math.isnan(rows[1].ssim)


def test_a_fractional_budget_is_swept_for_the_mixed_methods_only():
    cfg = SweepConfig(methods=("ot", "ot-mixed"), bits=(1, 1.5, 2))
    assert cfg.points() == [("ot", 1), ("ot", 2), ("ot-mixed", 1), ("ot-mixed", 1.5), ("ot-mixed", 2)]
