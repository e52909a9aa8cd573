"""fmq.layerview: which tensors a page offers, slice counts, a slice's values and levels, packed sizes."""

from __future__ import annotations

import pytest
import torch

from fmq.checkpoint import fingerprint
from fmq.layerview import fp32_bytes, layer_table, layer_view, pack, slice_count, start_key, weight_layers
from fmq.models import UNet, count_parameters
from fmq.quant import quantize_tensor
from fmq.quantize import QuantConfig, quantize_model, select_tensors

from .conftest import tiny_config


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(tiny_config(num_classes=3)).eval()


def test_weight_layers_are_the_tensors_the_config_quantizes(model):
    for cfg in (QuantConfig("ot", 2), QuantConfig("ot", 2, scope="all"), QuantConfig("ot", 2, skip=["stem"])):
        names = [n for n, _ in weight_layers(model, cfg)]
        assert names == select_tensors(model, cfg)[0]
    plain = dict(weight_layers(model, QuantConfig("ot", 2)))
    assert "label_emb.weight" not in plain  # an embedding table is not a Conv/Linear weight
    assert all(len(shape) >= 2 for shape in plain.values())


@pytest.mark.parametrize("granularity", ["tensor", "channel", "group:16", "group:7"])
def test_slice_count_is_the_codebooks_number_of_groups(model, granularity):
    for name, shape in weight_layers(model, QuantConfig("ot", 2)):
        w = dict(model.named_parameters())[name].detach()
        assert slice_count(shape, granularity) == quantize_tensor(w, "uniform", 2, granularity).num_groups, name


def test_a_channel_view_holds_that_channels_weights_and_each_methods_levels(model):
    before = fingerprint(model)
    name, shape = next((n, s) for n, s in weight_layers(model, QuantConfig("ot", 2)) if s[0] > 2 and len(s) == 4)
    w = dict(model.named_parameters())[name].detach()
    view = layer_view(model, name, ["ot", "uniform"], 2, "channel", index=1)
    assert view.values.tolist() == w[1].reshape(-1).tolist()
    for m in ("ot", "uniform"):
        assert 1 <= len(view.levels[m]) <= 4 and view.w2[m] >= 0 and view.mse[m] >= 0
    assert view.mse["ot"] <= view.mse["uniform"] + 1e-12  # exact k-means: least MSE of any 4 levels
    with pytest.raises(ValueError, match="slice index"):
        layer_view(model, name, ["ot"], 2, "channel", index=shape[0])
    with pytest.raises(ValueError, match="no parameter"):
        layer_view(model, "nope.weight", ["ot"], 2, "channel")
    assert fingerprint(model) == before


def test_a_calibrated_codebook_is_drawn_beside_plain_ot_at_its_own_width(model):
    """A mixed method's layer may be wider than the sidebar's bits: its starting point is OT at that width."""
    name, _ = next((n, s) for n, s in weight_layers(model, QuantConfig("ot", 2)) if s[0] > 2 and len(s) == 4)
    w = dict(model.named_parameters())[name].detach()
    wide = quantize_tensor(w, "ot", 3, "channel")  # stands for a calibrated codebook at 3 bits on this layer
    view = layer_view(model, name, ["ot", "ot-mixed-cal"], 2, "channel", index=1, books={"ot-mixed-cal": wide},
                      starts=True)
    assert view.bits == {"ot": 2, "ot-mixed-cal": 3, start_key(3): 3}
    assert view.starts == {start_key(3): ["ot-mixed-cal"]}
    assert len(view.levels[start_key(3)]) > len(view.levels["ot"])
    assert view.levels[start_key(3)].tolist() == view.levels["ot-mixed-cal"].tolist()  # the start itself
    same = layer_view(model, name, ["ot", "ot-cal"], 3, "channel", index=1, books={"ot-cal": wide}, starts=True)
    assert same.starts == {} and set(same.levels) == {"ot", "ot-cal"}  # plain ot at 3 bits is already drawn
    assert set(layer_view(model, name, ["ot-mixed-cal"], 2, "channel", books={"ot-mixed-cal": wide}).levels) == \
        {"ot-mixed-cal"}  # no starts unless asked


def test_layer_table_and_packed_sizes(model):
    _, report = quantize_model(model, QuantConfig("uniform", 4))
    rows = layer_table({"uniform": report})
    assert [r["layer"] for r in rows] == [lr.name for lr in report.layers] and rows[0]["index"] == 0
    params = count_parameters(model)
    assert fp32_bytes(model) >= 4 * params  # every float as 4 bytes, plus the header
    row, data = pack(model, QuantConfig("uniform", 4))
    assert row.packed_bytes == len(data) and row.weights == params
    assert row.bits_per_weight == pytest.approx(8 * len(data) / params) and row.ratio == fp32_bytes(model) / len(data)
    assert row.packed_bytes < row.fp32_bytes
