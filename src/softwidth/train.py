"""A reusable training loop for plain PyTorch users: widths, cost term, schedule, logs, checkpoints.

``fit`` trains a dynamic model on an iterable of batches with ``loss = task + cost_term.penalty()``, runs
the width schedule, writes a CSV row per epoch (losses, cost, every width) and an atomic checkpoint per
epoch (loaded back with ``torch.load(weights_only=True)``; ``resume=True`` continues from the newest one),
then consolidates, optionally fine-tunes the consolidated model, and returns both.

The widths' side of a step is a :class:`~softwidth.WidthSession` (the protocol the Lightning callback drives
too); ``fit`` orchestrates around it: the weights' optimizer and learning-rate decay, shrinking after the
freeze, DDP, logs, TensorBoard, NaN tracing, and crash-safe checkpoints (:mod:`softwidth.checkpoint`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import distributed
from ._optional import progress_bar
from .checkpoint import clear_stale, has_checkpoint, resume_checkpoint, save_checkpoint, write_log
from .consolidate import consolidate, widths
from .diagnostics import check_finite, locate_nonfinite, nonfinite_tensors
from .errors import SoftWidthError, is_number
from .export import save_consolidated
from .integrations.tensorboard import open_writer, write_row
from .objective import CostTerm, _check_cost_term
from .optim import WIDTH_KEY, width_modules
from .schedule import Schedule
from .session import WidthSession, _check_options
from .shrink import Shrunk, shrink
from .width import Width

__all__ = ["FitConfig", "FitResult", "evaluate", "fit"]

LR_DECAYS = ("constant", "cosine")

LossFn = Callable[[nn.Module, object], torch.Tensor]


@dataclass(frozen=True)
class FitConfig:
    """Options of :func:`fit`.

    ``width_lr``: Adam learning rate of each width as a fraction of its ``max_size`` per step (default: the
    width can cross its range ``width_travel`` times during the learning phase). ``finetune_epochs``:
    epochs of task-only training of the consolidated model after width learning (0 = none).
    ``shrink``: once the schedule freezes the widths, train the consolidated model (the same function at the
    chosen sizes, :mod:`softwidth.shrink`) instead of the masked full-size one, writing it back at the end of
    every epoch; the frozen phase then costs what the small model costs. ``loss_fn`` must use the model it is
    given. Falls back to the masked model, with a warning, where the model cannot be shrunk (e.g. tied weights).
    ``lr_decay``: the weights' learning rate over the run: ``"constant"`` (``lr`` throughout) or ``"cosine"``
    (half a cosine from ``lr`` at the first step to 0 after the last, as in SGDR without restarts); the
    widths' own rate follows the schedule either way. ``finetune_lr`` stays constant.
    ``width_optimizer``: ``"shared"`` (default) trains the widths with :class:`~softwidth.WidthSGD` (momentum SGD,
    one second-moment estimate shared by all widths, steps in fractions of each width's range), so their relative
    speeds follow their gradients; ``"adam"``, the earlier rule, gives each width its own Adam group, which makes
    every width move at about the same speed (docs/method.md). ``trace``: record every width-learning step
    (:class:`~softwidth.trace.WidthTrace`) in :attr:`FitResult.trace` and ``out_dir/trace.csv``. ``restart``: at
    the freeze, re-initialise the (shrunk) model's weights and the optimizer's moments, so the chosen sizes train
    from their own initialisation for the rest of the run (the width-learning phase only chooses the sizes).
    ``True`` calls every module's ``reset_parameters`` (PyTorch's default initialisation, a fixed draw per run);
    a callable ``restart(net)`` re-initialises ``net`` (the model trained from the freeze on: the consolidated
    model when shrinking, else the masked dynamic one) in place, e.g. with the model's own initialisation scheme
    or the weights a from-scratch model of the chosen sizes would start from; the moments are cleared either way.
    """

    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 0.0
    width_lr: float | None = None
    width_travel: float = 3.0
    schedule: Schedule = field(default_factory=Schedule)
    finetune_epochs: int = 0
    finetune_lr: float = 1e-3
    shrink: bool = True
    lr_decay: str = "constant"
    progress: bool = True
    width_optimizer: str = "shared"
    trace: bool = False
    restart: bool | Callable[[nn.Module], None] = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SoftWidthError(f"FitConfig: epochs must be an int >= 1, got {self.epochs!r}")
        n = self.finetune_epochs
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SoftWidthError(f"FitConfig: finetune_epochs must be an int >= 0, got {self.finetune_epochs!r}")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise SoftWidthError(f"FitConfig: weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        for name in ("lr", "finetune_lr"):
            value = getattr(self, name)
            if not is_number(value) or value <= 0:
                raise SoftWidthError(f"FitConfig: {name} must be a finite number > 0, got {value!r}")
        if self.lr_decay not in LR_DECAYS:
            raise SoftWidthError(f"FitConfig: lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if not isinstance(self.shrink, bool):
            raise SoftWidthError(f"FitConfig: shrink must be True or False, got {self.shrink!r}")
        if not isinstance(self.restart, bool) and not callable(self.restart):
            raise SoftWidthError(f"FitConfig: restart must be True, False or a callable restart(net), got "
                                 f"{self.restart!r}")
        _check_options("FitConfig", schedule=self.schedule, width_optimizer=self.width_optimizer,
                       width_lr=self.width_lr, width_travel=self.width_travel, trace=self.trace)


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained dynamic model, its consolidation, the per-epoch history."""

    model: nn.Module
    consolidated: nn.Module
    history: list[dict]
    widths: dict[str, dict]
    trace: list[dict] = field(default_factory=list)


def evaluate(model: nn.Module, data: Iterable, loss_fn: LossFn) -> float:
    """Mean task loss of ``model`` in eval mode over ``data`` (weighted by batch count)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in data:
            total += float(loss_fn(model, batch))
            count += 1
    model.train(was)
    if count == 0:
        raise SoftWidthError("evaluate: the data yielded no batches")
    return total / count


def fit(model: nn.Module, train_data: Iterable, *, loss_fn: LossFn, config: FitConfig = FitConfig(),
        cost_term: CostTerm | None = None, val_data: Iterable | None = None,
        out_dir: str | os.PathLike | None = None, resume: bool = False,
        tensorboard: str | os.PathLike | bool | None = None) -> FitResult:
    """Train ``model`` (profiled, with widths) and return the trained and consolidated models.

    Args:
        model: a dynamic model; run :func:`softwidth.profile` on it first if ``cost_term`` prices FLOP/s.
        train_data: re-iterable batches with ``len()`` (e.g. a ``DataLoader``).
        loss_fn: ``loss_fn(model, batch) -> scalar task loss``.
        config: a :class:`FitConfig`.
        cost_term: a :class:`~softwidth.CostPenalty`, a :class:`~softwidth.BudgetController` (any
            :class:`~softwidth.CostTerm`) or ``None``: widths then only follow the task loss.
        val_data: optional batches for the per-epoch validation loss.
        out_dir: where ``log.csv``, ``checkpoint.pt`` and ``checkpoint.prev.pt`` go (nothing is written if
            ``None``).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists, else (or if it cannot be loaded, with a
            warning) from ``checkpoint.prev.pt``; :class:`SoftWidthError` if neither loads.
        tensorboard: ``None`` (default) logs every CSV column to ``out_dir/tensorboard`` when tensorboard is
            installed; ``False`` never; a path logs there.

    The widths' side of every step (groups, schedule, cost term, trace, log columns) is a
    :class:`~softwidth.WidthSession`; ``fit`` adds the weights' Adam, logs, checkpoints, shrinking and DDP.
    Under ``torchrun`` (``WORLD_SIZE > 1``) it trains data-parallel with no change to the call: see
    :mod:`softwidth.distributed` (gradients averaged over ranks, only rank 0 writes). Each rank must get its
    own share of the data. With ``out_dir``, the consolidated model is also saved to ``out_dir/consolidated``
    (:func:`softwidth.export.save`; weights only if its architecture cannot be described).
    """
    _check_arguments(model, loss_fn, config, cost_term, out_dir)
    steps_per_epoch = _steps_per_epoch(train_data)
    session = WidthSession(model, cost_term, total_steps=config.epochs * steps_per_epoch, schedule=config.schedule,
                           width_optimizer=config.width_optimizer, width_lr=config.width_lr,
                           width_travel=config.width_travel, trace=config.trace)
    optimizer = torch.optim.Adam(session.param_groups(), lr=config.lr, weight_decay=config.weight_decay)
    session.adopt([optimizer])
    distributed.setup()  # under torchrun: join the process group (nothing in a single process)
    main = distributed.is_main()  # only rank 0 writes files and shows progress
    out = Path(out_dir) if out_dir is not None else None
    start, history = _begin(out, resume, model, optimizer, session, main)
    distributed._replicate(model, steps_per_epoch=steps_per_epoch, start_epoch=start)
    board = open_writer(tensorboard, out) if main else None
    loop = _Loop(model, optimizer, session, loss_fn, config)  # after the resume: it knows whether it froze
    bar = progress_bar(range(start, config.epochs), desc="fit", unit="epoch", disable=not config.progress or not main)
    for epoch in bar:
        row = {"epoch": epoch + 1, "train_task": distributed._mean(loop.epoch(train_data, epoch) / steps_per_epoch)}
        if val_data is not None:
            row["val_task"] = distributed._mean(evaluate(model, val_data, loss_fn))
        row.update(session.log_row())
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_task", "val_task", "cost")})
        if out is not None and main:
            write_log(out / "log.csv", history)
            if session.trace is not None:
                session.trace.write(out / "trace.csv")
            save_checkpoint(out, epoch + 1, model, optimizer, session, history)
        if board is not None:
            write_row(board, row)
    if board is not None:
        board.close()
    return _finish(model, train_data, loss_fn, config, session, history, out if main else None)


def _steps_per_epoch(train_data: Iterable) -> int:
    try:
        steps = len(train_data)  # type: ignore[arg-type]
    except TypeError:
        raise SoftWidthError("fit: train_data must have a length (e.g. a DataLoader or a list)") from None
    if steps < 1:
        raise SoftWidthError("fit: train_data is empty")
    return steps


def _begin(out: Path | None, resume: bool, model, optimizer, session: WidthSession,
           main: bool) -> tuple[int, list[dict]]:
    """``(first epoch, history)``: prepare ``out`` and, with ``resume`` and a checkpoint there, load it."""
    if out is None:
        return 0, []
    out.mkdir(parents=True, exist_ok=True)
    if main:
        clear_stale(out)
    if not resume or not has_checkpoint(out):
        return 0, []
    start, history = resume_checkpoint(out, model, optimizer, session)
    if main:
        write_log(out / "log.csv", history)  # the log may be an epoch ahead of the checkpoint used
    return start, history


class _Loop:
    """fit's batches: one optimizer step each, on the dynamic model or, from the freeze to the epoch's end, on
    its consolidation (:mod:`softwidth.shrink`), with the weights re-initialised once at the freeze if asked."""

    def __init__(self, model: nn.Module, optimizer, session: WidthSession, loss_fn: LossFn, config: FitConfig):
        self.model, self.optimizer, self.session, self.loss_fn, self.config = model, optimizer, session, loss_fn, config
        self.shrinking = config.shrink and bool(width_modules(model))  # a model without widths has nothing to shrink
        self.restart_pending = config.restart is not False and not session.scheduler.frozen  # resumed past it: done

    def epoch(self, data: Iterable, epoch: int) -> float:
        """Train one epoch (``epoch`` counted from 0); returns the sum of its task losses."""
        self.model.train()
        scheduler, total, shrunk = self.session.scheduler, 0.0, None
        for batch in data:
            if self.shrinking and shrunk is None and scheduler.frozen:
                shrunk, self.shrinking = _shrink(self.model, self.optimizer)
            net, opt = (shrunk.model, shrunk.optimizer) if shrunk is not None else (self.model, self.optimizer)
            if self.restart_pending and scheduler.frozen:
                _restart(net, opt, self.config.restart)
                self.restart_pending = False
            total += self._step(net, opt, batch, f"epoch {epoch + 1}, step {scheduler.steps}")
        if shrunk is not None:  # logs, checkpoints and the next epoch see the dynamic model
            check_finite(shrunk.model, where=f"fit: after epoch {epoch + 1}")
            shrunk.restore()
        check_finite(self.model, where=f"fit: after epoch {epoch + 1}")  # never log, save or consolidate a NaN model
        return total

    def _step(self, net: nn.Module, opt: torch.optim.Optimizer, batch, at: str) -> float:
        """One step of ``net`` on ``batch`` (``at`` says when, for errors); returns the task loss."""
        session = self.session
        task, loss = self._loss(net, batch, at)
        opt.zero_grad(set_to_none=True)
        session.zero_grad()
        _set_weight_lr(opt, self.config, session.scheduler.progress)
        loss.backward()
        distributed.average_gradients(net)  # torchrun: every rank takes the same step
        bad = nonfinite_tensors(net, grads=True)
        if bad:  # refuse the step, so NaN never enters a weight or a width
            raise SoftWidthError(f"fit: non-finite gradient at {at} in {', '.join(bad[:5])}; the step was not "
                                 "taken (lower the learning rate, check the loss for log(0), sqrt(0), x/0)")
        session.before_step()
        opt.step()
        session.after_step()
        return float(task.detach())

    def _loss(self, net: nn.Module, batch, at: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(task, task + penalty)``, refused with the origin of a NaN or a malformed loss."""
        try:
            task = self.loss_fn(net, batch)
            penalty = self.session.penalty()
        except SoftWidthError as err:  # e.g. NaN features reaching a layer, a diverged width: say when
            report = replace(locate_nonfinite(net, lambda: self.loss_fn(net, batch)), error="")  # NaN origin
            origin = f"; {report}" if report.module is not None or report.tensors else ""
            raise SoftWidthError(f"fit: at {at}: {err}{origin}") from None
        _check_loss(task, at)
        loss = task + penalty
        if not loss.requires_grad:
            raise SoftWidthError(f"fit: the loss at {at} does not depend on a trainable parameter (no grad_fn); "
                                 "compute it from model(...) inside loss_fn")
        if not torch.isfinite(loss):
            where = _nonfinite(net, self.loss_fn, batch, task)
            raise SoftWidthError(f"fit: loss became {float(loss)} at {at}; {where}")
        return task, loss


def _finish(model: nn.Module, data: Iterable, loss_fn: LossFn, config: FitConfig, session: WidthSession,
            history: list[dict], out: Path | None) -> FitResult:
    """Consolidate (and fine-tune) the trained model; save it to ``out/consolidated`` unless ``out`` is None."""
    model.eval()
    check_finite(model, where="fit: before consolidation")
    plain = consolidate(model)
    if config.finetune_epochs:
        _finetune(plain, data, loss_fn, config)
        check_finite(plain, where="fit: after fine-tuning")
    plain.eval()
    if out is not None:
        save_consolidated(plain, out / "consolidated", widths=widths(model))
    return FitResult(model=model, consolidated=plain, history=history, widths=widths(model),
                     trace=session.trace.rows if session.trace is not None else [])


def _shrink(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Shrunk | None, bool]:
    """``(shrunk, keep trying)``: the consolidated model and its optimizer, or ``None`` (warned once) where the
    model cannot be shrunk."""
    try:
        return shrink(model, optimizer), True
    except SoftWidthError as err:
        warnings.warn(f"{err}; the frozen phase trains the masked full-size model", stacklevel=4)
        return None, False


def _restart(net: nn.Module, optimizer: torch.optim.Optimizer, how: bool | Callable[[nn.Module], None]) -> None:
    """Re-initialise every weight of ``net`` (``how(net)`` if ``how`` is callable, else as each module's
    ``reset_parameters`` does) and forget the optimizer's moments: the chosen sizes then train as if from scratch
    (at their own fan-in, when ``net`` is the shrunk model; a masked full-size model keeps its full-size initial
    scale)."""
    optimizer.state.clear()
    with torch.random.fork_rng(devices=[]):  # a fixed draw per run; the run's own random stream is untouched
        torch.manual_seed(int(torch.initial_seed()) % 2**31 + 1)
        if callable(how):
            with torch.no_grad():
                how(net)
        else:
            for module in net.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset) and not isinstance(module, Width):
                    reset()
    if callable(how):
        check_finite(net, where="fit: after the restart callable")


def _check_arguments(model, loss_fn, config, cost_term, out_dir) -> None:
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"fit: model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise SoftWidthError(f"fit: loss_fn must be a callable loss_fn(model, batch), got {type(loss_fn).__name__}")
    if not isinstance(config, FitConfig):
        raise SoftWidthError(f"fit: config must be a FitConfig, got {type(config).__name__}")
    _check_cost_term(cost_term, "fit")
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise SoftWidthError(f"fit: out_dir must be a path or None, got {type(out_dir).__name__}")


def _check_loss(task, at: str) -> None:
    if not isinstance(task, torch.Tensor) or task.numel() != 1 or not task.is_floating_point():
        got = f"shape {tuple(task.shape)} {task.dtype}" if isinstance(task, torch.Tensor) else type(task).__name__
        raise SoftWidthError(f"fit: loss_fn must return a scalar floating-point tensor, got {got} at {at}")


def _nonfinite(model: nn.Module, loss_fn: LossFn, batch, task: torch.Tensor) -> str:
    """One line on where a non-finite loss came from: the cost term, or the first module (a rerun)."""
    if bool(torch.isfinite(torch.as_tensor(task).detach()).all()):
        return "the task loss is finite: the cost term's penalty is not"
    return str(locate_nonfinite(model, lambda: loss_fn(model, batch)))


def _weight_lr(config: FitConfig, progress: float) -> float:
    """The weights' learning rate at ``progress`` (fraction of the run's steps done) under ``config.lr_decay``."""
    if config.lr_decay == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return config.lr


def _set_weight_lr(optimizer: torch.optim.Optimizer, config: FitConfig, progress: float) -> None:
    """Set every weight group's rate (computed from the progress, so a resumed run takes the same steps); the
    widths' groups are the session's."""
    lr = _weight_lr(config, progress)
    for group in optimizer.param_groups:
        if WIDTH_KEY not in group:
            group["lr"] = lr


def _finetune(plain: nn.Module, data: Iterable, loss_fn: LossFn, config: FitConfig) -> None:
    opt = torch.optim.Adam(plain.parameters(), lr=config.finetune_lr)
    plain.train()
    bar = progress_bar(range(config.finetune_epochs), desc="fine-tune", unit="epoch",
               disable=not config.progress or not distributed.is_main())
    for _ in bar:
        for batch in data:
            loss = loss_fn(plain, batch)
            if not torch.isfinite(loss):
                raise SoftWidthError(f"fit: fine-tuning loss became {float(loss)}; "
                                     f"{locate_nonfinite(plain, lambda: loss_fn(plain, batch))}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(plain)
            opt.step()
