"""Paired comparisons of two kinds of run over the seeds they share, with a t confidence interval.

The case studies train every kind of model once per seed (the same data order and initial draw), so "is the dynamic
model better than the same sizes trained from scratch?" is a question about the per-seed differences: their mean and
a confidence interval from Student's t. With 3 to 5 seeds a difference of means alone (what a table of
``mean ± std`` shows) says little; the interval says whether the seeds can tell the two apart at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import stats

__all__ = ["LEVEL", "describe", "paired_difference", "pooled_difference"]

LEVEL = 0.95
"""Confidence level of the intervals the reports print."""


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], *, level: float = LEVEL) -> dict | None:
    """``a[seed] - b[seed]`` over the seeds both have: mean and a two-sided t interval.

    Args:
        a, b: one value per seed (e.g. EER in points), keyed by seed.
        level: confidence level of the interval, in (0, 1).

    Returns: ``{"mean", "low", "high", "n", "seeds", "verdict"}`` or ``None`` when no seed is shared. ``verdict``
    is ``"lower"`` (the whole interval below 0: ``a`` is lower), ``"higher"``, ``"no difference"`` (the interval
    contains 0) or ``"one seed"`` (no interval; ``low`` and ``high`` are ``None``).
    """
    if not 0 < level < 1:
        raise ValueError(f"paired_difference: level must be in (0, 1), got {level!r}")
    seeds = sorted(set(a) & set(b))
    return _interval([a[s] - b[s] for s in seeds], seeds, level)


def pooled_difference(pairs: Iterable[dict | None], *, level: float = LEVEL) -> dict | None:
    """One interval over the per-seed differences of several :func:`paired_difference` results (e.g. every
    budget of one model): treats each (budget, seed) pair as one sample. ``None`` if there are none."""
    diffs, seeds = [], []
    for pair in pairs:
        if pair is not None:
            diffs += pair["differences"]
            seeds += pair["seeds"]
    return _interval(diffs, seeds, level)


def describe(pair: dict | None, digits: int = 2) -> str:
    """``+0.41 [-2.04, +2.86], no difference (3 seeds)``; ``-`` for ``None``."""
    if pair is None:
        return "-"
    if pair["low"] is None:
        return f"{pair['mean']:+.{digits}f} (one seed)"
    return (f"{pair['mean']:+.{digits}f} [{pair['low']:+.{digits}f}, {pair['high']:+.{digits}f}], {pair['verdict']} "
            f"({pair['n']} pairs)")


def _interval(diffs: list[float], seeds: list, level: float) -> dict | None:
    if not diffs:
        return None
    arr = np.asarray(diffs, dtype=np.float64)
    mean = float(arr.mean())
    out = {"mean": mean, "n": int(arr.size), "seeds": list(seeds), "differences": [float(d) for d in arr]}
    if arr.size < 2:
        return {**out, "low": None, "high": None, "verdict": "one seed"}
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    low, high = mean - half, mean + half
    verdict = "lower" if high < 0 else "higher" if low > 0 else "no difference"
    return {**out, "low": low, "high": high, "verdict": verdict}
