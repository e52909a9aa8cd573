"""Granularity objects, group layout, Codebook.dequantize and bit-width checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmq.quant import Codebook, PerChannel, PerGroup, PerTensor, parse_granularity, quantize_tensor
from fmq.quant.codebook import group_batches, group_ids


@pytest.mark.parametrize("text,obj", [("tensor", PerTensor()), ("channel", PerChannel()), ("group:128", PerGroup(128)),
                                      ("channel:1", PerChannel(1))])
def test_granularity_round_trips_through_strings(text, obj):
    assert parse_granularity(text) == obj
    assert parse_granularity(str(obj)) == obj


@pytest.mark.parametrize("bad", ["group", "group:0", "group:x", "rows", "tensor:3", ""])
def test_bad_granularity_is_refused(bad):
    with pytest.raises(ValueError, match="granularity|group size"):
        parse_granularity(bad)


def test_group_ids_per_channel_and_per_group_with_a_short_tail():
    n, ids = group_ids((2, 5), PerGroup(2))  # rows of 5 -> runs 2, 2, 1
    assert n == 6
    np.testing.assert_array_equal(ids, [0, 0, 1, 1, 2, 3, 3, 4, 4, 5])
    n, ids = group_ids((3, 2, 2), PerChannel())
    assert n == 3
    np.testing.assert_array_equal(ids, np.repeat([0, 1, 2], 4))
    n, ids = group_ids((2, 3), PerChannel(1))
    np.testing.assert_array_equal(ids, [0, 1, 2, 0, 1, 2])
    assert group_ids((7,), PerChannel())[0] == 1  # a vector has no channel axis: one group
    assert group_ids((0, 4), PerTensor())[0] == 0


def test_group_batches_cover_every_weight_once():
    n, batches = group_batches((4, 3, 3, 3), PerGroup(8))  # rows of 27 -> 8 8 8 3
    assert n == 16 and sorted(b[1].shape[1] for b in batches) == [3, 8]
    seen = np.concatenate([pos.ravel() for _, pos in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(108))


def test_dequantize_known_answer():
    levels = torch.tensor([[-1.0, 0.0, 1.0, 2.0], [10.0, 20.0, 30.0, 40.0]])
    idx = torch.tensor([[0, 3, 2], [1, 1, 0]], dtype=torch.uint8)
    cb = Codebook(levels, idx, (2, 3), PerChannel(), 2)
    assert torch.equal(cb.dequantize(), torch.tensor([[-1.0, 2.0, 1.0], [20.0, 20.0, 10.0]]))
    assert cb.storage_bits() == 2 * 6 + 16 * 8


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bits_outside_1_to_8_are_refused(bits):
    with pytest.raises(ValueError, match="bits must be an integer in 1..8"):
        quantize_tensor(torch.randn(4, 4), "ot", bits, "tensor")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_are_refused(value):
    w = torch.randn(3, 3)
    w[1, 2] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_tensor(w, "uniform", 4, "channel")


def test_levels_too_large_for_fp16_are_refused():
    cb = quantize_tensor(torch.tensor([1e6, -1.0]), "uniform", 2, "tensor")
    with pytest.raises(ValueError, match="does not fit"):
        cb.with_levels_as(torch.float16)


@pytest.mark.parametrize("method", ["ot", "ot-equal-mass", "uniform", "pwl", "log2", "pwl-paper", "log2-paper"])
@pytest.mark.parametrize("shape", [(), (1,), (0,), (0, 3), (5, 0)])
def test_tiny_and_empty_tensors(method, shape):
    w = torch.full(shape, 0.75)
    cb = quantize_tensor(w, method, 3, "channel")
    out = cb.dequantize()
    assert out.shape == w.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    if method in ("ot", "ot-equal-mass", "uniform", "pwl-paper", "log2-paper"):
        assert torch.equal(out, w)  # one distinct value is represented exactly


@pytest.mark.parametrize("method", ["ot", "ot-equal-mass", "uniform", "pwl", "log2", "pwl-paper", "log2-paper"])
def test_constant_and_zero_tensors_give_no_nan(method):
    for value in (0.0, -2.5):
        w = torch.full((4, 9), value)
        out = quantize_tensor(w, method, 2, "tensor").dequantize()
        assert torch.isfinite(out).all()
        if value == 0.0 or method != "log2":
            assert torch.equal(out, w), method


def test_which_methods_code_a_group_with_few_distinct_values_exactly():
    """What the README says: only `ot` codes every group with no more distinct values than levels exactly;
    `ot-equal-mass` a group with no more weights than levels; the grids need not hit the values."""
    w = torch.tensor([[0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 1.0, 1.0]] * 2)  # 3 distinct values, 8 weights, 2 bits
    assert torch.equal(quantize_tensor(w, "ot", 2, "channel").dequantize(), w)
    for m in ("ot-equal-mass", "uniform", "pwl", "log2", "pwl-paper", "log2-paper"):
        assert not torch.equal(quantize_tensor(w, m, 2, "channel").dequantize(), w), m
    few = torch.tensor([[0.3, -0.2, 0.9]] * 3)  # 9 weights (no skip at 2 bits), 3 per channel
    assert torch.equal(quantize_tensor(few, "ot-equal-mass", 2, "channel").dequantize(), few)
