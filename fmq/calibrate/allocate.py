"""Bit widths per layer under an average budget: a multiple-choice knapsack, solved exactly by DP.

Layer l at option j costs ``cost[l, j]`` bits (indices, codebooks and its stored width) and causes an
output error ``err[l, j]`` (measured: :mod:`fmq.calibrate.sensitivity`). Errors of different layers are
taken as additive, the usual first-order model. We want

    minimise  sum_l err[l, j_l]   subject to   sum_l cost[l, j_l] <= budget.

The DP runs over capacities: F_l(c) = min_j F_{l-1}(c - cost[l, j]) + err[l, j], F_0 = 0, and the
choices are read back from F_L(budget). With integer costs it is exact. Real models cost millions of
bits, so costs are counted in units of ``unit`` bits, each *rounded up* and the budget *rounded down*:
the allocation then always fits the true budget, and it is optimal for the rounded costs (the rounding
gives away at most one unit per layer: with the default table of 2**17 capacities that is under 0.1 % of
the budget for a hundred layers).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["allocate", "BudgetError"]

MAX_CELLS = 1 << 17  # capacities in the DP table


class BudgetError(ValueError):
    """The budget cannot be met (or is not a budget)."""


def allocate(cost: np.ndarray, err: np.ndarray, budget: float, unit: int | None = None) -> np.ndarray:
    """Option index per layer (L,) with the least total error whose total cost is at most ``budget`` bits.

    ``cost`` (L, J) non-negative integers (bits), ``err`` (L, J) finite; an option with err = inf is
    never taken. ``unit`` (bits per DP cell) defaults to the least that keeps the table at MAX_CELLS.
    """
    cost = np.asarray(cost)
    err = np.asarray(err, dtype=np.float64)
    if cost.ndim != 2 or cost.shape != err.shape or cost.shape[1] == 0:
        raise ValueError(f"cost and err must be (layers, options) of one shape, got {cost.shape} and {err.shape}")
    if (cost < 0).any() or not np.array_equal(cost, np.round(cost)):
        raise ValueError("costs must be non-negative integers (bits)")
    if np.isnan(err).any():
        raise ValueError("errors must not be NaN")
    least = int(np.where(np.isfinite(err), cost, np.iinfo(np.int64).max).min(1).sum())
    if not math.isfinite(budget) or budget < least:
        raise BudgetError(f"a budget of {budget:,.0f} bits is below the {least:,} bits the cheapest widths need")
    if unit is None:
        unit = max(1, math.ceil(budget / MAX_CELLS))
    units = np.ceil(cost / unit).astype(np.int64)
    cap = int(budget // unit)
    if int(np.where(np.isfinite(err), units, cap + 1).min(1).sum()) > cap:
        # the rounding cost too much: fall back to exact cells (only on tiny budgets)
        return allocate(cost, err, budget, unit=1)
    n_layers, n_opts = cost.shape
    f = np.zeros(cap + 1)
    choice = np.zeros((n_layers, cap + 1), dtype=np.int16)
    for layer in range(n_layers):
        best = np.full(cap + 1, np.inf)
        pick = np.zeros(cap + 1, dtype=np.int16)
        for j in range(n_opts):
            u, e = int(units[layer, j]), err[layer, j]
            if not math.isfinite(e) or u > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[u:] = f[: cap + 1 - u] + e
            better = cand < best
            best[better], pick[better] = cand[better], j
        f, choice[layer] = best, pick
    out = np.zeros(n_layers, dtype=np.int64)
    c = cap
    for layer in range(n_layers - 1, -1, -1):
        out[layer] = choice[layer, c]
        c -= int(units[layer, out[layer]])
    return out
