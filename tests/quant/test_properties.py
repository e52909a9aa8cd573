"""Property tests over random shapes, bits, granularities and weight distributions.

What is asserted about ``ot`` and why: within one group, ``ot`` is exact k-means, so it has the least
squared error of any quantizer with that many levels; and every K-level quantizer has W2² >= that
least error / n, which ``ot`` attains, so it also has the least W2 *within a group*. Per tensor that
is the layer's W2; with several groups the pooled W2 of a layer forgets which group a value came from
and another method can beat ``ot`` on it (two groups {0, 1}, {0.5, 1.5} at one level each: ot gives
{0.5, 1}, pooled W2² = 0.125; levels {0.25, 1.25} give 0.0625), so there the test checks the MSE and
the per-group W2.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmq.quant import METHODS, quantize_tensor
from fmq.quant.packing import pack_indices, unpack_indices

OTHERS = [m for m in METHODS if m != "ot"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def weights(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["normal", "t", "laplace", "ints", "constant", "uniform", "sparse"]))
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    x = {"normal": lambda: rng.normal(0, 0.05, n), "t": lambda: rng.standard_t(2, n) * 0.1,
         "laplace": lambda: rng.laplace(0, 0.1, n), "ints": lambda: rng.integers(-2, 3, n) * 0.25,
         "constant": lambda: np.full(n, -0.3), "uniform": lambda: rng.uniform(-1, 1, n),
         "sparse": lambda: rng.normal(0, 1, n) * (rng.random(n) < 0.3)}[kind]()
    return torch.from_numpy(x.astype(np.float32)).reshape(shape)


granularities = st.sampled_from(["tensor", "channel", "group:2", "group:5", "group:32"])


@FAST
@given(w=weights(), bits=st.integers(1, 8), gran=granularities, method=st.sampled_from(list(METHODS)))
def test_codebook_invariants(w, bits, gran, method):
    if method == "pwl" and bits == 1:
        return
    cb = quantize_tensor(w, method, bits, gran)
    assert cb.levels.dtype == torch.float32 and cb.levels.shape[1] <= 2**bits
    assert (cb.levels.diff(dim=1) >= 0).all(), "levels sorted"
    assert int(cb.indices.max()) < cb.num_levels, "indices in range"
    out = cb.dequantize()
    assert out.shape == w.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    gid = cb.group_ids()
    flat = out.reshape(-1)
    for g in torch.unique(gid).tolist():
        assert torch.isin(flat[gid == g], cb.levels[g]).all(), "dequantized values are levels of their group"


def _group_sse(w, q, gid):
    d = (w.double() - q.double()).reshape(-1) ** 2
    return torch.zeros(int(gid.max()) + 1, dtype=torch.float64).index_add_(0, gid, d)


def _group_w2sq(w, q, gid):
    out = []
    for g in torch.unique(gid).tolist():
        a, b = w.reshape(-1)[gid == g].double().sort().values, q.reshape(-1)[gid == g].double().sort().values
        out.append(((a - b) ** 2).mean())
    return torch.stack(out)


@FAST
@given(w=weights(), bits=st.integers(1, 6), gran=granularities)
def test_ot_has_least_mse_and_least_w2_within_each_group(w, bits, gran):
    ot = quantize_tensor(w, "ot", bits, gran)
    q_ot = ot.dequantize()
    gid = ot.group_ids()
    scale = float(w.abs().max()) ** 2 + 1e-30
    sse_ot, w2_ot = _group_sse(w, q_ot, gid), _group_w2sq(w, q_ot, gid)
    for method in OTHERS:
        if method == "pwl" and bits == 1:
            continue
        q = quantize_tensor(w, method, bits, gran).dequantize()
        tol = 1e-6 * scale  # float32 levels: ties between equally good codebooks differ by rounding only
        assert (sse_ot <= _group_sse(w, q, gid) * (1 + 1e-5) + tol).all(), method
        assert (w2_ot <= _group_w2sq(w, q, gid) * (1 + 1e-5) + tol).all(), method


@FAST
@given(w=weights(), bits=st.integers(1, 6))
def test_ot_has_least_layer_w2_per_tensor(w, bits):
    from fmq.metrics import w2_distance

    q_ot = quantize_tensor(w, "ot", bits, "tensor").dequantize()
    w2_ot = w2_distance(w, q_ot)
    scale = float(w.abs().max())
    for method in OTHERS:
        if method == "pwl" and bits == 1:
            continue
        w2 = w2_distance(w, quantize_tensor(w, method, bits, "tensor").dequantize())
        assert w2_ot**2 <= w2**2 * (1 + 1e-5) + 1e-6 * scale**2, method


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_pack_unpack_identity(bits, n, seed):
    idx = torch.from_numpy(np.random.default_rng(seed).integers(0, 2**bits, n).astype(np.uint8))
    packed = pack_indices(idx, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n * bits // 8)
    assert torch.equal(unpack_indices(packed, bits, n), idx)
