"""The bit-allocation DP against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fmq.calibrate.allocate import BudgetError, allocate


def brute(cost, err, budget):
    best, arg = np.inf, None
    for pick in itertools.product(*(range(cost.shape[1]) for _ in range(cost.shape[0]))):
        c = sum(cost[i, j] for i, j in enumerate(pick))
        e = sum(err[i, j] for i, j in enumerate(pick))
        if c <= budget and e < best:
            best, arg = e, pick
    return best, arg


@pytest.mark.parametrize("seed", range(12))
def test_dp_equals_brute_force_on_small_cases(seed):
    rng = np.random.default_rng(seed)
    layers, opts = rng.integers(2, 6), rng.integers(2, 5)
    cost = rng.integers(1, 40, (layers, opts))
    err = rng.exponential(1.0, (layers, opts))
    lo, hi = cost.min(1).sum(), cost.max(1).sum()
    budget = int(rng.integers(lo, hi + 1))
    pick = allocate(cost, err, budget, unit=1)
    best, _ = brute(cost, err, budget)
    assert cost[np.arange(layers), pick].sum() <= budget
    assert err[np.arange(layers), pick].sum() == pytest.approx(best)


def test_rounded_units_always_fit_the_true_budget():
    rng = np.random.default_rng(1)
    cost = rng.integers(10_000, 2_000_000, (30, 6))
    err = np.sort(rng.exponential(1.0, (30, 6)))[:, ::-1]
    budget = float(cost.mean(1).sum())
    pick = allocate(cost, err, budget)
    assert cost[np.arange(30), pick].sum() <= budget
    # and it is close to the exact optimum of a coarser problem: never worse than the cheapest choice
    assert err[np.arange(30), pick].sum() <= err[np.arange(30), cost.argmin(1)].sum()


def test_infinite_errors_are_never_taken_and_bad_budgets_are_named():
    cost = np.array([[1, 2], [1, 2]])
    err = np.array([[np.inf, 1.0], [5.0, 1.0]])
    assert list(allocate(cost, err, 3, unit=1)) == [1, 0]
    with pytest.raises(BudgetError, match="below the 3 bits"):
        allocate(cost, err, 2.5)
    with pytest.raises(ValueError, match="integers"):
        allocate(np.array([[1.5]]), np.array([[1.0]]), 3)
