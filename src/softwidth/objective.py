"""The cost term of the loss: a fixed-weight penalty, or a budget controller that hits a cost target.

Both are small objects with ``penalty()`` (a differentiable scalar to add to the task loss) and ``step()``
(call once per optimizer step); :class:`CostTerm` is the protocol they follow, which a cost term of your own
implements to be driven by :func:`softwidth.fit` or :class:`~softwidth.WidthSession`. Costs are normalised by the
full model's (every width at its maximum), so a weight of 1 trades one unit of task loss for the whole model's
cost::

    term = sw.CostPenalty(model, weight=0.5)            # or sw.BudgetController(model, target=0.25)
    loss = task_loss + term.penalty()
    loss.backward(); optimizer.step(); term.step()
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .cost import KINDS, cost, params
from .errors import SoftWidthError, is_number
from .optim import width_modules
from .probe import Profile
from .width import Width
from .width_optim import UNITS

UPDATES = ("project", "dual")
ROUNDING_SLACK = 1e-6  # in steps: a real size this close to a step counts as on it (bisection noise)

__all__ = ["BudgetController", "CostPenalty", "CostTerm", "enforce_budget", "full_cost", "model_cost"]


@runtime_checkable
class CostTerm(Protocol):
    """What a training loop needs of a cost term; :class:`CostPenalty` and :class:`BudgetController` are two.

    ``kind``: what the cost counts ("flops", "macs" or "params"). ``penalty()``: the differentiable scalar added
    to the task loss while the widths learn. ``step()``: after each optimizer step while the widths learn (a
    budget's projection). ``normalised_cost()``: cost / the full model's (a 0-dim tensor, logged as ``cost``).
    ``enforce()``: at the schedule's freeze, before the widths are rounded (a budget rounds them to meet its
    target; returns the sizes it set, ``{}`` if none). ``state_dict()`` / ``load_state_dict()``: for checkpoints.
    An optional ``multiplier`` (a float, the term's price) is logged when present.
    """

    kind: str

    def penalty(self) -> torch.Tensor: ...

    def step(self) -> None: ...

    def normalised_cost(self) -> torch.Tensor: ...

    def enforce(self) -> dict[str, int]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _check_cost_term(term, where: str, *, name: str = "cost_term") -> None:
    """Refuse, in one line naming the fix, anything but ``None`` or a :class:`CostTerm`."""
    if term is None or isinstance(term, CostTerm):
        return
    members = ("kind", "penalty", "step", "normalised_cost", "enforce", "state_dict", "load_state_dict")
    missing = [m for m in members if not hasattr(term, m)]
    raise SoftWidthError(f"{where}: {name} must be a CostPenalty, a BudgetController or None, got "
                         f"{type(term).__name__} (a cost term of your own implements softwidth.CostTerm; "
                         f"missing: {', '.join(missing)})")


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

    def enforce(self) -> dict[str, int]:
        """Nothing to enforce for a fixed weight (the schedule rounds the widths at the freeze); returns ``{}``."""
        return {}

    def state_dict(self) -> dict:
        return {"weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.weight = float(state["weight"])


class BudgetController:
    """Hit a cost target without tuning a weight.

    Two updates (``update``):

    ``"project"`` (default)
        After each optimizer step, :meth:`step` projects the widths onto the budget surface: every learning width
        moves along the cost gradient (in the metric of ``unit``, as :class:`~softwidth.WidthSGD`; down when the
        cost is above the current goal, up when it is below) by the one step length that brings the cost to the
        goal (a bisection on the closed-form cost), so the budget is spent and the task gradient only moves the
        widths along the surface. The widths' own steps follow the task gradient, so the pair is projected
        gradient descent: at its fixed point each width's task gradient is the same multiple of its cost
        gradient (equal marginal benefit per FLOP). The goal glides geometrically from the cost at the first
        step to the target over ``glide_steps`` steps (set by the width scheduler when ``None``: half the
        width-learning phase before annealing), so the network adapts on the way; from then on the cost stays
        on the target. :meth:`penalty` is zero (the constraint is applied by the
        projection); ``multiplier`` is the least-squares multiplier ``-<g_task, g_cost>_P / <g_cost, g_cost>_P``
        (task-loss units per unit of ``cost / target``; negative while the task would rather shrink every width),
        logged so a trace shows the price.
    ``"dual"``
        The earlier dual ascent: ``penalty() = lam * cost / target`` and ``step()`` sets
        ``lam <- max(0, lam + step_size * (cost / target - 1))``.

    At the end of width learning, :meth:`enforce` rounds the widths to integers whose cost is at or below the
    target, keeping their proportions (see :func:`enforce_budget`), so the consolidated model meets the budget.

    Args:
        model: a profiled model with widths.
        target: the budget: a fraction of the full model's cost if ``relative`` (default), else an absolute
            cost in the units of ``kind`` (FLOP/s of audio for "flops").
        kind: "flops", "macs" or "params".
        step_size: dual ascent step per optimizer step (``update="dual"`` only).
        update: ``"project"`` or ``"dual"``.
        glide_steps: steps over which the projection's goal glides to the target (``None``: set by the schedule;
            0: project onto the target from the first step).
        unit: the projection's metric, ``"range"`` (fractions of each width's ``max_size``) or ``"features"``.
    """

    def __init__(self, model: nn.Module, *, target: float, kind: str = "flops", relative: bool = True,
                 step_size: float = 0.02, update: str = "project", glide_steps: int | None = None,
                 unit: str = "range") -> None:
        _check_kind(kind)
        if not is_number(target) or target <= 0:
            raise SoftWidthError(f"BudgetController: target must be a finite number > 0, got {target!r}")
        if not is_number(step_size) or step_size <= 0:
            raise SoftWidthError(f"BudgetController: step_size must be > 0, got {step_size!r}")
        if not isinstance(relative, bool):
            raise SoftWidthError(f"BudgetController: relative must be True or False, got {relative!r}")
        if update not in UPDATES:
            raise SoftWidthError(f"BudgetController: update must be one of {', '.join(UPDATES)}, got {update!r}")
        if glide_steps is not None and (isinstance(glide_steps, bool) or not isinstance(glide_steps, int)
                                        or glide_steps < 0):
            raise SoftWidthError(f"BudgetController: glide_steps must be None or an int >= 0, got {glide_steps!r}")
        if unit not in UNITS:
            raise SoftWidthError(f"BudgetController: unit must be one of {', '.join(UNITS)}, got {unit!r}")
        self.model, self.kind, self.step_size = model, kind, float(step_size)
        self.update, self.glide_steps, self.unit = update, glide_steps, unit
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
        self.start: float | None = None  # cost at the first projection step (the glide's start)
        self.steps = 0

    def normalised_cost(self) -> torch.Tensor:
        return model_cost(self.model, self.kind) / self.full

    def penalty(self) -> torch.Tensor:
        if self.update == "project":
            return torch.zeros(())
        return self.multiplier * model_cost(self.model, self.kind) / self.target

    def goal(self) -> float:
        """The cost the projection aims at now: the target, or a point of the glide towards it."""
        if self.start is None or self.start <= self.target:
            return self.target
        glide = self.glide_steps or 0
        if self.steps >= glide:
            return self.target
        return self.start * (self.target / self.start) ** (self.steps / glide)

    def step(self) -> None:
        """Call once after each optimizer step while widths learn."""
        if self.update == "dual":
            excess = float(model_cost(self.model, self.kind).detach()) / self.target - 1.0
            self.multiplier = max(0.0, self.multiplier + self.step_size * excess)
            return
        widths = [w for w in width_modules(self.model) if w.value.requires_grad and not w.frozen]
        if not widths:
            return
        if self.start is None:
            self.start = float(model_cost(self.model, self.kind).detach())
        self.steps += 1
        direction = self._cost_direction(widths)
        self.multiplier = self._multiplier(widths, direction)
        _project(self.model, widths, direction, self.goal(), self.kind)

    def _cost_direction(self, widths: list[Width]) -> list[float]:
        """``P grad(cost / target)`` per width (features per unit of relative cost)."""
        values = [w.value for w in widths]
        with torch.enable_grad():
            grads = torch.autograd.grad(model_cost(self.model, self.kind) / self.target, values, allow_unused=True)
        return [self._metric(w) * (0.0 if g is None else float(g)) for w, g in zip(widths, grads)]

    def _metric(self, width: Width) -> float:
        return float(width.max_size) ** 2 if self.unit == "range" else 1.0

    def _multiplier(self, widths: list[Width], direction: list[float]) -> float:
        """Least-squares multiplier of the task gradient on the cost gradient."""
        task = [0.0 if w.value.grad is None else float(w.value.grad) for w in widths]
        cost = [d / self._metric(w) for w, d in zip(widths, direction)]  # grad(cost / target)
        norm = sum(c * d for c, d in zip(cost, direction))
        return -sum(t * d for t, d in zip(task, direction)) / norm if norm > 0 else 0.0

    def enforce(self) -> dict[str, int]:
        """Round the widths so the cost is <= target, keeping their proportions; returns the sizes."""
        return enforce_budget(self.model, self.target, kind=self.kind)

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier, "target": self.target, "start": self.start, "steps": self.steps,
                "glide_steps": self.glide_steps}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier = float(state["multiplier"])
        self.target = float(state["target"])
        self.start = None if state.get("start") is None else float(state["start"])
        self.steps = int(state.get("steps", 0))
        if state.get("glide_steps") is not None:
            self.glide_steps = int(state["glide_steps"])


def _project(model: nn.Module, widths: list[Width], direction: list[float], goal: float, kind: str) -> None:
    """Move ``widths`` along ``-direction`` (clamped into their bounds) onto the cost ``goal``: by the shortest
    step down if the cost is above it, by the longest step up that stays at or below it if the cost is below;
    as far as the bounds allow where the goal cannot be reached."""
    start = {id(w): float(w.value.detach()) for w in widths}

    def along(mu: float) -> dict[int, float]:
        return {id(w): min(max(start[id(w)] - mu * d, w.min_size), float(w.max_size))
                for w, d in zip(widths, direction)}

    def cost_at(mu: float) -> float:
        with _widths_at(model, along(mu)):
            return float(model_cost(model, kind).detach())

    positive = [(w, d) for w, d in zip(widths, direction) if d > 0]
    if not positive:
        return
    if cost_at(0.0) > goal:
        low, high = 0.0, max((start[id(w)] - w.min_size) / d for w, d in positive)
    else:
        low, high = -max((w.max_size - start[id(w)]) / d for w, d in positive), 0.0
    mu = _first_within(cost_at, goal, low, high)
    with torch.no_grad():
        for w in widths:
            w.value.fill_(along(mu)[id(w)])


def _first_within(cost_at, goal: float, low: float, high: float) -> float:
    """The smallest ``mu`` in ``[low, high]`` whose (non-increasing) ``cost_at(mu)`` is at most ``goal`` (``high``
    if none is)."""
    if cost_at(low) <= goal:
        return low
    if cost_at(high) > goal:
        return high
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (low, mid) if cost_at(mid) <= goal else (mid, high)
    return high


def enforce_budget(model: nn.Module, target: float, *, kind: str = "flops") -> dict[str, int]:
    """Set every width to an integer so the cost is ``<= target`` (absolute), keeping the learned proportions.

    1. The common scale ``a`` of the current real widths (any ``a >= 0``: it may scale them up) whose real-valued
       cost equals the target is found by bisection (widths clamped into their bounds).
    2. Each width is rounded down to its step (``multiple_of``) below ``a * K_j``.
    3. Largest remainder: widths get their next step in order of how far their rounded-down size lies below
       ``a * K_j`` (in steps), each while the cost still fits.
    4. What budget is left goes to the cheapest steps that keep every width within one step of ``a * K_j``. If the
       cost is still below 97 % of the target (a coarse grid), one width at a time gives back a step so that
       others can grow within that limit (kept when it brings the cost closer to the target).
    A width never moves more than one step from ``a * K_j`` (where its bounds allow), and no width is favoured for
    its step being large (the earlier rule refilled the budget largest-step-first). On a grid so coarse that no
    sizes within one step reach 97 % of the target, the cost stays below it: the proportions win over the last
    few percent of the budget.
    """
    widths = width_modules(model)
    if not widths:
        raise SoftWidthError("enforce_budget: the model has no widths")
    real = {id(w): float(w.value.detach()) for w in widths}

    def cost_of(sizes: dict[int, float]) -> float:
        with _widths_at(model, sizes):
            return float(model_cost(model, kind).detach())

    goal = _common_scale(widths, real, target, cost_of)
    sizes = {id(w): _floor_step(w, goal[id(w)]) for w in widths}
    if cost_of(sizes) > target:  # minimum sizes bind: shrink the common scale of the rounded sizes instead
        sizes = _rounded_scale(widths, real, target, cost_of)
    order = sorted(widths, key=lambda w: -(goal[id(w)] - sizes[id(w)]) / w.multiple_of)
    for w in order:
        if goal[id(w)] > sizes[id(w)] + ROUNDING_SLACK * w.multiple_of:
            _try_step(w, sizes, target, cost_of)
    _fill(widths, sizes, target, cost_of, limit=goal)
    if cost_of(sizes) < 0.97 * target:
        _trade(widths, sizes, target, cost_of, limit=goal)
        _fill(widths, sizes, target, cost_of, limit=goal)  # the width that gave a step back may take it again
    with torch.no_grad():
        for w in widths:
            w.value.fill_(sizes[id(w)])
    return {w.label: int(sizes[id(w)]) for w in widths}


def _lowest(w: Width) -> float:
    return float(w.multiple_of * math.ceil(w.min_size / w.multiple_of - 1e-9))


def _floor_step(w: Width, value: float) -> float:
    q = w.multiple_of
    return float(min(max(q * math.floor(value / q + ROUNDING_SLACK), _lowest(w)), w.max_size))


def _common_scale(widths, real, target, cost_of) -> dict[int, float]:
    """Real sizes ``clamp(a * K_j)`` at the largest common scale ``a`` whose real-valued cost is <= target."""
    def at(a: float) -> dict[int, float]:
        return {id(w): min(max(real[id(w)] * a, w.min_size), float(w.max_size)) for w in widths}

    high = max(w.max_size / max(real[id(w)], 1e-12) for w in widths)
    if cost_of(at(high)) <= target:
        return at(high)
    low = 0.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cost_of(at(mid)) <= target else (low, mid)
    return at(low)


def _rounded_scale(widths, real, target, cost_of) -> dict[int, float]:
    """Rounded-down sizes at the largest common scale in [0, 1] that fits (when minimum sizes bind)."""
    def at(a: float) -> dict[int, float]:
        return {id(w): _floor_step(w, real[id(w)] * a) for w in widths}

    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if cost_of(at(mid)) <= target else (low, mid)
    sizes = at(low)
    if cost_of(sizes) > target:
        raise SoftWidthError(f"enforce_budget: no integer widths reach cost <= {target:.4g}")
    return sizes


def _try_step(w: Width, sizes: dict[int, float], target: float, cost_of) -> bool:
    grown = sizes[id(w)] + w.multiple_of
    if grown > w.max_size or cost_of({**sizes, id(w): grown}) > target:
        return False
    sizes[id(w)] = grown
    return True


def _fill(widths, sizes, target, cost_of, *, limit: dict[int, float], frozen: Width | None = None) -> None:
    """Grow by the cheapest step that fits and stays within one step of ``limit`` until none does."""
    while True:
        best, best_cost = None, math.inf
        for w in widths:
            grown = sizes[id(w)] + w.multiple_of
            if w is frozen or grown > w.max_size or grown > limit[id(w)] + w.multiple_of * (1 + ROUNDING_SLACK):
                continue
            c = cost_of({**sizes, id(w): grown})
            if c <= target and c < best_cost:
                best, best_cost = w, c
        if best is None:
            return
        sizes[id(best)] += best.multiple_of


def _trade(widths, sizes, target, cost_of, *, limit: dict[int, float]) -> None:
    """One width gives back a step (staying within one step of ``limit``) and the others grow; kept while it
    brings the cost closer to the target."""
    reached, traded = cost_of(sizes), True
    while traded:
        traded = False
        for w in widths:
            lower = sizes[id(w)] - w.multiple_of
            if lower < _lowest(w) or lower < limit[id(w)] - w.multiple_of * (1 + ROUNDING_SLACK):
                continue
            trial = {**sizes, id(w): lower}
            _fill(widths, trial, target, cost_of, limit=limit, frozen=w)
            c = cost_of(trial)
            if reached < c <= target:
                sizes.update(trial)
                reached, traded = c, True
                break


def _cost_at_min(model: nn.Module, kind: str) -> float:
    """Cost at the smallest integer sizes the widths can be rounded to (what enforce_budget can reach)."""
    lowest = {id(w): float(w.multiple_of * math.ceil(w.min_size / w.multiple_of - 1e-9)) for w in width_modules(model)}
    with _widths_at(model, lowest):
        return float(model_cost(model, kind).detach())


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SoftWidthError(f"cost kind must be one of {KINDS}, got {kind!r}")
