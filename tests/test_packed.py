"""The packed runtime computes exactly what the fake-quantized model computes, holding far fewer bytes."""

from __future__ import annotations

import pytest
import torch

from fmq.packed import packed_layers, packed_model, resident_weight_bytes
from fmq.quant.packing import save_packed
from fmq.quantize import QuantConfig, quantize_model, select_tensors
from fmq.sampling import make_noise, sample


@pytest.mark.parametrize("config,coding,kept", [
    (QuantConfig("ot", 2, "channel"), "fixed", "float32"),
    (QuantConfig("uniform", 8, "group:16"), "ans", "float32"),
    (QuantConfig("log2", 3, "tensor", scope="all"), "ans", "float16"),  # norms, biases, embeddings too
    (QuantConfig("pwl", 5, "channel", skip=("stem",)), "fixed", "float16"),
])
def test_packed_runtime_equals_fake_quantized_bit_for_bit(tiny_model, tmp_path, config, coding, kept):
    qmodel, report = quantize_model(tiny_model, config)
    if kept == "float16":  # the file keeps fp16 copies of the unquantized tensors: compare like with like
        _, kept_names = select_tensors(qmodel, config)
        with torch.no_grad():
            for name in kept_names:
                t = qmodel.state_dict()[name]
                t.copy_(t.half().float())
    path = save_packed(tiny_model, config, tmp_path / "q.safetensors", codebooks=report.codebooks, coding=coding,
                       kept_dtype=kept)
    model = packed_model(path)
    assert {layer.name for layer in packed_layers(model)} == {r.name for r in report.layers}
    torch.manual_seed(1)
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 1, 3])
    with torch.no_grad():
        assert torch.equal(model(x, t, y), qmodel(x, t, y))
    noise = make_noise(4, (1, 8, 8), seed=3)
    a = sample(model, noise, "heun", 3, y=torch.tensor([0, 1, 2, 0])).images
    b = sample(qmodel, noise, "heun", 3, y=torch.tensor([0, 1, 2, 0])).images
    assert torch.equal(a, b)
    # between calls no quantized weight is held: only placeholders, packed indices and stored levels
    for layer in packed_layers(model):
        module_name, _, attr = layer.name.rpartition(".")
        assert getattr(model.get_submodule(module_name), attr).numel() == 0
    assert resident_weight_bytes(model) < resident_weight_bytes(qmodel)


def test_resident_bytes_at_two_bits(tiny_model, tmp_path):
    config = QuantConfig("ot", 2, "tensor")
    model = packed_model(save_packed(tiny_model, config, tmp_path / "q.safetensors"))
    chosen, kept = select_tensors(tiny_model, config)
    state = tiny_model.state_dict()
    n_q = sum(state[n].numel() for n in chosen)
    n_kept = sum(state[n].numel() for n in kept)
    levels = sum(layer.stored.levels.numel() * 4 for layer in packed_layers(model))
    # indices at 2 bits (each layer rounded up to whole bytes), level tables (at most float32), kept tensors in fp32
    assert resident_weight_bytes(model) <= n_q // 4 + len(chosen) + levels + 4 * n_kept
    assert resident_weight_bytes(model) >= n_q // 4 + 4 * n_kept
    assert resident_weight_bytes(tiny_model) == 4 * (n_q + n_kept)
