"""fmq.compare: scores with known answers, rows that say how they were made, evenly spaced snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmq.checkpoint import fingerprint
from fmq.compare import Run, compare, even_snapshots, result_row, score
from fmq.metrics import PSNR_CAP
from fmq.models import UNet
from fmq.quantize import QuantConfig
from fmq.results import COLUMNS
from fmq.sampling import make_noise

from .conftest import tiny_config


def run_of(images: torch.Tensor, times=(0.0, 1.0)) -> Run:
    traj = torch.stack([torch.zeros_like(images)] * (len(times) - 1) + [images])
    return Run(images, list(times), traj, nfe=1, seconds=0.0)


def test_a_run_scored_against_itself_is_identical():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    sc = score(run_of(x), run_of(x.clone()))
    assert np.allclose(sc.ssim, 1.0) and np.all(sc.psnr == PSNR_CAP)
    assert np.all(sc.absdiff == 0) and np.all(sc.deviation == 0)


def test_a_constant_shift_has_the_closed_form_scores():
    ref = torch.zeros(2, 3, 8, 8)
    test = ref + 0.1  # every pixel off by 0.1 on the [-1, 1] scale (data range 2)
    sc = score(run_of(ref), run_of(test))
    assert sc.psnr == pytest.approx([10 * math.log10(2.0**2 / 0.1**2)] * 2, abs=1e-4)  # 26.02 dB
    assert np.allclose(sc.absdiff, 0.1, atol=1e-6) and sc.absdiff.shape == (2, 8, 8)
    assert sc.deviation[-1] == pytest.approx(0.1 * math.sqrt(3 * 8 * 8), rel=1e-5)
    assert sc.deviation[0] == 0  # both trajectories start from the same state


def test_runs_that_do_not_match_are_refused():
    a = run_of(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="not comparable"):
        score(a, run_of(torch.zeros(3, 1, 4, 4)))
    with pytest.raises(ValueError, match="not comparable"):
        score(a, run_of(torch.zeros(2, 1, 4, 4), times=(0.0, 0.5, 1.0)))


def test_compare_scores_each_config_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = UNet(tiny_config()).eval()
    before = fingerprint(model)
    noise = make_noise(4, (1, 8, 8), seed=3)
    res = compare(model, [QuantConfig("uniform", 8, "channel"), QuantConfig("uniform", 1, "tensor")], noise,
                  solver="euler", steps=3, seed=3)
    assert fingerprint(model) == before
    assert res.fp32.times == [0.0, 1 / 3, 2 / 3, 1.0] and res.fp32.nfe == 3
    hi, lo = (m.scores.summary() for m in res.methods)
    assert hi["ssim"] > lo["ssim"] and hi["deviation"] < lo["deviation"]  # 256 levels beat 2

    row = result_row(res.methods[0], dataset="toy", packed_bytes=1234)
    assert set(row) == set(COLUMNS)  # every column of a results CSV, nothing else
    assert {k: row[k] for k in ("dataset", "method", "bits", "protocol", "granularity", "n", "solver", "steps",
                                "seed", "guidance", "packed_bytes")} == {
        "dataset": "toy", "method": "uniform", "bits": 8, "protocol": "generation", "granularity": "channel",
        "n": 4, "solver": "euler", "steps": 3, "seed": 3, "guidance": 1.0, "packed_bytes": 1234}
    assert row["bits_per_weight"] > 8 and row["ssim"] == hi["ssim"]


@pytest.mark.parametrize("n_times, want", [
    (2, [0, 1]),  # one step
    (5, [0, 1, 2, 3, 4]),  # four steps: every time
    (9, [0, 2, 4, 6, 8]),  # eight steps: 0, 0.25, 0.5, 0.75, 1
    (21, [0, 4, 8, 12, 16, 20]),  # twenty: 0.2 apart
    (11, [0, 2, 4, 6, 8, 10]),  # dopri5's eleven saved times
    (12, [0, 2, 4, 7, 9, 11]),  # eleven steps, prime: rounded
])
def test_even_snapshots(n_times, want):
    got = even_snapshots(n_times)
    assert got == want
    if n_times - 1 in (8, 20, 10):
        assert len(set(np.diff(got))) == 1
