"""Packed files: exact bit layout, bit-identical outputs after loading, real sizes, clear errors."""

from __future__ import annotations

import pytest
import torch

from fmq.checkpoint import CheckpointError, save_checkpoint
from fmq.quant.packing import load_packed, pack_indices, packed_size, save_packed, unpack_indices
from fmq.quantize import QuantConfig, quantize_model


def test_bit_layout_is_lsb_first():
    assert pack_indices(torch.tensor([1, 2, 3], dtype=torch.uint8), 2).tolist() == [0b111001]
    # 5, 1, 7 = 101, 001, 111 -> bit stream 1 0 1 | 1 0 0 | 1 1 1, least significant bit first
    assert pack_indices(torch.tensor([5, 1, 7], dtype=torch.uint8), 3).tolist() == [0b11001101, 0b1]
    with pytest.raises(ValueError, match="does not fit in 2 bits"):
        pack_indices(torch.tensor([4], dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="need"):
        unpack_indices(torch.zeros(3, dtype=torch.uint8), 3, 20)


@pytest.mark.parametrize("method,bits,gran", [("ot", 2, "channel"), ("uniform", 3, "group:16"), ("log2", 5, "tensor"),
                                              ("pwl", 6, "channel"), ("ot-equal-mass", 7, "group:32"),
                                              ("pwl-paper", 1, "tensor"), ("log2-paper", 8, "channel")])
def test_loaded_model_equals_fake_quantized_model(tiny_model, tmp_path, method, bits, gran):
    config = QuantConfig(method, bits, gran, scope="all" if bits % 2 else "weights", skip=("stem",))
    qmodel, report = quantize_model(tiny_model, config)
    path = save_packed(tiny_model, config, tmp_path / "q.safetensors", source_meta={"from": "test"})
    model, cfg, meta = load_packed(path)
    assert cfg == config and meta == {"from": "test"}
    for name, t in qmodel.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name
    torch.manual_seed(1)
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(model(x, t, y), qmodel(x, t, y))
    assert packed_size(path) == path.stat().st_size


def test_packed_file_is_smaller_in_proportion_to_bits(tiny_model, tmp_path):
    fp32 = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors", sidecar=False).stat().st_size
    sizes = {}
    for bits in (1, 2, 4, 8):
        p = save_packed(tiny_model, QuantConfig("uniform", bits, "tensor"), tmp_path / f"q{bits}.safetensors")
        sizes[bits] = p.stat().st_size
    assert sizes[1] < sizes[2] < sizes[4] < sizes[8] < fp32
    n = sum(r.numel for r in quantize_model(tiny_model, QuantConfig("uniform", 1, "tensor"))[1].layers)
    assert sizes[8] - sizes[4] >= n * 4 // 8 - 64  # four more bits per quantized weight, less header noise


def test_foreign_and_corrupt_files_are_refused(tiny_model, tmp_path):
    fp32 = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors", sidecar=False)
    with pytest.raises(CheckpointError, match="not a packed fmq model"):
        load_packed(fp32)
    path = save_packed(tiny_model, QuantConfig("ot", 2, "channel"), tmp_path / "q.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_packed(tmp_path / "cut.safetensors")
