"""PyTorch Lightning: a callback that runs softwidth's cost term, width schedule, logs and consolidation.

``pip install softwidth[lightning]``. A callback cannot change the loss (its hooks return nothing), so the
cost term is one line in your ``training_step``; the callback does everything else::

    from softwidth.integrations.lightning import SoftWidthCallback, penalty

    class Module(L.LightningModule):
        def training_step(self, batch, index):
            task = ...
            return task + penalty(self)            # the callback's cost term (0 while widths are held)

    callback = SoftWidthCallback(weight=0.3)       # or target=0.25 (a budget controller)
    L.Trainer(max_epochs=20, callbacks=[callback]).fit(Module(), loader)
    small = callback.consolidated                  # plain, smaller model (rank 0 also saves it to dirpath)

What the callback does:

- ``setup``: builds the :class:`~softwidth.CostPenalty` (``weight``) or :class:`~softwidth.BudgetController`
  (``target``) on the profiled model (the LightningModule or the one submodule :func:`softwidth.profile`
  ran on), and tells DDP to leave the widths to it (see below).
- ``on_fit_start``: starts a :class:`~softwidth.WidthSession` (the training protocol :func:`softwidth.fit` drives
  too) over ``trainer.estimated_stepping_batches`` optimizer steps, which takes the widths out of the Trainer's
  optimizers (its own :class:`~softwidth.WidthSGD` trains them) or, with ``width_optimizer="adam"``, gives every
  width its own optimizer group (unless you did, e.g. with :func:`softwidth.param_groups`): learning rate such
  that a width can cross its range ``width_travel`` times while it learns, no weight decay.
- before each optimizer step the session's ``before_step`` (trace row, the widths' step), after it
  ``after_step``: the budget controller's projection, the schedule (warm-up, annealing, freeze), the widths'
  learning rate decay; at every epoch end it logs the session's row: ``width/<name>`` for every width, ``cost``
  (fraction of the full model), the cost in its unit (``flops`` = FLOP/s ...) and the ``multiplier`` of a
  budget controller.
- ``on_train_end``: consolidates into :attr:`consolidated` (a new plain module; the trained model is not
  touched) and, on rank 0, saves it with :func:`softwidth.export.save` to ``dirpath`` if given.

DDP: the widths are kept out of DDP's reducer (``_ddp_params_and_buffers_to_ignore``) and their gradients
are averaged over the ranks by the callback before each optimizer step, because the schedule switches their
``requires_grad`` during training (DDP's reducer would hang waiting for them or need
``find_unused_parameters``). Every rank therefore holds identical widths after every step. Nothing is deep
copied at checkpoint time (Lightning's pruning callback fails under DDP that way); the widths are ordinary
parameters in the LightningModule's state_dict, and the session's state (schedule, cost term, width optimizer,
trace) with the history is the callback's.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from .. import distributed
from ..consolidate import consolidate, widths
from ..errors import SoftWidthError
from ..objective import BudgetController, CostPenalty
from ..optim import width_modules
from ..probe import Profile
from ..schedule import Schedule, WidthScheduler
from ..session import WidthSession, _check_options
from ..width_optim import WidthSGD

__all__ = ["SoftWidthCallback", "penalty"]


class SoftWidthCallback(Callback):
    """Cost term, width schedule, width logging and consolidation for a Lightning ``Trainer``.

    The training protocol is a :class:`~softwidth.WidthSession` (:attr:`session`, from ``on_fit_start``), the one
    :func:`softwidth.fit` drives; the callback calls its hooks from Lightning's.

    Args (keyword-only):
        weight: trade-off weight of a :class:`~softwidth.CostPenalty` (``weight * cost / full cost``).
        target: budget of a :class:`~softwidth.BudgetController` (fraction of the full cost). Give at most
            one of ``weight`` and ``target``; with neither, widths follow the task loss only.
        kind: what the cost counts: "flops" (FLOP/s of audio), "macs" or "params".
        schedule: the :class:`~softwidth.Schedule` (fractions of the training's optimizer steps).
        width_travel: width learning rate, as the number of times a width can cross its range while it
            learns (used only for widths that share an optimizer group with other parameters).
        dirpath: folder where rank 0 saves the consolidated model at the end (``None``: not saved).
        width_optimizer: ``"shared"`` (default): the callback takes the widths out of the Trainer's optimizers and
            trains them with its own :class:`~softwidth.WidthSGD` (one second-moment estimate shared by all widths,
            as ``fit`` does); ``"adam"``: each width in its own group of the Trainer's optimizer (the earlier rule).
        trace: record every width-learning step (:class:`~softwidth.trace.WidthTrace`) in ``trace_rows``; with
            ``dirpath``, rank 0 also writes ``dirpath/trace.csv`` at the end (``softwidth trace DIR`` plots it).
    """

    def __init__(self, *, weight: float | None = None, target: float | None = None, kind: str = "flops",
                 schedule: Schedule = Schedule(), width_travel: float = 3.0,
                 dirpath: str | os.PathLike | None = None, width_optimizer: str = "shared",
                 trace: bool = False) -> None:
        super().__init__()
        if weight is not None and target is not None:
            raise SoftWidthError("SoftWidthCallback: give weight (a fixed trade-off) or target (a budget), not both")
        _check_options("SoftWidthCallback", schedule=schedule, width_optimizer=width_optimizer,
                       width_travel=width_travel, trace=trace)
        self.weight, self.target, self.kind = weight, target, kind
        self.schedule, self.width_travel = schedule, float(width_travel)
        self.width_optimizer, self.trace = width_optimizer, trace
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.model: nn.Module | None = None
        self.cost_term: CostPenalty | BudgetController | None = None
        self.session: WidthSession | None = None
        self.consolidated: nn.Module | None = None
        self.history: list[dict] = []
        self._pending: dict | None = None
        self._asked = False

    @property
    def scheduler(self) -> WidthScheduler | None:
        """The session's :class:`~softwidth.schedule.WidthScheduler` (``None`` before ``on_fit_start``)."""
        return self.session.scheduler if self.session is not None else None

    @property
    def width_opt(self) -> WidthSGD | None:
        """The session's :class:`~softwidth.WidthSGD` (``None`` under ``width_optimizer="adam"``)."""
        return self.session.width_opt if self.session is not None else None

    @property
    def trace_rows(self) -> list[dict]:
        """The recorded width trace (empty unless ``trace=True``)."""
        return self.session.trace.rows if self.session is not None and self.session.trace is not None else []

    # -- the cost term ----------------------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """The cost term to add to the task loss: differentiable while widths learn, else a zero tensor."""
        self._asked = True
        if self.session is None:
            return torch.zeros((), device=_device(self.model))
        return self.session.penalty()

    # -- hooks --------------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.model = _profiled(pl_module)
        if self.weight is not None:
            self.cost_term = CostPenalty(self.model, weight=self.weight, kind=self.kind)
        elif self.target is not None:
            self.cost_term = BudgetController(self.model, target=self.target, kind=self.kind)
        # DDP must not reduce the widths: the callback averages them (their requires_grad changes over time)
        ids = {id(w.value) for w in width_modules(pl_module)}
        names = [n for n, p in pl_module.named_parameters() if id(p) in ids]
        ignored = list(getattr(pl_module, "_ddp_params_and_buffers_to_ignore", []))
        pl_module._ddp_params_and_buffers_to_ignore = ignored + [n for n in names if n not in ignored]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = self.model if self.model is not None else _profiled(pl_module)
        total = trainer.estimated_stepping_batches
        if not isinstance(total, int) and not (isinstance(total, float) and total == int(total)):
            raise SoftWidthError("SoftWidthCallback: the schedule needs a finite number of steps; set max_epochs "
                                 "or max_steps on the Trainer")
        with torch.no_grad():  # every rank starts from rank 0's widths (DDP does not broadcast ignored ones)
            for w in width_modules(model):
                distributed.broadcast_module(w)
        self.session = WidthSession(model, self.cost_term, total_steps=int(total), schedule=self.schedule,
                                    width_optimizer=self.width_optimizer, width_travel=self.width_travel,
                                    trace=self.trace)
        self.session.adopt(trainer.optimizers)
        if self._pending is not None:
            self._restore(self._pending)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if self.session is None or self.model is None:
            return
        distributed.average_gradients(torch.nn.ModuleList(width_modules(self.model)))
        if optimizer is trainer.optimizers[0]:  # once per step: the trace row and the widths' own step
            self.session.before_step()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.session is None:
            return
        while self.session.scheduler.steps < trainer.global_step:  # once per optimizer step (gradient accumulation)
            self.session.after_step()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.session is None:
            return
        row = self.session.log_row(prefix="width/")
        if self.cost_term is not None and not self._asked and self.session.scheduler.widths_learning:
            rank_zero_warn("SoftWidthCallback: penalty() was never called this epoch, so the cost term is "
                           "not in the loss; return task + penalty(self) from training_step")
        self._asked = False
        pl_module.log_dict(row, on_step=False, on_epoch=True)  # the same on every rank: no sync needed
        self.history.append({"epoch": trainer.current_epoch + 1, **row})

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.model is None:
            return
        was = self.model.training
        self.consolidated = consolidate(self.model.eval()).eval()
        self.model.train(was)
        if self.dirpath is not None and trainer.is_global_zero:
            from ..export import save_consolidated

            save_consolidated(self.consolidated, self.dirpath, widths=widths(self.model))
            if self.session is not None and self.session.trace is not None:
                self.session.trace.write(self.dirpath / "trace.csv")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The session's state (:meth:`~softwidth.WidthSession.state_dict`) and the per-epoch history."""
        session = self.session.state_dict() if self.session is not None else {}
        return {**session, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores callbacks before on_fit_start: keep the state until the session exists
        if self.session is None:
            self._pending = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state: dict) -> None:
        if state.get("scheduler") is not None:  # saved after on_fit_start: the session's state is there
            self.session.load_state_dict(state)
        self.history = list(state.get("history", []))
        self._pending = None


def penalty(module: LightningModule) -> torch.Tensor:
    """The :class:`SoftWidthCallback`'s cost term for ``module``'s trainer: ``task + penalty(self)``."""
    callbacks = [c for c in module.trainer.callbacks if isinstance(c, SoftWidthCallback)]
    if len(callbacks) != 1:
        raise SoftWidthError(f"penalty: the Trainer has {len(callbacks)} SoftWidthCallback(s); give it exactly one")
    return callbacks[0].penalty()


def _profiled(pl_module: LightningModule) -> nn.Module:
    """The LightningModule or the one submodule that softwidth.profile ran on (the cost needs its probe)."""
    found = [m for m in pl_module.modules() if isinstance(getattr(m, "softwidth_profile", None), Profile)]
    if pl_module in found:
        return pl_module
    if len(found) != 1:
        raise SoftWidthError(
            f"SoftWidthCallback: found {len(found)} profiled modules in {type(pl_module).__name__}; run "
            "softwidth.profile(model, example, seconds=...) once on the module whose cost is trained"
        )
    return found[0]


def _device(model: nn.Module | None) -> torch.device:
    param = next(model.parameters(), None) if model is not None else None
    return param.device if param is not None else torch.device("cpu")
