"""The width-training protocol, written once: :class:`WidthSession`.

A session owns everything that training the widths adds to an ordinary training loop: the widths' parameter
groups (or their own :class:`~softwidth.WidthSGD`), the :class:`~softwidth.schedule.WidthScheduler`, the cost
term (a :class:`~softwidth.CostTerm`), the per-step sequence, the width trace and the log row.
:func:`softwidth.fit` and the Lightning ``SoftWidthCallback`` both drive one, so a step is the same in both::

    session = sw.WidthSession(model, sw.BudgetController(model, target=0.25), total_steps=epochs * len(loader))
    optimizer = torch.optim.Adam(session.param_groups(), lr=3e-3)
    session.adopt([optimizer])                   # it scales the widths' groups (width_optimizer="adam")
    for x, y in loader:
        loss = task_loss(model(x), y) + session.penalty()
        optimizer.zero_grad(); session.zero_grad()
        loss.backward()
        session.before_step()                    # trace row, the widths' own step (while they learn)
        optimizer.step()
        session.after_step()                     # budget projection, schedule (enforcement at the freeze), rates
    print(session.log_row())                     # cost, cost in its unit, multiplier, every width

Width groups follow the convention of :mod:`softwidth.optim`: ``"width"`` (the label), ``"base_lr"``, no weight
decay. The widths learn at ``width_lr`` (a fraction of each width's ``max_size`` per step; default: a width can
cross its range ``width_travel`` times while it learns, ``[warmup, freeze)`` of the steps).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .consolidate import widths
from .errors import SoftWidthError, is_number
from .objective import CostTerm, _check_cost_term, model_cost
from .optim import WIDTH_KEY, _width_group, width_modules
from .schedule import Schedule, WidthScheduler
from .trace import WidthTrace
from .width_optim import WidthSGD

__all__ = ["WIDTH_OPTIMIZERS", "WidthSession"]

WIDTH_OPTIMIZERS = ("shared", "adam")


class WidthSession:
    """One run's width training: groups, width optimizer, schedule, cost term, per-step hooks, log row, state.

    Args:
        model: the dynamic model (profiled if ``cost_term`` prices FLOP/s).
        cost_term: a :class:`~softwidth.CostTerm` (:class:`~softwidth.CostPenalty`,
            :class:`~softwidth.BudgetController`) or ``None`` (widths then follow the task loss only).
        total_steps: optimizer steps of the whole run (the schedule's fractions are of these).
        schedule: the :class:`~softwidth.Schedule`.
        width_optimizer: ``"shared"``: the session's :class:`~softwidth.WidthSGD` trains the widths (one
            second-moment estimate shared by all); ``"adam"``: each width gets an Adam group of the weights'
            optimizer (:meth:`param_groups`, :meth:`adopt`).
        width_lr: the widths' step as a fraction of their ``max_size`` per step (``None``: from ``width_travel``).
        width_travel: how many times a width can cross its range while it learns (when ``width_lr`` is ``None``).
        trace: record every width-learning step (:class:`~softwidth.trace.WidthTrace`) in :attr:`trace`.

    Attributes: ``scheduler``, ``cost_term``, ``width_opt`` (the ``WidthSGD``, or ``None`` under ``"adam"`` or
    for a model without widths), ``trace`` (the ``WidthTrace`` or ``None``), ``width_rate`` (fraction of the range
    per step).
    """

    def __init__(self, model: nn.Module, cost_term: CostTerm | None = None, *, total_steps: int,
                 schedule: Schedule = Schedule(), width_optimizer: str = "shared", width_lr: float | None = None,
                 width_travel: float = 3.0, trace: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise SoftWidthError(f"WidthSession: model must be an nn.Module, got {type(model).__name__}")
        _check_cost_term(cost_term, "WidthSession")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise SoftWidthError(f"WidthSession: total_steps must be an int >= 1, got {total_steps!r}")
        _check_options("WidthSession", schedule=schedule, width_optimizer=width_optimizer, width_lr=width_lr,
                       width_travel=width_travel, trace=trace)
        self.model, self.cost_term, self.schedule = model, cost_term, schedule
        self.width_optimizer = width_optimizer
        self._widths = width_modules(model)
        learning_steps = max(1.0, (schedule.freeze - schedule.warmup) * total_steps)
        self.width_rate = float(width_lr) if width_lr is not None else width_travel / learning_steps
        self.scheduler = WidthScheduler(model, schedule, total_steps=total_steps, controller=cost_term)
        shared = width_optimizer == "shared" and bool(self._widths)
        self.width_opt = WidthSGD(self._widths, lr=self.width_rate) if shared else None
        self.trace = WidthTrace() if trace else None
        self._optimizers: list[torch.optim.Optimizer] = []

    # -- parameter groups ------------------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Groups for a new optimizer of the model: every weight (no width) in one group, then under ``"adam"``
        one group per width (``lr = width_rate * max_size``, no weight decay). Pass the optimizer to :meth:`adopt`."""
        ids = {id(w.value) for w in self._widths}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in ids]}]
        if self.width_optimizer == "adam":
            groups += [_width_group([w], lr=self.width_rate * w.max_size) for w in self._widths]
        return groups

    def adopt(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Fit the widths into ``optimizers`` (built by :meth:`param_groups` or elsewhere, e.g. by a
        LightningModule) and scale their width groups' rates with the schedule from now on.

        ``"shared"``: every width is taken out of them (the session's ``WidthSGD`` trains it). ``"adam"``: a group
        holding only widths is kept as the user's own (its ``lr`` becomes its ``base_lr``); a width sharing a group
        with weights is moved into a group of its own. Raises :class:`SoftWidthError` under ``"adam"`` if a width
        is in none of them.
        """
        optimizers = list(optimizers)
        by_id = {id(w.value): w for w in self._widths}
        found: set[int] = set()
        for optimizer in optimizers:
            for group in list(optimizer.param_groups):
                mine = [p for p in group["params"] if id(p) in by_id]
                found.update(id(p) for p in mine)
                if not mine:
                    continue
                if self.width_optimizer == "adam" and len(mine) == len(group["params"]):  # the user's own group
                    group.setdefault("base_lr", group["lr"])
                    group.setdefault(WIDTH_KEY, ", ".join(by_id[id(p)].label for p in mine))
                    continue
                group["params"] = [p for p in group["params"] if id(p) not in by_id]
                if self.width_optimizer == "adam":
                    for p in mine:
                        w = by_id[id(p)]
                        optimizer.add_param_group(_width_group([w], lr=self.width_rate * w.max_size))
        missing = [w.label for w in self._widths if id(w.value) not in found]
        if self.width_optimizer == "adam" and missing:
            raise SoftWidthError(f"WidthSession: the widths {missing} are in no optimizer; give it all of the "
                                 "model's parameters (or softwidth.param_groups(model, width_lr=...))")
        self._optimizers += [o for o in optimizers if all(o is not known for known in self._optimizers)]

    # -- the cost term ---------------------------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """The cost term to add to the task loss: differentiable while the widths learn, else a zero tensor."""
        if self.cost_term is None or not self.scheduler.widths_learning:
            param = next(self.model.parameters(), None)
            return torch.zeros((), device=param.device if param is not None else None)
        return self.cost_term.penalty()

    # -- the per-step sequence -------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Drop the widths' gradients held by the session's ``WidthSGD`` (call with ``optimizer.zero_grad()``)."""
        if self.width_opt is not None:
            self.width_opt.zero_grad(set_to_none=True)

    def before_step(self) -> None:
        """After ``backward()`` (and any gradient averaging), before the optimizers step: while the widths learn,
        record the trace row (values and gradients before any step) and take the widths' own step."""
        if not self.scheduler.widths_learning:
            return
        if self.trace is not None:
            self.trace.record(self.model, self.cost_term, step=self.scheduler.steps, progress=self.scheduler.progress)
        if self.width_opt is not None:
            self.width_opt.step()

    def after_step(self) -> None:
        """After the optimizers stepped: the cost term's step while the widths learn (a budget's projection), the
        schedule's (temperature, ordering, freeze with the cost term's ``enforce()``), the widths' rates, and
        their gradients dropped (the weights' optimizers no longer hold them under ``"shared"``)."""
        if self.cost_term is not None and self.scheduler.widths_learning:
            self.cost_term.step()
        self.scheduler.step()
        factor = self.schedule.width_lr_factor(self.scheduler.progress)
        for optimizer in self._optimizers:
            for group in optimizer.param_groups:
                if WIDTH_KEY in group:
                    group["lr"] = group["base_lr"] * factor
        if self.width_opt is not None:
            self.width_opt.scale_lr(factor)
            self.width_opt.zero_grad(set_to_none=True)

    # -- logs and checkpoints --------------------------------------------------------------------------------
    def log_row(self, *, prefix: str = "width:") -> dict:
        """The cost columns (``cost`` = cost / full, the cost in ``kind``'s unit, ``multiplier`` where the cost
        term has one) and every width's real value as ``<prefix><label>`` (features)."""
        row: dict = {}
        term = self.cost_term
        if term is not None:
            row["cost"] = float(term.normalised_cost().detach())
            row[term.kind] = float(model_cost(self.model, term.kind).detach())
            multiplier = getattr(term, "multiplier", None)  # optional in CostTerm: a budget's price
            if multiplier is not None:
                row["multiplier"] = multiplier
        row.update({f"{prefix}{name}": record["value"] for name, record in widths(self.model).items()})
        return row

    def state_dict(self) -> dict:
        """``scheduler``, ``cost_term``, ``width_optimizer`` and ``trace`` states (``None`` where absent); fit's
        checkpoint holds them at its top level, the Lightning callback's state beside its history."""
        return {"scheduler": self.scheduler.state_dict(),
                "cost_term": self.cost_term.state_dict() if self.cost_term is not None else None,
                "width_optimizer": self.width_opt.state_dict() if self.width_opt is not None else None,
                "trace": self.trace.state_dict() if self.trace is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (other keys are ignored). A cost term or trace the state
        lacks is left as it is; a missing schedule, or a missing width optimizer when the session has one (the
        state was saved under ``width_optimizer="adam"``), raises :class:`SoftWidthError`."""
        if not isinstance(state, dict) or state.get("scheduler") is None:
            raise SoftWidthError("WidthSession: the state holds no schedule; pass what WidthSession.state_dict() "
                                 "returned")
        if self.width_opt is not None and state.get("width_optimizer") is None:
            raise SoftWidthError("WidthSession: the state holds no width optimizer (saved with "
                                 "width_optimizer='adam'?); resume with the width_optimizer it was saved with")
        if self.cost_term is not None and state.get("cost_term") is not None:
            self.cost_term.load_state_dict(state["cost_term"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.width_opt is not None:
            self.width_opt.load_state_dict(state["width_optimizer"])
        if self.trace is not None and state.get("trace") is not None:
            self.trace.load_state_dict(state["trace"])


def _check_options(where: str, *, schedule, width_optimizer, width_travel, width_lr=None, trace=False) -> None:
    """The width options shared by FitConfig, WidthSession and SoftWidthCallback, with one message each."""
    if width_lr is not None and (not is_number(width_lr) or width_lr <= 0):
        raise SoftWidthError(f"{where}: width_lr must be None or a finite number > 0, got {width_lr!r}")
    if not is_number(width_travel) or width_travel <= 0:
        raise SoftWidthError(f"{where}: width_travel must be a finite number > 0, got {width_travel!r}")
    if not isinstance(trace, bool):
        raise SoftWidthError(f"{where}: trace must be True or False, got {trace!r}")
    if width_optimizer not in WIDTH_OPTIMIZERS:
        raise SoftWidthError(f"{where}: width_optimizer must be one of {', '.join(WIDTH_OPTIMIZERS)}, "
                             f"got {width_optimizer!r}")
    if not isinstance(schedule, Schedule):
        raise SoftWidthError(f"{where}: schedule must be a softwidth.Schedule, got {type(schedule).__name__}")
