import math

import numpy as np
import pytest
import torch

from fmq.classifier import Classifier, ClassifierConfig
from fmq.models import UNet
from fmq.results import read_results, write_csv
from fmq.sweep import SweepConfig, iter_sweep, latent_variances

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


def test_velocity_protocol(model):
    real = torch.rand(5, 1, 8, 8) * 2 - 1
    cfg = SweepConfig(methods=("ot",), bits=(2, 8), n=5, protocol="velocity")
    r2, r8 = list(iter_sweep(model, cfg, real))
    assert r2.protocol == "velocity" and math.isnan(r2.traj_deviation)
    assert r8.psnr > r2.psnr and r8.deviation < r2.deviation
    with pytest.raises(ValueError, match="test images"):
        list(iter_sweep(model, cfg))


def test_bad_config():
    with pytest.raises(ValueError, match="bits"):
        SweepConfig(bits=(0,))
    with pytest.raises(ValueError, match="protocol"):
        SweepConfig(protocol="fid")
    with pytest.raises(ValueError, match="method"):
        SweepConfig(methods=("kmeans++",))


def test_latent_variances_known_answer():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))[0][:3]
    var = latent_variances(z @ rot, k=5)
    np.testing.assert_allclose(var[:3], [9.0, 4.0, 0.25], rtol=0.08)
    assert var[3] < 1e-20


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
