"""Calibrated methods on a tiny model: disjoint seeds, the refinement's guarantee, mixed widths under a
budget, the untouched FP32 model, and a packed calibrated model that reloads bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmq.calibrate import (
    CALIBRATION_SEED_BASE,
    BudgetError,
    collect_states,
    measure_sensitivity,
    refine_codebooks,
)
from fmq.calibrate.states import MAX_CALIBRATION_SEED, calibration_noise, calibration_seeds
from fmq.qconfig import CalibConfig, QuantConfig, select_tensors
from fmq.quant import quantize_tensors
from fmq.quant.packing import load_packed, save_packed
from fmq.quantize import quantize_model
from fmq.sampling import MAX_EVAL_SEED, make_noise

FAST = CalibConfig(samples=8, traj_steps=4, steps=30, batch=16, probe=8, widths=(1, 2, 4, 8))


@pytest.fixture
def calib(tiny_model):
    return collect_states(tiny_model, FAST)


def test_calibration_noise_is_never_an_evaluation_noise():
    # torch's CPU generator keeps the low 32 bits of a seed: calibration's must differ there from every
    # evaluation seed (0 <= seed < MAX_EVAL_SEED), which make_noise enforces
    assert CALIBRATION_SEED_BASE >= MAX_EVAL_SEED
    for draw in (0, 1, 12345, MAX_CALIBRATION_SEED - 1):
        assert all(MAX_EVAL_SEED <= s % 2**32 < 2**32 for s in calibration_seeds(draw))
    assert len({s for d in range(50) for s in calibration_seeds(d)}) == 100
    with pytest.raises(ValueError, match="calibration seed"):
        calibration_seeds(MAX_CALIBRATION_SEED)
    with pytest.raises(ValueError, match="seed must lie in"):
        make_noise(2, (1, 4, 4), MAX_EVAL_SEED)
    for seed in (0, 1, 7):  # the calibration stream differs from the evaluation noise of the same seed
        assert not torch.equal(calibration_noise(4, (1, 8, 8), seed), make_noise(4, (1, 8, 8), seed))
    assert torch.equal(calibration_noise(4, (1, 8, 8), 3), calibration_noise(4, (1, 8, 8), 3))


def test_states_are_the_fp32_velocities_of_heun_trajectories(tiny_model, calib):
    assert len(calib) == FAST.samples * 2 * FAST.traj_steps
    assert calib.y is not None and set(calib.y.tolist()) <= set(range(tiny_model.config.num_classes + 1))
    idx = torch.tensor([0, 5, len(calib) - 1])
    x, t, y, v = calib.batch(idx)
    with torch.no_grad():
        assert torch.allclose(tiny_model(x, t, y), v, atol=1e-5)
    assert float(calib.t.min()) == 0.0 and float(calib.t.max()) == 1.0


def test_refinement_never_ends_above_its_starting_loss(tiny_model, calib):
    names, _ = select_tensors(tiny_model, QuantConfig("ot", 2))
    params = tiny_model.state_dict()
    books = dict(zip(names, (cb.with_levels_as(torch.float16) for cb in
                             quantize_tensors([params[n] for n in names], "ot", 2, "channel"))))
    for steps, lr in ((30, 2e-3), (3, 50.0)):  # a sensible run, and one whose huge steps make things worse
        out, log = refine_codebooks(tiny_model, books, calib, steps, batch=16, lr=lr)
        assert log.end_loss <= log.start_loss
        assert len(log.losses) == steps
        for n, cb in out.items():
            assert cb.shape == books[n].shape and cb.num_levels <= 4
            assert (cb.levels[:, 1:] >= cb.levels[:, :-1]).all()  # sorted
            assert torch.equal(cb.levels.half().float(), cb.levels)  # fp16 values, as packed files store
    _, good = refine_codebooks(tiny_model, books, calib, 30, batch=16)
    assert good.end_loss < good.start_loss and not good.kept_start  # it does learn here


def test_the_time_weighting_is_linear_and_the_plain_mean_at_one(tiny_model, calib):
    from fmq.calibrate.refine import velocity_loss
    from fmq.calibrate.states import time_weights

    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert time_weights(t, 1.0).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert time_weights(t, 5.0).tolist() == [5.0, 4.0, 3.0, 1.0]
    names, _ = select_tensors(tiny_model, QuantConfig("ot", 2))
    params = tiny_model.state_dict()
    weights = {n: cb.dequantize() for n, cb in zip(names, quantize_tensors([params[n] for n in names], "ot", 1,
                                                                          "channel"))}
    idx = torch.arange(len(calib))
    x, tt, y, v = calib.batch(idx)
    with torch.no_grad():
        per_state = (torch.func.functional_call(tiny_model, weights, (x, tt, y)) - v).pow(2).mean(dim=(1, 2, 3))
    assert velocity_loss(tiny_model, weights, calib, idx, batch=7) == pytest.approx(float(per_state.mean()), rel=1e-5)
    w = 1 + 3 * (1 - tt)  # early = 4
    assert velocity_loss(tiny_model, weights, calib, idx, batch=7, early=4.0) == \
        pytest.approx(float((per_state * w).sum() / w.sum()), rel=1e-5)
    # refinement keeps its guarantee under the weighted loss it reports
    books = dict(zip(names, (cb.with_levels_as(torch.float16) for cb in
                             quantize_tensors([params[n] for n in names], "ot", 2, "channel"))))
    _, log = refine_codebooks(tiny_model, books, calib, 20, batch=16, early=4.0)
    assert log.end_loss <= log.start_loss
    with pytest.raises(ValueError, match="early"):
        CalibConfig(early=0)


@pytest.mark.parametrize("granularity", ["channel", "tensor", "group:8", "group:7"])
def test_the_dense_weight_path_equals_the_index_path(granularity):
    from fmq.calibrate.refine import _Layer

    torch.manual_seed(0)
    w = torch.randn(6, 5, 3, 3)
    w[2] = 0.25  # a channel of one value: its levels coincide
    for bits in (1, 2, 4):
        (cb,) = quantize_tensors([w], "ot", bits, granularity)
        a, b = _Layer(cb, w, True), _Layer(cb, w, True)
        with torch.no_grad():  # latents moved off the start, so that some weights change level
            for lay in (a, b):
                lay.latent.add_(0.3 * torch.randn(lay.latent.shape, generator=torch.Generator().manual_seed(bits)))
        r = torch.randn(w.shape)
        qa = a.weight()
        # the reference: each latent's nearest-level index (assign), then a lookup, straight-through
        qb = (b.levels[b.gid, b.assign()] + (b.latent - b.latent.detach())).reshape(w.shape)
        assert torch.equal(qa, qb)
        (qa * r).sum().backward()
        (qb * r).sum().backward()
        assert torch.allclose(a.levels.grad, b.levels.grad, atol=1e-5)
        assert torch.equal(a.latent.grad, b.latent.grad)


def test_restarts_keep_the_run_with_the_least_held_out_loss(tiny_model, calib):
    names, _ = select_tensors(tiny_model, QuantConfig("ot", 2))
    params = tiny_model.state_dict()
    books = dict(zip(names, (cb.with_levels_as(torch.float16) for cb in
                             quantize_tensors([params[n] for n in names], "ot", 2, "channel"))))
    one, log1 = refine_codebooks(tiny_model, books, calib, 12, batch=16)
    seen = []
    three, log3 = refine_codebooks(tiny_model, books, calib, 12, batch=16, restarts=3,
                                   progress=lambda d, n, loss: seen.append((d, n)))
    assert len(log3.run_losses) == 3 and len(log3.losses) == 36 and seen[-1] == (36, 36)
    assert log3.run_losses[0] == log1.end_loss  # the first run is the single run, state for state
    assert log3.end_loss == min([log3.start_loss, *log3.run_losses]) <= log1.end_loss
    best = int(np.argmin(log3.run_losses))
    assert len(set(log3.run_losses)) > 1  # other batch orders, other codebooks
    if best == 0:
        assert all(torch.equal(three[n].levels, one[n].levels) for n in names)
    with pytest.raises(ValueError, match="restarts"):
        CalibConfig(restarts=0)


def test_sensitivity_is_zero_where_a_width_codes_a_tensor_exactly(tiny_model, calib):
    names, _ = select_tensors(tiny_model, QuantConfig("ot", 2))
    s = measure_sensitivity(tiny_model, names, calib, (1, 2, 8), "channel", probe=8)
    assert s.err.shape == s.cost.shape == (len(names), 3)
    assert (s.err[:, 0] > 0).all() and (s.cost[:, 0] < s.cost[:, 1]).all()
    assert (s.err[:, 0] >= s.err[:, 1]).mean() > 0.8  # more bits, less error, nearly always


@pytest.mark.parametrize("method", ["ot-cal", "ot-mixed", "ot-mixed-cal", "ot-gptq"])
def test_calibrated_methods_leave_the_model_alone_and_pack_bit_for_bit(tiny_model, calib, method, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cfg = QuantConfig(method, 2.5 if "mixed" in method else 3, calibration=FAST)
    q, rep = quantize_model(tiny_model, cfg, calibration=calib)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert all(p.grad is None for p in tiny_model.parameters())
    if "mixed" not in method:
        assert {r.bits for r in rep.layers} == {3}
    else:
        assert rep.bits_per_weight <= 2.5 and len({r.bits for r in rep.layers}) > 1
    path = save_packed(tiny_model, cfg, tmp_path / "q.safetensors", codebooks=rep.codebooks)
    loaded, cfg2, _ = load_packed(path)
    assert cfg2 == cfg
    for k, v in q.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_mixed_budget_errors_name_the_problem(tiny_model, calib):
    with pytest.raises(BudgetError, match="below the .* bits per weight"):
        quantize_model(tiny_model, QuantConfig("ot-mixed", 1.0, calibration=FAST), calibration=calib)
    with pytest.raises(ValueError, match="budget must lie in"):
        QuantConfig("ot-mixed", 0.5)
    with pytest.raises(ValueError, match="integer"):
        QuantConfig("ot-cal", 1.5)
    with pytest.raises(ValueError, match="needs at least 1 refinement step"):
        QuantConfig("ot-mixed-cal", 2, calibration=CalibConfig(steps=0))
    with pytest.raises(ValueError, match="unknown quantization method 'ot-magic'"):
        QuantConfig("ot-magic", 2)


def test_a_model_that_cannot_be_sampled_is_named(tiny_model):
    class Broken(torch.nn.Module):  # an upload whose layers do not fit its config fails in its forward pass
        config = tiny_model.config

        def forward(self, x, t, y=None):
            raise RuntimeError("shape mismatch in stem")

    with pytest.raises(ValueError, match="cannot be sampled: shape mismatch in stem"):
        quantize_model(Broken(), QuantConfig("ot-mixed", 2, calibration=FAST))


def test_mixed_widths_follow_measured_sensitivity(tiny_model, calib):
    cfg = QuantConfig("ot-mixed", 3, calibration=FAST)
    _, rep = quantize_model(tiny_model, cfg, calibration=calib)
    sens = rep.calibration.sensitivity
    widths = np.array([rep.calibration.widths[n] for n in sens.names])
    per_weight = sens.err[:, 0] / sens.numel  # harm per weight at 1 bit: the cheapest to protect first
    top, bottom = per_weight > np.median(per_weight), per_weight <= np.median(per_weight)
    assert widths[top].mean() >= widths[bottom].mean()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMQ_CACHE", str(tmp_path / "cache"))


def test_cli_quantizes_with_a_fractional_budget_and_sweeps_calibrated_methods(tiny_model, tmp_path, capsys):
    from fmq.checkpoint import save_checkpoint
    from fmq.cli import main
    from fmq.sweep import SweepConfig, iter_sweep

    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors", meta={"dataset": "toy"})
    out = tmp_path / "q.safetensors"
    args = ["quantize", "--checkpoint", str(ckpt), "--method", "ot-mixed-cal", "--bits", "2.5", "--cal-steps", "5",
            "--cal-samples", "8", "--cal-early", "2", "--cal-restarts", "2", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "ot-mixed-cal 2.5 bits/weight" in text and "calibration:" in text and "widths:" in text
    assert "best of 2 runs:" in text  # --cal-restarts 2: each run's held-out loss is said
    _, cfg, _ = load_packed(out)
    c = cfg.calibration
    assert cfg.bits == 2.5 and (c.steps, c.samples, c.early, c.restarts) == (5, 8, 2, 2)
    assert main(["quantize", "--checkpoint", str(ckpt), "--method", "ot", "--bits", "2", "--cal-steps", "5",
                 "--out", str(out)]) == 2  # calibration flags on a plain method
    assert "only apply to calibrated methods" in capsys.readouterr().err
    assert main(["quantize", "--checkpoint", str(ckpt), "--method", "ot-cal", "--bits", "1.5", "--out", str(out)]) == 2
    cfg = SweepConfig(methods=("ot", "ot-mixed"), bits=(2, 2.5), n=4, steps=2, calibration=FAST)
    rows = list(iter_sweep(tiny_model, cfg))
    assert [(r.method, r.bits) for r in rows] == [("ot", 2), ("ot-mixed", 2), ("ot-mixed", 2.5)]
    assert rows[2].bits_per_weight <= 2.5 and rows[2].extra["calibration_seconds"] >= 0


def test_gptq_lowers_each_layers_output_error_on_its_calibration_inputs(tiny_model, calib):
    from fmq.calibrate.gptq import gptq_codebooks, layer_hessians

    names, _ = select_tensors(tiny_model, QuantConfig("ot", 2))
    params = tiny_model.state_dict()
    books = dict(zip(names, (cb.with_levels_as(torch.float16) for cb in
                             quantize_tensors([params[n] for n in names], "ot", 2, "channel"))))
    idx = torch.arange(len(calib))
    new = gptq_codebooks(tiny_model, books, calib, idx)
    hess = layer_hessians(tiny_model, names, calib, idx)
    better = 0
    for n in names:  # output error tr(E H Eᵀ) with E = W − Ŵ: what GPTQ minimises, column by column
        w = params[n].reshape(params[n].shape[0], -1).double()
        err = [((w - cb.dequantize().reshape(w.shape).double()) @ hess[n].double() *
                (w - cb.dequantize().reshape(w.shape).double())).sum() for cb in (books[n], new[n])]
        better += bool(err[1] <= err[0] * 1.0001)
        assert torch.equal(new[n].levels, books[n].levels)  # the grid is kept; only assignments move
    assert better >= 0.9 * len(names)


def test_states_and_sensitivity_come_back_from_the_disk_cache_and_a_bad_file_is_recomputed(tiny_model, tmp_path,
                                                                                            monkeypatch):
    from fmq.calibrate.cache import cached_sensitivity, cached_states, calibration_dir

    monkeypatch.setenv("FMQ_CACHE", str(tmp_path / "cache"))
    cc = CalibConfig(samples=4, traj_steps=2, widths=(1, 2, 4), probe=4)
    names, _ = select_tensors(tiny_model, QuantConfig("ot-mixed", 2.0, calibration=cc))
    first = cached_states(tiny_model, cc)
    again = cached_states(tiny_model, cc)
    assert torch.equal(first.x, again.x) and torch.equal(first.v, again.v) and torch.equal(first.y, again.y)
    s1 = cached_sensitivity(tiny_model, names, first, cc, "channel")
    s2 = cached_sensitivity(tiny_model, names, again, cc, "channel")
    assert s1.seconds > 0 and s2.seconds == 0.0  # the second one was read, not measured
    assert s2.widths == (1, 2, 4) and np.array_equal(s1.err, s2.err) and np.array_equal(s1.cost, s2.cost)
    (path,) = calibration_dir().glob("sensitivity-*")
    path.write_bytes(b"not a file")
    s3 = cached_sensitivity(tiny_model, names, again, cc, "channel")
    assert s3.seconds > 0 and np.array_equal(s1.err, s3.err)
