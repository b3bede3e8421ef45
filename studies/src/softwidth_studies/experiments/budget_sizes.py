"""Model sizes that lie on a FLOP/s budget: the uniform shrink and any other allocation of the budget across widths.

An *allocation* is one positive weight per width: the sizes are ``factor * weight * full size`` (rounded down to the
width's step, kept within ``[floor, full size]``) at the largest common ``factor`` whose model still fits the budget
(:func:`sizes_on_budget`). All weights equal is the *uniform shrink* a user would try first (every width scaled by
one factor); :func:`allocation_design` spreads weights over the space of allocations with a scrambled Sobol design,
so a sweep (:mod:`softwidth_studies.vad.sweep`) can measure how much better than uniform any allocation can be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from softwidth.errors import SoftWidthError

__all__ = ["allocation_design", "scaled_sizes", "sizes_on_budget", "uniform_sizes"]


def scaled_sizes(full: Mapping[str, int], weights: Mapping[str, float], factor: float, *,
                 floors: Mapping[str, int] | None = None, steps: Mapping[str, int] | None = None) -> dict[str, int]:
    """``floor(factor * weights[name] * full[name])`` per width, down to a multiple of ``steps[name]`` (default 1),
    within ``[floors[name], full[name]]`` (floor default: the step). Widths missing from ``weights`` keep weight 1."""
    floors, steps = floors or {}, steps or {}
    out = {}
    for name, size in full.items():
        step = steps.get(name, 1)
        raw = int(factor * weights.get(name, 1.0) * size + 1e-9) // step * step
        out[name] = min(size, max(floors.get(name, step), raw))
    return out


def sizes_on_budget(full: Mapping[str, int], cost: Callable[[dict], float], budget: float,
                    weights: Mapping[str, float] | None = None, *, floors: Mapping[str, int] | None = None,
                    steps: Mapping[str, int] | None = None, iterations: int = 40) -> dict[str, int]:
    """The sizes of allocation ``weights`` (``None``: uniform) at the largest common factor whose ``cost(sizes)``
    (FLOP/s) is at most ``budget``. Bisection over the factor: the sizes grow with it, so the cost does too.

    Raises :class:`~softwidth.SoftWidthError` if even the floors are over budget, or a weight is not positive."""
    weights = dict(weights or {})
    bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
    if bad:
        raise SoftWidthError(f"sizes_on_budget: weights must be positive and finite, got {bad}")

    def fits(factor: float) -> bool:
        return cost(scaled_sizes(full, weights, factor, floors=floors, steps=steps)) <= budget

    if not fits(0.0):
        raise SoftWidthError(f"sizes_on_budget: even the smallest sizes cost more than {budget:g} FLOP/s")
    high = 1.0 / min([w for w in weights.values()] + [1.0])  # at this factor every width is at its full size
    if fits(high):
        return scaled_sizes(full, weights, high, floors=floors, steps=steps)
    low = 0.0  # fits(low) holds and fits(high) does not
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return scaled_sizes(full, weights, low, floors=floors, steps=steps)


def uniform_sizes(full: Mapping[str, int], cost: Callable[[dict], float], budget: float, **kwargs) -> dict[str, int]:
    """The uniform shrink: every width times one factor, the largest within ``budget`` (:func:`sizes_on_budget`)."""
    return sizes_on_budget(full, cost, budget, None, **kwargs)


def allocation_design(names: Sequence[str], n: int, *, spread: float = 8.0, seed: int = 0) -> list[dict[str, float]]:
    """``n`` allocations (weights per width) for a sweep: the uniform one (every weight 1) first, then the points of
    a scrambled Sobol design over ``[-1, 1]^d`` mapped to weights ``spread ** u``, so any width may get up to
    ``spread`` times another's share of its full size in either direction. Deterministic in ``seed``."""
    from scipy.stats import qmc

    if n < 1 or spread <= 1:
        raise SoftWidthError(f"allocation_design: need n >= 1 and spread > 1, got n={n}, spread={spread}")
    m = max(1, math.ceil(math.log2(max(2, n - 1))))
    points = qmc.Sobol(d=len(names), scramble=True, seed=seed).random_base2(m)
    design = [{name: 1.0 for name in names}]
    for u in points[: n - 1]:
        design.append({name: float(spread ** (2 * x - 1)) for name, x in zip(names, u)})
    return design
