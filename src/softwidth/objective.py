"""The cost term of the loss: a fixed-weight penalty, or a budget controller that hits a cost target.

Both are small objects with ``penalty()`` (a differentiable scalar to add to the task loss) and ``step()``
(call once per optimizer step). Costs are normalised by the full model's (every width at its maximum), so
a weight of 1 trades one unit of task loss for the whole model's cost::

    term = sw.CostPenalty(model, weight=0.5)            # or sw.BudgetController(model, target=0.25)
    loss = task_loss + term.penalty()
    loss.backward(); optimizer.step(); term.step()
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from .cost import KINDS, cost, params
from .errors import SoftWidthError, is_number
from .optim import width_modules
from .probe import Profile
from .width import Width

__all__ = ["BudgetController", "CostPenalty", "enforce_budget", "full_cost", "model_cost"]


def model_cost(model: nn.Module, kind: str = "flops") -> torch.Tensor:
    """The model's cost of ``kind`` ("flops" = FLOP/s of audio, "macs" per second, or "params")."""
    _check_kind(kind)
    if kind == "params":
        return params(model)
    record = getattr(model, "softwidth_profile", None)
    total = cost(model)[kind]
    return total / record.seconds if isinstance(record, Profile) else total


@contextmanager
def _widths_at(model: nn.Module, values: dict[int, float]):
    """Temporarily set widths (by ``id``) to the given values; restores them afterwards."""
    widths = width_modules(model)
    saved = [w.value.detach().clone() for w in widths]
    try:
        with torch.no_grad():
            for w in widths:
                if id(w) in values:
                    w.value.fill_(values[id(w)])
        yield
    finally:
        with torch.no_grad():
            for w, v in zip(widths, saved):
                w.value.copy_(v)


def full_cost(model: nn.Module, kind: str = "flops") -> float:
    """Cost of ``kind`` with every width at its maximum (the normaliser)."""
    with _widths_at(model, {id(w): float(w.max_size) for w in width_modules(model)}):
        return float(model_cost(model, kind).detach())


class CostPenalty:
    """``weight * cost / full_cost``: the paper's trade-off term, normalised by the full model's cost.

    Args:
        model: a profiled model (:func:`softwidth.profile`) with widths.
        weight: trade-off weight (>= 0); larger gives a cheaper model.
        kind: "flops" (FLOP/s, default), "macs" or "params".
    """

    def __init__(self, model: nn.Module, *, weight: float, kind: str = "flops") -> None:
        _check_kind(kind)
        if not is_number(weight) or weight < 0:
            raise SoftWidthError(f"CostPenalty: weight must be a finite number >= 0, got {weight!r}")
        self.model, self.weight, self.kind = model, float(weight), kind
        self.full = full_cost(model, kind)

    def normalised_cost(self) -> torch.Tensor:
        return model_cost(self.model, self.kind) / self.full

    def penalty(self) -> torch.Tensor:
        return self.weight * self.normalised_cost()

    def step(self) -> None:
        """Nothing to update for a fixed weight (kept for symmetry with :class:`BudgetController`)."""

    def state_dict(self) -> dict:
        return {"weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.weight = float(state["weight"])


class BudgetController:
    """Hit a cost target without tuning a weight: a Lagrange multiplier updated by dual ascent.

    ``penalty() = lam * cost / target``; after each optimizer step ``step()`` sets
    ``lam <- max(0, lam + step_size * (cost / target - 1))``, so the multiplier grows while the model is
    over budget and relaxes when it is under. At the end of width learning, :meth:`enforce` rounds the
    widths to integers whose cost is at or below the target and as close to it as the integer grid allows
    (see :func:`enforce_budget`), so the consolidated model meets the budget exactly.

    Args:
        model: a profiled model with widths.
        target: the budget: a fraction of the full model's cost if ``relative`` (default), else an absolute
            cost in the units of ``kind`` (FLOP/s of audio for "flops").
        kind: "flops", "macs" or "params".
        step_size: dual ascent step per optimizer step (multiplier units per unit of relative excess).
    """

    def __init__(self, model: nn.Module, *, target: float, kind: str = "flops", relative: bool = True,
                 step_size: float = 0.02) -> None:
        _check_kind(kind)
        if not is_number(target) or target <= 0:
            raise SoftWidthError(f"BudgetController: target must be a finite number > 0, got {target!r}")
        if not is_number(step_size) or step_size <= 0:
            raise SoftWidthError(f"BudgetController: step_size must be > 0, got {step_size!r}")
        if not isinstance(relative, bool):
            raise SoftWidthError(f"BudgetController: relative must be True or False, got {relative!r}")
        self.model, self.kind, self.step_size = model, kind, float(step_size)
        self.full = full_cost(model, kind)
        self.target = float(target) * self.full if relative else float(target)
        if self.target > self.full:
            raise SoftWidthError(
                f"BudgetController: target {self.target:.4g} is above the full model's cost {self.full:.4g}"
            )
        lowest = _cost_at_min(model, kind)
        if self.target < lowest:
            raise SoftWidthError(
                f"BudgetController: target {self.target:.4g} is below the cost with every width at its "
                f"minimum ({lowest:.4g}); lower kappa_min/min_size or raise the target"
            )
        self.multiplier = 0.0

    def normalised_cost(self) -> torch.Tensor:
        return model_cost(self.model, self.kind) / self.full

    def penalty(self) -> torch.Tensor:
        return self.multiplier * model_cost(self.model, self.kind) / self.target

    def step(self) -> None:
        excess = float(model_cost(self.model, self.kind).detach()) / self.target - 1.0
        self.multiplier = max(0.0, self.multiplier + self.step_size * excess)

    def enforce(self) -> dict[str, int]:
        """Round the widths so the cost is <= target and as large as possible; returns the sizes."""
        return enforce_budget(self.model, self.target, kind=self.kind)

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier, "target": self.target}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier = float(state["multiplier"])
        self.target = float(state["target"])


def enforce_budget(model: nn.Module, target: float, *, kind: str = "flops") -> dict[str, int]:
    """Set every width to an integer so the cost is ``<= target`` (absolute) and as close to it as possible.

    First the largest common scale ``a`` in [0, 1] of the current real widths whose rounded sizes fit is
    found by bisection, then single widths are grown one feature at a time (always the step that adds the
    most cost while still fitting) until nothing fits. Growing alone can stop far below the target when the
    only cheap steps belong to widths at their maximum, so then one width at a time gives back one step and
    the others grow again; such a trade is kept when it brings the cost closer to the target (still at or
    below it), until none does.
    """
    widths = width_modules(model)
    if not widths:
        raise SoftWidthError("enforce_budget: the model has no widths")
    current = {id(w): float(w.value.detach()) for w in widths}

    def sizes_at(scale: float) -> dict[int, float]:
        out = {}
        for w in widths:
            q = w.multiple_of
            lowest = q * math.ceil(w.min_size / q - 1e-9)
            n = q * math.floor(max(current[id(w)] * scale, lowest) / q + 0.5)
            out[id(w)] = float(min(max(n, lowest), w.max_size))
        return out

    def cost_of(sizes: dict[int, float]) -> float:
        with _widths_at(model, sizes):
            return float(model_cost(model, kind).detach())

    low, high = 0.0, 1.0
    if cost_of(sizes_at(1.0)) <= target:
        low = 1.0
    else:
        for _ in range(40):
            mid = (low + high) / 2
            if cost_of(sizes_at(mid)) <= target:
                low = mid
            else:
                high = mid
    sizes = sizes_at(low)
    if cost_of(sizes) > target:
        raise SoftWidthError(f"enforce_budget: no integer widths reach cost <= {target:.4g}")

    def grow(sizes: dict[int, float], frozen: Width | None = None) -> tuple[dict[int, float], float]:
        sizes = dict(sizes)
        while True:
            best, best_cost = None, -1.0
            for w in widths:
                grown = sizes[id(w)] + w.multiple_of
                if w is frozen or grown > w.max_size:
                    continue
                c = cost_of({**sizes, id(w): grown})
                if c <= target and c > best_cost:
                    best, best_cost = w, c
            if best is None:
                return sizes, cost_of(sizes)
            sizes[id(best)] += best.multiple_of

    sizes, reached = grow(sizes)
    traded = True
    while traded:
        traded = False
        for w in widths:
            lowest = w.multiple_of * math.ceil(w.min_size / w.multiple_of - 1e-9)
            if sizes[id(w)] - w.multiple_of < lowest:
                continue
            trial, c = grow({**sizes, id(w): sizes[id(w)] - w.multiple_of}, frozen=w)
            if reached < c <= target:
                sizes, reached, traded = trial, c, True
                break
    with torch.no_grad():
        for w in widths:
            w.value.fill_(sizes[id(w)])
    return {w.label: int(sizes[id(w)]) for w in widths}


def _cost_at_min(model: nn.Module, kind: str) -> float:
    """Cost at the smallest integer sizes the widths can be rounded to (what enforce_budget can reach)."""
    lowest = {id(w): float(w.multiple_of * math.ceil(w.min_size / w.multiple_of - 1e-9)) for w in width_modules(model)}
    with _widths_at(model, lowest):
        return float(model_cost(model, kind).detach())


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SoftWidthError(f"cost kind must be one of {KINDS}, got {kind!r}")
