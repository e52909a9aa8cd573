"""The shared result type of every quantizer, and how a weight tensor is cut into groups.

A quantizer maps a weight tensor ``w`` to a :class:`Codebook`: for each group g a sorted list of
levels ``levels[g]`` (G, K) and for each weight an index into its group's levels, so that

    dequantize()[p] = levels[group(p), indices[p]].

Granularity says what a group is:

* :class:`PerTensor` — the whole tensor is one group (G = 1).
* :class:`PerChannel` — one group per slice along ``axis`` (0 = output channel of Conv/Linear weights).
  A tensor with fewer than two dimensions (a bias, a norm scale) has no channel axis and is one group,
  as in the paper's code.
* :class:`PerGroup` — the weights of one output channel (row-major, i.e. input channel then kernel
  position) cut into runs of ``size`` consecutive weights; when ``size`` does not divide the row the
  last run of each row is shorter. A 0-d/1-d tensor is cut the same way as a single row.

Levels are sorted ascending (non-strictly). Every group has the same number of slots K <= 2**bits; a
group that needs fewer distinct levels (a constant channel, a short tail group) repeats a level, and
the repeated slots cost the same storage as the others (K fp16 numbers per group are stored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "BITS",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "Granularity",
    "parse_granularity",
    "Codebook",
    "group_ids",
    "group_batches",
    "check_bits",
]


@dataclass(frozen=True)
class PerTensor:
    def __str__(self) -> str:
        return "tensor"


@dataclass(frozen=True)
class PerChannel:
    axis: int = 0  # the channel axis; 0 is the output channel of Conv2d and Linear weights

    def __str__(self) -> str:
        return "channel" if self.axis == 0 else f"channel:{self.axis}"


@dataclass(frozen=True)
class PerGroup:
    size: int = 128  # consecutive input weights per group

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"group size must be a positive integer, got {self.size!r}")

    def __str__(self) -> str:
        return f"group:{self.size}"


Granularity = PerTensor | PerChannel | PerGroup


def parse_granularity(g: str | Granularity) -> Granularity:
    """``"tensor"`` | ``"channel"`` | ``"channel:AXIS"`` | ``"group:G"`` (or an object, returned as is)."""
    if isinstance(g, PerTensor | PerChannel | PerGroup):
        return g
    s = str(g).strip().lower()
    head, _, arg = s.partition(":")
    try:
        if head == "tensor" and not arg:
            return PerTensor()
        if head == "channel":
            return PerChannel(int(arg) if arg else 0)
        if head == "group" and arg:
            return PerGroup(int(arg))
    except ValueError as e:
        raise ValueError(f"bad granularity {g!r}: {e}") from None
    raise ValueError(f"granularity must be 'tensor', 'channel' or 'group:G' (e.g. 'group:128'), got {g!r}")


BITS: tuple[int, ...] = tuple(range(1, 9))  # the bit widths every quantizer, page and sweep accepts


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or int(bits) not in BITS:
        raise ValueError(f"bits must be an integer in {BITS[0]}..{BITS[-1]}, got {bits!r}")
    return int(bits)


@lru_cache(maxsize=256)
def _group_ids_cached(shape: tuple[int, ...], gran: Granularity) -> tuple[int, np.ndarray]:
    numel = math.prod(shape)
    flat = np.arange(numel, dtype=np.int64)
    if numel == 0:
        return 0, flat
    if isinstance(gran, PerTensor):
        return 1, np.zeros(numel, dtype=np.int64)
    if isinstance(gran, PerChannel):
        if len(shape) < 2:
            return 1, np.zeros(numel, dtype=np.int64)
        if not -len(shape) <= gran.axis < len(shape):
            raise ValueError(f"channel axis {gran.axis} out of range for a tensor of shape {shape}")
        axis = gran.axis % len(shape)
        inner = math.prod(shape[axis + 1:])
        return shape[axis], (flat // inner) % shape[axis]
    row_len = numel // shape[0] if len(shape) >= 2 else numel
    per_row = -(-row_len // gran.size)
    return (numel // row_len) * per_row, (flat // row_len) * per_row + (flat % row_len) // gran.size


def group_ids(shape: tuple[int, ...], gran: Granularity) -> tuple[int, np.ndarray]:
    """(number of groups G, group index of every weight in row-major order, (numel,) int64, read-only).

    An empty tensor has no groups.
    """
    n, ids = _group_ids_cached(tuple(int(s) for s in shape), gran)
    ids.setflags(write=False)
    return n, ids


def group_batches(shape: tuple[int, ...], gran: Granularity) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Groups sorted into dense batches of equal length, so a quantizer works on (B, L) matrices.

    Returns G and a list of (group numbers (B,), flat positions (B, L)) — at most two entries for
    :class:`PerGroup` (full runs and the shorter tail runs), one otherwise.
    """
    n_groups, ids = group_ids(shape, gran)
    if ids.size == 0:
        return n_groups, []
    order = np.argsort(ids, kind="stable")
    sizes = np.bincount(ids, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = []
    for length in np.unique(sizes[sizes > 0]):
        groups = np.flatnonzero(sizes == length)
        out.append((groups, order[starts[groups][:, None] + np.arange(length)]))
    return n_groups, out


@dataclass(frozen=True, eq=False)
class Codebook:
    """Levels per group and an index per weight. ``dequantize()`` rebuilds a float32 tensor of ``shape``."""

    levels: torch.Tensor  # (G, K) float32, sorted ascending within each group
    indices: torch.Tensor  # uint8 of ``shape``: index into the weight's group's levels
    shape: tuple[int, ...]  # the original weight shape
    granularity: Granularity  # PerTensor / PerChannel / PerGroup
    bits: int  # index width; K <= 2**bits
    method: str = ""  # name of the quantizer that made it
    stored: object = None  # how a packed file stores the levels (fmq.quant.storage.Stored), set by storable()

    @property
    def num_groups(self) -> int:
        return int(self.levels.shape[0])

    @property
    def num_levels(self) -> int:
        """Codebook slots per group, K <= 2**bits."""
        return int(self.levels.shape[1]) if self.levels.ndim == 2 else 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def group_ids(self) -> torch.Tensor:
        return torch.from_numpy(group_ids(self.shape, self.granularity)[1].copy())

    def dequantize(self) -> torch.Tensor:
        if self.numel == 0:
            return torch.zeros(self.shape, dtype=torch.float32)
        idx = self.indices.reshape(-1).long()
        return self.levels[self.group_ids(), idx].reshape(self.shape).to(torch.float32)

    def storage_bits(self, level_bits: int = 16) -> int:
        """Bits to store it: ``bits`` per index plus ``level_bits`` per codebook slot (fp16 by default)."""
        return self.bits * self.numel + level_bits * self.num_groups * self.num_levels

    def bits_per_weight(self, level_bits: int = 16) -> float:
        return self.storage_bits(level_bits) / self.numel if self.numel else 0.0

    def with_levels_as(self, dtype: torch.dtype = torch.float16) -> Codebook:
        """The same codebook with its levels rounded to ``dtype`` (kept as float32 values).

        Packed files store levels in fp16, so a model quantized for packing uses these rounded levels;
        then loading the packed file gives bit-identical weights. Rounding is monotone, so levels stay
        sorted. Raises if a level does not fit (|level| > 65504 for fp16).
        """
        rounded = self.levels.to(dtype)
        if not torch.isfinite(rounded).all():
            big = float(self.levels.abs().max())
            raise ValueError(f"a codebook level ({big:.4g}) does not fit in {dtype}; weights this large cannot be"
                             " packed with fp16 codebooks")
        return Codebook(rounded.to(torch.float32), self.indices, self.shape, self.granularity, self.bits,
                        self.method)
