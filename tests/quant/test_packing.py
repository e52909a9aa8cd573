"""Packed files: exact bit layout, bit-identical weights after loading, parametric stores, real sizes,
clear errors for foreign, old, truncated and altered files."""

from __future__ import annotations

import json

import pytest
import torch

from fmq.checkpoint import CheckpointError, atomic_save_tensors, save_checkpoint
from fmq.quant import METHODS
from fmq.quant.packing import (
    FORMAT,
    load_packed,
    pack_indices,
    packed_size,
    read_packed,
    save_packed,
    unpack_indices,
)
from fmq.quantize import QuantConfig, quantize_model, select_tensors


def test_bit_layout_is_lsb_first():
    assert pack_indices(torch.tensor([1, 2, 3], dtype=torch.uint8), 2).tolist() == [0b111001]
    # 5, 1, 7 = 101, 001, 111 -> bit stream 1 0 1 | 1 0 0 | 1 1 1, least significant bit first
    assert pack_indices(torch.tensor([5, 1, 7], dtype=torch.uint8), 3).tolist() == [0b11001101, 0b1]
    assert unpack_indices(torch.tensor([0b11001101, 0b1], dtype=torch.uint8), 3, 3).tolist() == [5, 1, 7]
    with pytest.raises(ValueError, match="does not fit in 2 bits"):
        pack_indices(torch.tensor([4], dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="need"):
        unpack_indices(torch.zeros(3, dtype=torch.uint8), 3, 20)


@pytest.mark.parametrize("bits", range(1, 9))
def test_unpack_inverts_pack_at_every_width(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (0, 1, 7, 8, 9, 1000):
        idx = torch.randint(0, 2**bits, (n,), generator=g, dtype=torch.int64).to(torch.uint8)
        assert torch.equal(unpack_indices(pack_indices(idx, bits), bits, n), idx)


GRANULARITIES = ("tensor", "channel", "group:16")
# four layers of every kind: a 2-d Linear with rows of 8, 4-d convs with rows of 9 and 288, a 1x1 conv
ROUND_TRIP_LAYERS = ("time_mlp.0", "stem", "up.0.conv1", "mid_attn.qkv")


@pytest.mark.parametrize("method", list(METHODS))
def test_round_trip_every_granularity_and_width(tiny_model, tmp_path, method):
    """Every granularity and width 1..8 (pwl from 2): the file rebuilds exactly the fake-quantized weights,
    with fixed-width (even widths) and entropy-coded (odd widths) indices."""
    state = tiny_model.state_dict()
    modules = {n.rpartition(".")[0] for n in select_tensors(tiny_model, QuantConfig())[0]}
    skip = tuple(sorted(modules - set(ROUND_TRIP_LAYERS)))
    for gran in GRANULARITIES:
        for bits in range(2 if method == "pwl" else 1, 9):
            config = QuantConfig(method, bits, gran, skip=skip)
            qmodel, report = quantize_model(tiny_model, config)
            coding = "ans" if bits % 2 else "fixed"
            path = save_packed(tiny_model, config, tmp_path / "q.safetensors", codebooks=report.codebooks,
                               coding=coding)
            pf = read_packed(path)
            assert pf.quant_config == config and [r.name for r in pf.layers] == [r.name for r in report.layers]
            assert 3 <= len(pf.layers) <= len(ROUND_TRIP_LAYERS)  # the paper's methods skip the layers it skips
            qstate = qmodel.state_dict()
            for layer in pf.layers:
                assert layer.bits == bits
                assert torch.equal(layer.codebook().dequantize(), qstate[layer.name]), (gran, bits, layer.name)
            for name, t in pf.kept.items():
                assert torch.equal(t, state[name]), name


def test_loaded_model_computes_what_the_fake_quantized_model_computes(tiny_model, tmp_path):
    config = QuantConfig("pwl", 5, "channel", scope="all", skip=("stem",))
    qmodel, _ = quantize_model(tiny_model, config)
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


def test_parametric_grids_are_stored_as_parameters(tiny_model, tmp_path):
    """uniform/log2/pwl at 8 bits per channel: a few numbers per channel instead of 256 fp16 levels."""
    expect = {"uniform": "affine", "log2": "pow2", "pwl": "pwl", "ot": "levels"}
    sizes = {}
    for method, store in expect.items():
        config = QuantConfig(method, 8, "channel")
        path = save_packed(tiny_model, config, tmp_path / f"{method}.safetensors")
        pf = read_packed(path)
        for layer in pf.layers:
            # a row shorter than 256 weights points into its full grid too, except pwl's (its breakpoint
            # cannot be read off the levels its few weights use)
            short = layer.numel // layer.shape[0] < 256 if len(layer.shape) > 1 else layer.numel < 256
            assert layer.stored.store == ("levels" if method == "pwl" and short else store), (method, layer.name)
        sizes[method] = path.stat().st_size
    assert max(sizes["uniform"], sizes["log2"], sizes["pwl"]) < sizes["ot"]


def test_mixed_widths_come_from_the_layers(tiny_model, tmp_path):
    """Each layer's width is read from the layer: codebooks of different widths in one file."""
    config = QuantConfig("ot", 4, "channel")
    _, report = quantize_model(tiny_model, config)
    _, report2 = quantize_model(tiny_model, QuantConfig("ot", 2, "channel"))
    books = dict(report.codebooks)
    first = report.layers[0].name
    books[first] = report2.codebooks[first]
    path = save_packed(tiny_model, config, tmp_path / "mixed.safetensors", codebooks=books)
    pf = read_packed(path)
    widths = {layer.name: layer.bits for layer in pf.layers}
    assert widths[first] == 2 and set(widths.values()) == {2, 4}
    for layer in pf.layers:
        assert torch.equal(layer.codebook().dequantize(), books[layer.name].dequantize())


def test_refined_fp16_levels_are_stored_exactly(tiny_model, tmp_path):
    """Codebooks whose levels were moved (calibration refines them) keep exactly their fp16 values."""
    from fmq.quant import Codebook

    config = QuantConfig("uniform", 3, "channel")
    _, report = quantize_model(tiny_model, config)
    books = {}
    for name, cb in report.codebooks.items():
        moved = (cb.levels * 1.01 + 1e-3).to(torch.float16).float()
        books[name] = Codebook(moved, cb.indices, cb.shape, cb.granularity, cb.bits, "ot-cal")
    pf = read_packed(save_packed(tiny_model, config, tmp_path / "r.safetensors", codebooks=books))
    for layer in pf.layers:
        assert layer.stored.store == "levels"
        assert torch.equal(layer.codebook().dequantize(), books[layer.name].dequantize())
    books[name] = Codebook(books[name].levels + 1e-5, cb.indices, cb.shape, cb.granularity, cb.bits, "ot-cal")
    with pytest.raises(ValueError, match="not fp16 values"):
        save_packed(tiny_model, config, tmp_path / "bad.safetensors", codebooks=books)


def test_entropy_coding_shrinks_unequal_masses_and_float16_kept(tiny_model, tmp_path):
    config = QuantConfig("log2", 4, "tensor")  # powers of two: most weights on a few levels
    sizes = {}
    for coding in ("fixed", "ans"):
        for kept in ("float32", "float16"):
            p = save_packed(tiny_model, config, tmp_path / f"{coding}{kept}.safetensors", coding=coding,
                            kept_dtype=kept)
            sizes[coding, kept] = p.stat().st_size
    assert sizes["ans", "float32"] < sizes["fixed", "float32"]
    assert sizes["fixed", "float16"] < sizes["fixed", "float32"]
    pf = read_packed(tmp_path / "ansfloat16.safetensors")
    assert pf.kept_dtype == "float16"
    for name, t in pf.kept.items():
        assert torch.equal(t, tiny_model.state_dict()[name].half().float())
    assert all(0 < layer.entropy < 4 for layer in pf.layers)
    assert any(layer.coding == "ans" and layer.file_bytes < layer.numel * 4 // 8 for layer in pf.layers)


def test_packed_file_is_smaller_in_proportion_to_bits(tiny_model, tmp_path):
    fp32 = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors", sidecar=False).stat().st_size
    sizes = {}
    for bits in (1, 2, 4, 8):
        p = save_packed(tiny_model, QuantConfig("uniform", bits, "tensor"), tmp_path / f"q{bits}.safetensors")
        sizes[bits] = p.stat().st_size
    assert sizes[1] < sizes[2] < sizes[4] < sizes[8] < fp32
    n = sum(r.numel for r in quantize_model(tiny_model, QuantConfig("uniform", 1, "tensor"))[1].layers)
    assert sizes[8] - sizes[4] >= n * 4 // 8 - 64  # four more bits per quantized weight, less header noise


@pytest.fixture
def packed_file(tiny_model, tmp_path):
    return save_packed(tiny_model, QuantConfig("ot", 2, "channel"), tmp_path / "my model.safetensors", coding="ans")


def _rewrite(path, tensors_fn=None, meta_fn=None):
    """Write a copy of a packed file with its tensors or header changed; returns the new path."""
    from fmq.checkpoint import load_tensors

    tensors, metadata = load_tensors(path)
    if tensors_fn:
        tensors_fn(tensors)
    if meta_fn:
        meta_fn(metadata)
    out = path.with_name("edited.safetensors")
    atomic_save_tensors(tensors, out, metadata)
    return out


def test_foreign_old_and_truncated_files_are_refused(tiny_model, tmp_path, packed_file):
    fp32 = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors", sidecar=False)
    with pytest.raises(CheckpointError, match="not a packed fmq model"):
        read_packed(fp32)
    old = _rewrite(packed_file, meta_fn=lambda m: m.update(fmq_format="fmq-packed/1"))
    with pytest.raises(CheckpointError, match="fmq-packed/1.*re-export.*python -m fmq quantize"):
        read_packed(old)
    data = packed_file.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 20):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut.safetensors"):
            read_packed(tmp_path / "cut.safetensors")


def test_altered_bytes_are_caught_by_name(packed_file):
    data = bytearray(packed_file.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    for name in ("indices", "levels", "kept"):
        start = 8 + header_len + header[name]["data_offsets"][0]
        altered = bytearray(data)
        altered[start + 3] ^= 0x10
        out = packed_file.with_name("altered.safetensors")
        out.write_bytes(bytes(altered))
        with pytest.raises(CheckpointError, match=f"altered.safetensors: the '{name}' data is altered"):
            read_packed(out)


def _edit_layers(fn):
    def meta_fn(m):
        table = json.loads(m["layers"])
        fn(table)
        m["layers"] = json.dumps(table)
    return meta_fn


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.update(bits=3), "'time_mlp.0.weight' is corrupt"),
    (lambda t: t.update(bits=9), "bits must be an integer in 1..8"),
    (lambda t: t["shape"].__setitem__(0, [1, 2]), "does not fit the model"),
    (lambda t: t["name"].__setitem__(0, "nope.weight"), "no such tensor"),
    (lambda t: t.update(store="zip"), "unknown store"),
    (lambda t: t.pop("coding"), "columns"),
    (lambda t: t["bytes"].__setitem__(0, t["bytes"][0] + 4), "is corrupt"),
])
def test_altered_header_fields_are_refused(packed_file, edit, match):
    with pytest.raises(CheckpointError, match=match):
        read_packed(_rewrite(packed_file, meta_fn=_edit_layers(edit)))


def test_altered_header_configs_are_refused(packed_file):
    for key, value in (("quant_config", '{"method": "nope"}'), ("model_config", "{"), ("kept_dtype", "int8"),
                       ("checksums", "[]")):
        with pytest.raises(CheckpointError, match="edited.safetensors"):
            read_packed(_rewrite(packed_file, meta_fn=lambda m, k=key, v=value: m.update({k: v})))
    with pytest.raises(CheckpointError, match="holds tensors"):
        read_packed(_rewrite(packed_file, tensors_fn=lambda t: t.pop("params")))
    assert read_packed(packed_file).path.name == "my model.safetensors"


def test_format_version_is_in_the_header(packed_file):
    from fmq.checkpoint import load_tensors

    assert load_tensors(packed_file)[1]["fmq_format"] == FORMAT == "fmq-packed/2"


def test_entropy_coded_files_compress_the_float_tables_losslessly(packed_file):
    from fmq.checkpoint import load_tensors

    tensors, metadata = load_tensors(packed_file)
    assert json.loads(metadata["codecs"]) == {"levels": "xz-shuffle", "kept": "xz-shuffle"}
    assert tensors["levels"].dtype == torch.uint8 and tensors["kept"].dtype == torch.uint8

    def scramble(t):  # valid checksum, bytes that are no xz stream
        t["levels"] = torch.full_like(t["levels"], 7)

    def fix_checksum(m):
        from fmq.quant.packing import _crc

        sums = json.loads(m["checksums"])
        sums["levels"] = _crc(torch.full_like(tensors["levels"], 7))
        m["checksums"] = json.dumps(sums)

    with pytest.raises(CheckpointError, match="'levels' data is corrupt: it does not decompress"):
        read_packed(_rewrite(packed_file, tensors_fn=scramble, meta_fn=fix_checksum))
