"""Pareto fronts of (cost, loss) points: the lower envelope and its hypervolume."""

from __future__ import annotations

import math

__all__ = ["TOL", "hypervolume", "lower_envelope"]

TOL = 1e-9


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by ``(cost, loss)`` points (both minimised) inside the box up to ``reference``."""
    front = lower_envelope([p for p in points if p[0] < reference[0] and p[1] < reference[1]])
    area, prev_loss = 0.0, reference[1]
    for cost, loss in front:  # sorted by cost, loss decreasing
        area += (reference[0] - cost) * (prev_loss - loss)
        prev_loss = loss
    return area


def lower_envelope(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pareto-optimal points, sorted by cost (each has a lower loss than every cheaper one)."""
    front, best = [], math.inf
    for cost, loss in sorted(points):
        if loss < best - TOL:
            front.append((cost, loss))
            best = loss
    return front
