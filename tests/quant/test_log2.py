"""Power-of-two quantizer (Miyashita et al. 2016) and the paper's log grid."""

from __future__ import annotations

import numpy as np
import torch

from fmq.quant import quantize_tensor


def test_levels_are_zero_and_signed_powers_of_two_below_the_full_scale():
    w = torch.tensor([0.9, -0.3, 0.01, 0.0, 0.2])  # max |w| 0.9 -> e_max = round(log2 0.9) = 0
    cb = quantize_tensor(w.repeat(2), "log2", 3, "tensor")  # sign + 2 exponent bits: 0, ±1, ±1/2, ±1/4
    assert set(cb.levels[0].tolist()) == {-1, -0.5, -0.25, 0, 0.25, 0.5, 1}
    np.testing.assert_allclose(cb.dequantize().numpy()[:5], [1.0, -0.25, 0.0, 0.0, 0.25])
    small = quantize_tensor(w, "log2", 3, "tensor")  # 5 weights: only the used levels are stored
    assert small.num_levels == 5 and torch.equal(small.dequantize(), cb.dequantize()[:5])


def test_one_bit_is_sign_times_full_scale():
    cb = quantize_tensor(torch.tensor([3.0, -0.1, 0.5]), "log2", 1, "tensor")
    np.testing.assert_allclose(cb.levels.numpy(), [[-4, 4]])


def test_at_most_two_to_the_b_minus_one_levels():
    w = torch.randn(4, 300)
    for bits in range(1, 9):
        cb = quantize_tensor(w, "log2", bits, "channel")
        distinct = max(len(torch.unique(cb.levels[g])) for g in range(4))
        assert distinct <= max(2, 2**bits - 1)


def _paper_log(flat: np.ndarray, bits: int) -> np.ndarray:
    """The paper's per-sign log grid, written out separately for the test (not its code)."""
    k = min(2**bits, flat.size)
    out = np.zeros_like(flat)
    pos, neg = flat > 0, flat < 0
    for mask, sign, kk in ((pos, 1.0, k // 2 if neg.any() else k), (neg, -1.0, k // 2)):  # the paper's K // 2
        if not mask.any():
            continue
        mag = np.abs(flat[mask])
        cents = np.array([mag.min()]) if mag.min() == mag.max() else 2.0 ** np.linspace(np.log2(mag.min()),
                                                                                         np.log2(mag.max()), kk)
        out[mask] = sign * cents[np.abs(mag[:, None] - cents[None]).argmin(1)]
    if (flat == 0).any():
        nz = out[flat != 0]
        out[flat == 0] = nz[np.abs(nz).argmin()] if nz.size else 0.0
    return out


def test_log2_paper_matches_its_description():
    rng = np.random.default_rng(2)
    w = rng.standard_t(3, size=(6, 33))
    w[0] = np.abs(w[0])  # one sign only
    w[1, :5] = 0.0
    w[2] = -np.abs(w[2])  # negative only: the paper still gives that side K // 2 levels
    for bits in (1, 2, 4):
        cb = quantize_tensor(torch.from_numpy(w), "log2-paper", bits, "channel")
        for r in range(6):
            np.testing.assert_allclose(cb.dequantize()[r].numpy(), _paper_log(w[r], bits), rtol=2e-6)


def test_log2_paper_gives_a_negative_only_group_half_the_levels():
    """The paper's code gives the negative side K // 2 levels even when there are no positive weights (a
    bug kept for faithfulness); a positive-only group gets all K."""
    w = torch.linspace(0.1, 2.0, 50)
    for bits in (2, 3):
        pos = quantize_tensor(w, "log2-paper", bits, "tensor").dequantize()
        neg = quantize_tensor(-w, "log2-paper", bits, "tensor").dequantize()
        assert len(torch.unique(pos)) == 2**bits and len(torch.unique(neg)) == 2 ** (bits - 1)
        # the negative levels: 2^linspace(log2 0.1, log2 2, K // 2), negated
        want = -(2.0 ** np.linspace(np.log2(0.1), np.log2(2.0), 2 ** (bits - 1)))
        np.testing.assert_allclose(np.sort(torch.unique(neg).numpy()), np.sort(want), rtol=1e-6)
