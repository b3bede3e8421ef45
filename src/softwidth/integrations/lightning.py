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
- ``on_fit_start``: gives every width its own optimizer group (unless you did, e.g. with
  :func:`softwidth.param_groups`): learning rate such that a width can cross its range ``width_travel``
  times while it learns, no weight decay; starts the :class:`~softwidth.schedule.WidthScheduler` over
  ``trainer.estimated_stepping_batches`` optimizer steps.
- after each optimizer step: the schedule (warm-up, annealing, freeze), the budget controller's
  multiplier, the widths' learning rate decay; at every epoch end it logs ``width/<name>`` for every
  width, ``cost`` (fraction of the full model), the cost in its unit (``flops`` = FLOP/s ...) and the
  ``multiplier`` of a budget controller.
- ``on_train_end``: consolidates into :attr:`consolidated` (a new plain module; the trained model is not
  touched) and, on rank 0, saves it with :func:`softwidth.export.save` to ``dirpath`` if given.

DDP: the widths are kept out of DDP's reducer (``_ddp_params_and_buffers_to_ignore``) and their gradients
are averaged over the ranks by the callback before each optimizer step, because the schedule switches their
``requires_grad`` during training (DDP's reducer would hang waiting for them or need
``find_unused_parameters``). Every rank therefore holds identical widths after every step. Nothing is deep
copied at checkpoint time (Lightning's pruning callback fails under DDP that way); the widths are ordinary
parameters in the LightningModule's state_dict, and the schedule is the callback's state.
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
from ..errors import SoftWidthError, is_number
from ..objective import BudgetController, CostPenalty, model_cost
from ..optim import width_modules
from ..probe import Profile
from ..schedule import Schedule, WidthScheduler
from ..trace import WidthTrace
from ..session import WIDTH_OPTIMIZERS
from ..width_optim import WidthSGD

__all__ = ["SoftWidthCallback", "penalty"]


class SoftWidthCallback(Callback):
    """Cost term, width schedule, width logging and consolidation for a Lightning ``Trainer``.

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
        if not isinstance(schedule, Schedule):
            raise SoftWidthError(f"SoftWidthCallback: schedule must be a softwidth.Schedule, got {schedule!r}")
        if not is_number(width_travel) or width_travel <= 0:
            raise SoftWidthError(f"SoftWidthCallback: width_travel must be a finite number > 0, got {width_travel!r}")
        self.weight, self.target, self.kind = weight, target, kind
        if width_optimizer not in WIDTH_OPTIMIZERS:
            raise SoftWidthError(f"SoftWidthCallback: width_optimizer must be one of {', '.join(WIDTH_OPTIMIZERS)}, "
                                 f"got {width_optimizer!r}")
        if not isinstance(trace, bool):
            raise SoftWidthError(f"SoftWidthCallback: trace must be True or False, got {trace!r}")
        self.schedule, self.width_travel = schedule, float(width_travel)
        self.width_optimizer, self.width_opt = width_optimizer, None
        self.trace = WidthTrace() if trace else None
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.model: nn.Module | None = None
        self.cost_term: CostPenalty | BudgetController | None = None
        self.scheduler: WidthScheduler | None = None
        self.consolidated: nn.Module | None = None
        self.history: list[dict] = []
        self._pending: dict | None = None
        self._asked = False

    # -- the cost term ----------------------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """The cost term to add to the task loss: differentiable while widths learn, else a zero tensor."""
        self._asked = True
        if self.cost_term is None or self.scheduler is None or not self.scheduler.widths_learning:
            return torch.zeros((), device=_device(self.model))
        return self.cost_term.penalty()

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
        self._width_groups(trainer, model, int(total))
        self.scheduler = WidthScheduler(model, self.schedule, total_steps=int(total), controller=self.cost_term)
        if self._pending is not None:
            self._restore(self._pending)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if self.model is None:
            return
        distributed.average_gradients(torch.nn.ModuleList(width_modules(self.model)))
        learning = self.scheduler is not None and self.scheduler.widths_learning
        if learning and self.trace is not None:
            self.trace.record(self.model, self.cost_term, step=self.scheduler.steps, progress=self.scheduler.progress)
        if learning and self.width_opt is not None and optimizer is trainer.optimizers[0]:
            self.width_opt.step()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.scheduler is None:
            return
        while self.scheduler.steps < trainer.global_step:  # once per optimizer step (gradient accumulation)
            if self.cost_term is not None and self.scheduler.widths_learning:
                self.cost_term.step()
            self.scheduler.step()
            factor = self.schedule.width_lr_factor(self.scheduler.progress)
            if self.width_opt is not None:
                self.width_opt.scale_lr(factor)
                self.width_opt.zero_grad(set_to_none=True)  # the Trainer's optimizers no longer hold the widths
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    if "softwidth_base_lr" in group:
                        group["lr"] = group["softwidth_base_lr"] * factor

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.model is None:
            return
        row = {f"width/{name}": record["value"] for name, record in widths(self.model).items()}
        if self.cost_term is not None:
            row["cost"] = float(self.cost_term.normalised_cost().detach())
            row[self.kind] = float(model_cost(self.model, self.kind).detach())
            if isinstance(self.cost_term, BudgetController):
                row["multiplier"] = self.cost_term.multiplier
            if not self._asked and self.scheduler is not None and self.scheduler.widths_learning:
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
            if self.trace is not None:
                self.trace.write(self.dirpath / "trace.csv")

    @property
    def trace_rows(self) -> list[dict]:
        """The recorded width trace (empty unless ``trace=True``)."""
        return self.trace.rows if self.trace is not None else []

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "cost_term": self.cost_term.state_dict() if self.cost_term else None, "history": self.history,
                "width_optimizer": self.width_opt.state_dict() if self.width_opt is not None else None}

    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores callbacks after on_fit_start: apply now if the scheduler exists, else then
        if self.scheduler is None:
            self._pending = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state: dict) -> None:
        if state.get("cost_term") is not None and self.cost_term is not None:
            self.cost_term.load_state_dict(state["cost_term"])
        if state.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("width_optimizer") is not None and self.width_opt is not None:
            self.width_opt.load_state_dict(state["width_optimizer"])
        self.history = list(state.get("history", []))
        self._pending = None

    # -- helpers -----------------------------------------------------------------------------------------
    def _width_groups(self, trainer: Trainer, model: nn.Module, total: int) -> None:
        """Each width in a group of its own (lr from ``width_travel``, no weight decay) unless it already is."""
        ws = width_modules(model)
        by_id = {id(w.value): w for w in ws}
        found: set[int] = set()
        s = self.schedule
        learning_steps = max(1.0, (s.freeze - s.warmup) * total)
        shared = self.width_optimizer == "shared"
        for optimizer in trainer.optimizers:
            for group in list(optimizer.param_groups):
                mine = [p for p in group["params"] if id(p) in by_id]
                found.update(id(p) for p in mine)
                if not mine:
                    continue
                if shared:  # the callback's WidthSGD trains them
                    group["params"] = [p for p in group["params"] if id(p) not in by_id]
                    continue
                if len(mine) == len(group["params"]):  # the user's own width group: keep its lr
                    group.setdefault("softwidth_base_lr", group["lr"])
                    continue
                group["params"] = [p for p in group["params"] if id(p) not in by_id]
                for p in mine:
                    w = by_id[id(p)]
                    lr = self.width_travel / learning_steps * w.max_size
                    optimizer.add_param_group({"params": [p], "lr": lr, "weight_decay": 0.0,
                                               "softwidth_base_lr": lr, "width": w.label})
        if shared:
            self.width_opt = WidthSGD(ws, lr=self.width_travel / learning_steps) if ws else None
            return
        missing = [w.label for w in ws if id(w.value) not in found]
        if missing:
            raise SoftWidthError(f"SoftWidthCallback: the widths {missing} are in no optimizer; pass all of "
                                 "self.parameters() (or softwidth.param_groups(self, width_lr=...)) to it")


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
