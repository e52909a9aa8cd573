"""ANS coding of indices: known entropies, exact round trips, sizes near n·H, damaged streams refused."""

from __future__ import annotations

import numpy as np
import pytest

from fmq.quant.entropy import ans_decode, ans_encode, counts, entropy_bits, model_frequencies


def test_known_entropies():
    assert entropy_bits(np.array([5, 5])) == pytest.approx(1.0)
    assert entropy_bits(np.array([1, 1, 1, 1, 0, 0])) == pytest.approx(2.0)
    assert entropy_bits(np.array([7, 0, 0])) == 0.0 and entropy_bits(np.zeros(4)) == 0.0
    assert entropy_bits(np.array([1, 3])) == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))
    assert counts(np.array([0, 2, 2, 3], dtype=np.uint8), 4).tolist() == [1, 0, 2, 1]


def test_model_frequencies_are_zero_exactly_where_unused():
    f = model_frequencies(np.array([0, 10**6, 1, 0, 37]))
    assert f.dtype == np.uint16 and f.tolist()[0] == 0 and f[3] == 0 and f[1] == 65535 and f[2] == 1 and f[4] >= 1


@pytest.mark.parametrize("k,p", [(1, [1.0]), (2, [0.9, 0.1]), (4, [0.1, 0.4, 0.4, 0.1]), (256, None),
                                 (16, [1.0] + [0.0] * 15)])
def test_round_trip_and_size_near_entropy(k, p):
    rng = np.random.default_rng(k)
    for n in (1, 2, 1000, 50_000):
        idx = rng.choice(k, size=n, p=p).astype(np.uint8)
        c = counts(idx, k)
        freqs = model_frequencies(c)
        data = ans_encode(idx, freqs)
        assert data.dtype == np.uint8 and data.size % 4 == 0
        assert np.array_equal(ans_decode(data, freqs, n), idx)
        if n == 50_000:  # within 1% of n·H plus the coder's final words
            assert 8 * data.size <= n * entropy_bits(c) * 1.01 + 64


def test_damaged_streams_are_refused():
    rng = np.random.default_rng(0)
    idx = rng.choice(4, size=5000, p=[0.1, 0.4, 0.4, 0.1]).astype(np.uint8)
    freqs = model_frequencies(counts(idx, 4))
    data = ans_encode(idx, freqs)
    for bad in (data[:-4], data[4:], data[:-3], np.concatenate([data, data[:4]])):
        with pytest.raises(ValueError):
            ans_decode(bad, freqs, idx.size)
    with pytest.raises(ValueError, match="no probability"):
        ans_encode(np.array([3], dtype=np.uint8), np.array([1, 1, 1, 0], dtype=np.uint16))
