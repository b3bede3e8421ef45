"""Paired-by-seed differences and their t intervals (softwidth_studies.experiments.paired)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from softwidth_studies.experiments.paired import describe, paired_difference, pooled_difference


def test_interval_is_students_t_on_the_per_seed_differences():
    a, b = {0: 11.0, 1: 12.5, 2: 10.0, 7: 99.0}, {0: 10.0, 1: 12.0, 2: 10.5, 3: 50.0}
    pair = paired_difference(a, b)
    diffs = np.array([1.0, 0.5, -0.5])  # seeds 0, 1, 2 only: 7 and 3 have no partner
    low, high = stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs))
    assert pair["seeds"] == [0, 1, 2] and pair["n"] == 3
    assert pair["mean"] == pytest.approx(diffs.mean())
    assert (pair["low"], pair["high"]) == pytest.approx((low, high))
    assert pair["verdict"] == "no difference"


def test_verdict_says_which_side_when_the_interval_excludes_zero():
    base = {s: 10.0 for s in range(5)}
    lower = {s: 9.0 + 0.01 * s for s in range(5)}
    assert paired_difference(lower, base)["verdict"] == "lower"
    assert paired_difference(base, lower)["verdict"] == "higher"


def test_pairing_removes_the_spread_shared_by_a_seed():
    # seeds differ by several points, but the first kind is 0.2 better on every seed: unpaired means cannot tell
    # that apart at 3 seeds, the paired interval can
    shared = {0: 8.0, 1: 12.0, 2: 16.0}
    better = {s: v - 0.2 for s, v in shared.items()}
    assert paired_difference(better, shared)["verdict"] == "lower"
    assert stats.ttest_ind(list(better.values()), list(shared.values())).pvalue > 0.5


def test_one_seed_and_no_shared_seed():
    one = paired_difference({0: 3.0}, {0: 1.0, 1: 2.0})
    assert one["mean"] == 2.0 and one["low"] is None and one["verdict"] == "one seed"
    assert describe(one) == "+2.00 (one seed)"
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    assert describe(None) == "-"
    with pytest.raises(ValueError, match="level"):
        paired_difference({0: 1.0}, {0: 1.0}, level=1.5)


def test_pooled_takes_every_pair_of_every_comparison():
    first = paired_difference({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.0})
    second = paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    pooled = pooled_difference([first, None, second])
    assert pooled["n"] == 5 and pooled["mean"] == pytest.approx(np.mean([1, 2, 2, 4, 3]))
    assert pooled_difference([None]) is None
    assert describe(pooled).endswith("(5 pairs)")


@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=8),
       st.floats(-5, 5, allow_nan=False))
def test_shifting_one_side_shifts_the_interval(values, shift):
    a = dict(enumerate(values))
    b = {s: v - shift for s, v in a.items()}
    base = paired_difference(a, dict.fromkeys(a, 0.0))
    moved = paired_difference(b, dict.fromkeys(a, 0.0))
    assert moved["mean"] == pytest.approx(base["mean"] - shift, abs=1e-9)
    assert moved["high"] - moved["low"] == pytest.approx(base["high"] - base["low"], abs=1e-6)
    assert base["low"] <= base["mean"] <= base["high"]
