"""quantize_model: configs, scope and skip lists, the untouched original, the report, the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from fmq.checkpoint import save_checkpoint
from fmq.cli import main
from fmq.metrics import w2_distance
from fmq.quantize import QuantConfig, quantize_model, select_tensors


def test_config_round_trips_to_json_and_validates():
    c = QuantConfig("pwl", 3, "group:64", "all", ("stem", "out_*"))
    assert QuantConfig.from_json(c.to_json()) == c
    assert QuantConfig(granularity="CHANNEL").granularity == "channel"
    for bad in (dict(method="kmeans"), dict(bits=0), dict(bits=9), dict(granularity="group:0"), dict(scope="some")):
        with pytest.raises(ValueError):
            QuantConfig(**bad)
    with pytest.raises(ValueError, match="unknown quant config fields"):
        QuantConfig.from_dict({"method": "ot", "colour": 1})


def test_original_model_is_untouched(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    new, _ = quantize_model(tiny_model, QuantConfig("ot", 2, "channel", "all"))
    assert new is not tiny_model
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])
    assert any(not torch.equal(v, before[k]) for k, v in new.state_dict().items())


def test_scope_and_skip(tiny_model):
    chosen, kept = select_tensors(tiny_model, QuantConfig(scope="weights"))
    assert chosen and all(n.endswith(".weight") for n in chosen)
    assert "label_emb.weight" in kept and not any("norm" in n for n in chosen)
    assert any(n.endswith(".bias") for n in kept)
    every, none_kept = select_tensors(tiny_model, QuantConfig(scope="all"))
    assert not none_kept and len(every) == len(tiny_model.state_dict())
    skipped, _ = select_tensors(tiny_model, QuantConfig(scope="weights", skip=("stem", "down.*", "time_mlp.0.weight")))
    assert not any(n.startswith(("stem.", "down.")) or n == "time_mlp.0.weight" for n in skipped)
    assert "time_mlp.2.weight" in skipped


def test_report_fields_are_measured_values(tiny_model):
    new, report = quantize_model(tiny_model, QuantConfig("uniform", 3, "channel"))
    orig, quant = tiny_model.state_dict(), new.state_dict()
    assert len(report.layers) == len(select_tensors(tiny_model, report.config)[0])
    for r in report.layers:
        w, q = orig[r.name], quant[r.name]
        assert r.numel == w.numel() and r.shape == tuple(w.shape) and r.method == "uniform" and r.bits == 3
        assert r.mse == pytest.approx(((w.double() - q.double()) ** 2).mean().item(), rel=1e-9)
        assert r.w2 == pytest.approx(w2_distance(w, q), rel=1e-9)
        assert r.w2 <= math.sqrt(r.mse) * (1 + 1e-9)
        # a full uniform grid is stored as lo and step (two fp32 numbers) per channel, a partial one as fp16 levels
        per_group = 64 if r.levels == 8 else 16 * r.levels
        assert r.levels <= 8 and r.bits_per_weight == pytest.approx(3 + per_group * w.shape[0] / w.numel())
    assert 3 < report.bits_per_weight < report.model_bits_per_weight < 32
    d = report.to_dict()
    assert d["summary"]["numel"] == report.numel and "codebooks" not in d


def test_nan_weight_is_named_in_the_error(tiny_model):
    with torch.no_grad():
        tiny_model.down[0].conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'down\.0\.conv1\.weight'.*NaN or Inf"):
        quantize_model(tiny_model, QuantConfig("ot", 2))


def test_cli_quantize_prints_the_compression_ratio(tiny_model, tmp_path, capsys):
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors", meta={"dataset": "toy"})
    out = tmp_path / "q.safetensors"
    assert main(["quantize", "--checkpoint", str(ckpt), "--method", "ot", "--bits", "2", "--granularity", "channel",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    ratio = ckpt.stat().st_size / out.stat().st_size
    assert f"compression {ratio:.2f}x" in text and f"{out.stat().st_size:,} bytes" in text
    assert main(["quantize", "--checkpoint", str(ckpt), "--bits", "9", "--out", str(out)]) == 2


@pytest.mark.parametrize("method", ["ot-equal-mass", "pwl-paper", "log2-paper"])
def test_papers_quantizers_leave_tensors_smaller_than_the_codebook_untouched(tiny_model, method):
    """The paper's PC-*-Quant.py return a tensor with fewer than 2**bits elements as it is: kept in FP32."""
    sd = tiny_model.state_dict()
    new, report = quantize_model(tiny_model, QuantConfig(method, 8, "channel", "all"))
    small = {n for n, t in sd.items() if t.is_floating_point() and t.numel() < 256}
    assert small and small <= set(report.kept)
    assert not small & {r.name for r in report.layers}
    for n in small:
        assert torch.equal(new.state_dict()[n], sd[n]), n  # bit for bit, not even fp16-rounded
    assert any(r.numel >= 256 for r in report.layers)
    _, uni = quantize_model(tiny_model, QuantConfig("uniform", 8, "channel", "all"))  # no such rule
    assert small <= {r.name for r in uni.layers}
    # the pure quantizer codes such a tensor exactly: 4 weights at 3 bits (the old pwl-paper missed by 0.035)
    from fmq.quant import quantize_tensor

    w = torch.tensor([0.1, -0.7, 0.25, 0.3])
    assert torch.equal(quantize_tensor(w, method, 3, "tensor").dequantize(), w)
    assert not torch.equal(quantize_tensor(w, "uniform", 3, "tensor").dequantize(), w)


def test_the_skip_rule_covers_exactly_the_registrys_paper_methods():
    from fmq.methods import METHODS as SPECS
    from fmq.quant import PAPER_SKIPS_SMALL

    assert PAPER_SKIPS_SMALL == {n for n, s in SPECS.items() if s.paper}
