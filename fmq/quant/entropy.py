"""Entropy coding of codebook indices: asymmetric numeral systems (ANS) from ``constriction``.

A layer's indices are coded with one categorical model, their empirical frequencies, so the coded size
is close to n·H bits, H = -Σ_k p_k log2 p_k the empirical entropy of the indices (an OT codebook's
clusters have unequal masses, so H < b). The model is stored as K 16-bit frequencies f_k (the counts
scaled so the largest is 65535, every used index at least 1); encoder and decoder both build the
model from these integers, so decoding is exact. The coder is constriction's ``AnsCoder`` (Bamler,
"Understanding entropy coding with asymmetric numeral systems (ANS)", 2022): a maintained Rust library
with Python bindings, 32-bit words.
"""

from __future__ import annotations

import numpy as np

__all__ = ["counts", "entropy_bits", "index_entropy", "model_frequencies", "ans_encode", "ans_decode"]


def counts(indices: np.ndarray, num_levels: int) -> np.ndarray:
    """How often each index 0..K-1 occurs, (K,) int64."""
    return np.bincount(np.asarray(indices, dtype=np.int64).reshape(-1), minlength=num_levels)[:num_levels]


def entropy_bits(c: np.ndarray) -> float:
    """Empirical entropy in bits per index of the counts ``c``."""
    c = np.asarray(c, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    p = c[c > 0] / n
    return float(-(p * np.log2(p)).sum())


def index_entropy(codebooks: dict) -> float:
    """Mean empirical entropy of the codebooks' indices in bits per weight, each layer weighted by its size."""
    n = sum(cb.numel for cb in codebooks.values())
    total = sum(entropy_bits(counts(cb.indices.numpy(), cb.num_levels)) * cb.numel for cb in codebooks.values())
    return total / n if n else 0.0


def model_frequencies(c: np.ndarray) -> np.ndarray:
    """The stored model: (K,) uint16 frequencies, 0 exactly where the count is 0."""
    c = np.asarray(c, dtype=np.float64)
    if c.sum() == 0:
        return np.zeros(c.shape, dtype=np.uint16)
    f = np.where(c > 0, np.maximum(1.0, np.rint(c / c.max() * 65535.0)), 0.0)
    return f.astype(np.uint16)


def _model(freqs: np.ndarray):
    import constriction

    f = np.asarray(freqs, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or f.sum() <= 0:
        raise ValueError("the entropy model needs at least one nonzero frequency")
    if f.size == 1:  # one level (a constant or one-weight group): constriction wants two symbols, the 2nd unused
        f = np.append(f, 0.0)
    return constriction.stream.model.Categorical(f / f.sum(), perfect=False)


def ans_encode(indices: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Indices (n,) < K coded with the model ``freqs`` (K,): the coded stream as uint8 bytes."""
    import constriction

    sym = np.asarray(indices, dtype=np.int32).reshape(-1)
    if sym.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if int(sym.max()) >= len(freqs) or (np.asarray(freqs)[np.unique(sym)] == 0).any():
        raise ValueError("an index has no probability under the entropy model")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(sym, _model(freqs))
    return coder.get_compressed().astype("<u4").view(np.uint8)


def ans_decode(data: np.ndarray, freqs: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`ans_encode`: (n,) uint8 indices. Raises ValueError if the stream does not decode
    to exactly ``n`` indices (a truncated or altered stream)."""
    import constriction

    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if n == 0:
        if data.size:
            raise ValueError("an empty layer has coded bytes")
        return np.zeros(0, dtype=np.uint8)
    if data.size % 4:
        raise ValueError(f"a coded stream is a whole number of 32-bit words, got {data.size} bytes")
    coder = constriction.stream.stack.AnsCoder(data.view("<u4").astype(np.uint32))
    try:
        out = coder.decode(_model(freqs), n)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise ValueError(f"the coded indices do not decode ({e})") from e
    if not coder.is_empty():
        raise ValueError(f"the coded indices do not decode to exactly {n} indices (a truncated or altered stream)")
    if out.size != n or int(out.min()) < 0 or int(out.max()) >= len(freqs):
        raise ValueError("the coded indices decode to out-of-range values")
    return out.astype(np.uint8)
