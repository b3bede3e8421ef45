"""Schedules for width learning: warm-up, ordering pressure, temperature annealing, freeze.

Defaults (fractions of the training steps), chosen so that a user who sets only a weight or a target gets
init-independent widths and a consolidated model that scores what the trained one scored
(measurements in docs/method.md):

- ``[0, warmup)``: widths are held and every forward keeps a random prefix of each width's features
  (nested dropout over the whole range), so the weights first learn every width, not the initial one
  (holding a width at its minimum instead left runs started there in a worse basin: docs/method.md).
- ``[warmup, anneal_start)``: widths learn with a soft ramp (``temperature_start`` features) and ordering
  pressure (nested-dropout truncations with probability ``ordering``).
- ``[anneal_start, freeze)``: temperature decays geometrically to ``temperature_end`` (towards the hard
  truncation), the widths' learning rate decays to ``width_lr_end`` of its value, ordering pressure is off.
- ``[freeze, 1]``: widths are rounded to integers (a budget controller enforces its target here) and
  frozen, and the gate becomes the hard truncation in train mode too; the weights adapt to exactly the
  consolidated network, which removes the consolidation gap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import nn

from .errors import SoftWidthError
from .objective import BudgetController, CostTerm, _check_cost_term
from .optim import width_modules

__all__ = ["Schedule", "WidthScheduler"]


@dataclass(frozen=True)
class Schedule:
    """When widths move, how soft their ramp is, and when they freeze (fractions of training steps)."""

    warmup: float = 0.1
    anneal_start: float = 0.6
    freeze: float = 0.85
    temperature_start: float = 2.0
    temperature_end: float = 0.05
    ordering: float = 0.5
    width_lr_end: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():  # the range checks below then also reject NaN
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SoftWidthError(f"Schedule: {name} must be a number, got {value!r}")
        if not 0.0 <= self.warmup <= self.anneal_start <= self.freeze <= 1.0:
            raise SoftWidthError(
                "Schedule: need 0 <= warmup <= anneal_start <= freeze <= 1, got "
                f"{self.warmup}, {self.anneal_start}, {self.freeze}"
            )
        if not 0 < self.temperature_end <= self.temperature_start or not math.isfinite(self.temperature_start):
            raise SoftWidthError("Schedule: need 0 < temperature_end <= temperature_start < inf")
        if not 0.0 <= self.ordering <= 1.0:
            raise SoftWidthError(f"Schedule: ordering must be in [0, 1], got {self.ordering}")
        if not 0.0 < self.width_lr_end <= 1.0:
            raise SoftWidthError(f"Schedule: width_lr_end must be in (0, 1], got {self.width_lr_end}")

    @classmethod
    def literal(cls) -> Schedule:
        """The paper's literal procedure: widths learn from the start, no ordering, no anneal, no freeze."""
        return cls(warmup=0.0, anneal_start=1.0, freeze=1.0, temperature_start=1.0, temperature_end=1.0,
                   ordering=0.0, width_lr_end=1.0)

    def _annealed(self, progress: float, start: float, end: float) -> float:
        """``start`` before ``anneal_start``, ``end`` from ``freeze`` on, geometric in between."""
        if progress < self.anneal_start or self.freeze <= self.anneal_start:
            return start
        t = min(1.0, (progress - self.anneal_start) / (self.freeze - self.anneal_start))
        return start * (end / start) ** t

    def temperature(self, progress: float) -> float:
        """Ramp temperature (features) at ``progress`` in [0, 1]."""
        return self._annealed(progress, self.temperature_start, self.temperature_end)

    def width_lr_factor(self, progress: float) -> float:
        """Multiplier of the widths' learning rate: 1, then decaying to ``width_lr_end`` while annealing,
        so the widths settle instead of following the last batches' gradient noise."""
        return self._annealed(progress, 1.0, self.width_lr_end)


class WidthScheduler:
    """Applies a :class:`Schedule` to every width of a model; call :meth:`step` after each optimizer step.

    Args:
        model: the dynamic model.
        schedule: the schedule.
        total_steps: optimizer steps of the whole training run (> 0).
        controller: optional cost term (:class:`~softwidth.objective.CostTerm`); its ``enforce()`` runs at the
            freeze point, before the widths are rounded (a budget controller meets its target there).
    """

    def __init__(self, model: nn.Module, schedule: Schedule, *, total_steps: int,
                 controller: CostTerm | None = None) -> None:
        if not isinstance(total_steps, int) or total_steps < 1:
            raise SoftWidthError(f"WidthScheduler: total_steps must be an int >= 1, got {total_steps!r}")
        _check_cost_term(controller, "WidthScheduler", name="controller")
        self.model, self.schedule, self.total_steps = model, schedule, total_steps
        self.controller = controller
        self.steps = 0
        self.frozen = False
        if isinstance(controller, BudgetController) and controller.glide_steps is None:
            # the budget's glide: half the width-learning phase before annealing (at least one step)
            controller.glide_steps = max(1, round(0.5 * (schedule.anneal_start - schedule.warmup) * total_steps))
        self.apply()

    @property
    def progress(self) -> float:
        return min(1.0, self.steps / self.total_steps)

    @property
    def widths_learning(self) -> bool:
        return not self.frozen and self.progress >= self.schedule.warmup

    def apply(self) -> None:
        """Set temperature, ordering and trainability of every width for the current progress."""
        s, p = self.schedule, self.progress
        if not self.frozen and s.freeze < 1.0 and p >= s.freeze:
            self._freeze()
        for w in width_modules(self.model):
            if w.mix == "ramp":
                w.set_temperature(s.temperature_end if self.frozen else s.temperature(p))
            # warm-up: every forward is a random prefix (nested dropout), so the weights learn every width,
            # not the initial one; then ordering pressure with probability `ordering` until annealing
            w.set_ordering(1.0 if p < s.warmup else s.ordering if p < s.anneal_start and not self.frozen else 0.0)
            if self.frozen:
                w.freeze_()
            else:
                w.frozen = False
                w.value.requires_grad_(self.widths_learning)

    def _freeze(self) -> None:
        if self.controller is not None:
            self.controller.enforce()
        for w in width_modules(self.model):
            w.freeze_()  # rounded, no gradient, hard truncation in train mode too
        self.frozen = True

    def step(self) -> None:
        self.steps += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "frozen": self.frozen, "schedule": asdict(self.schedule)}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.frozen = int(state["steps"]), bool(state["frozen"])
        self.apply()
