"""A reusable training loop for plain PyTorch users: widths, cost term, schedule, logs, checkpoints.

``fit`` trains a dynamic model on an iterable of batches with ``loss = task + cost_term.penalty()``, runs
the width schedule, writes a CSV row per epoch (losses, cost, every width) and an atomic checkpoint per
epoch (loaded back with ``torch.load(weights_only=True)``; ``resume=True`` continues from the newest one),
then consolidates, optionally fine-tunes the consolidated model, and returns both.

Crash safety: each checkpoint is written to ``checkpoint.tmp``, fsynced, and renamed over ``checkpoint.pt``
after the previous one was renamed to ``checkpoint.prev.pt``. A run killed at any point (SIGKILL, power loss)
therefore leaves at least one complete checkpoint; on resume a missing, truncated, corrupt or incompatible
``checkpoint.pt`` gives a warning and ``checkpoint.prev.pt`` is used. ``weights_only=True`` means a
checkpoint that smuggles code (a pickle with arbitrary globals) is refused, never executed.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import distributed
from ._optional import progress_bar
from .consolidate import consolidate, widths
from .diagnostics import check_finite, locate_nonfinite, nonfinite_tensors
from .errors import SoftWidthError, is_number
from .export import save_consolidated
from .integrations.tensorboard import open_writer, write_row
from .objective import model_cost
from .optim import width_modules
from .schedule import Schedule, WidthScheduler
from .shrink import Shrunk, shrink
from .trace import WidthTrace
from .width import Width
from .width_optim import WidthSGD

__all__ = ["FitConfig", "FitResult", "evaluate", "fit"]

CHECKPOINT, PREVIOUS, TEMPORARY = "checkpoint.pt", "checkpoint.prev.pt", "checkpoint.tmp"
LR_DECAYS = ("constant", "cosine")
WIDTH_OPTIMIZERS = ("shared", "adam")

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
    restart: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SoftWidthError(f"FitConfig: epochs must be an int >= 1, got {self.epochs!r}")
        n = self.finetune_epochs
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SoftWidthError(f"FitConfig: finetune_epochs must be an int >= 0, got {self.finetune_epochs!r}")
        if self.width_lr is not None and (not is_number(self.width_lr) or self.width_lr <= 0):
            raise SoftWidthError(f"FitConfig: width_lr must be None or a finite number > 0, got {self.width_lr!r}")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise SoftWidthError(f"FitConfig: weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        for name in ("lr", "finetune_lr", "width_travel"):
            value = getattr(self, name)
            if not is_number(value) or value <= 0:
                raise SoftWidthError(f"FitConfig: {name} must be a finite number > 0, got {value!r}")
        if self.lr_decay not in LR_DECAYS:
            raise SoftWidthError(f"FitConfig: lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        for name in ("shrink", "trace", "restart"):
            if not isinstance(getattr(self, name), bool):
                raise SoftWidthError(f"FitConfig: {name} must be True or False, got {getattr(self, name)!r}")
        if self.width_optimizer not in WIDTH_OPTIMIZERS:
            raise SoftWidthError(f"FitConfig: width_optimizer must be one of {', '.join(WIDTH_OPTIMIZERS)}, "
                                 f"got {self.width_optimizer!r}")
        if not isinstance(self.schedule, Schedule):
            raise SoftWidthError(f"FitConfig: schedule must be a Schedule, got {type(self.schedule).__name__}")


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
        cost_term=None, val_data: Iterable | None = None, out_dir: str | os.PathLike | None = None,
        resume: bool = False, tensorboard: str | os.PathLike | bool | None = None) -> FitResult:
    """Train ``model`` (profiled, with widths) and return the trained and consolidated models.

    Args:
        model: a dynamic model; run :func:`softwidth.profile` on it first if ``cost_term`` prices FLOP/s.
        train_data: re-iterable batches with ``len()`` (e.g. a ``DataLoader``).
        loss_fn: ``loss_fn(model, batch) -> scalar task loss``.
        config: a :class:`FitConfig`.
        cost_term: a :class:`~softwidth.CostPenalty` or :class:`~softwidth.BudgetController` (or ``None``:
            widths then only follow the task loss).
        val_data: optional batches for the per-epoch validation loss.
        out_dir: where ``log.csv``, ``checkpoint.pt`` and ``checkpoint.prev.pt`` go (nothing is written if
            ``None``).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists, else (or if it cannot be loaded, with a
            warning) from ``checkpoint.prev.pt``; :class:`SoftWidthError` if neither loads.
        tensorboard: ``None`` (default) logs every CSV column to ``out_dir/tensorboard`` when tensorboard is
            installed; ``False`` never; a path logs there.

    Under ``torchrun`` (``WORLD_SIZE > 1``) it trains data-parallel with no change to the call: see
    :mod:`softwidth.distributed` (gradients averaged over ranks, only rank 0 writes). Each rank must get its
    own share of the data. With ``out_dir``, the consolidated model is also saved to ``out_dir/consolidated``
    (:func:`softwidth.export.save`; weights only if its architecture cannot be described).
    """
    _check_arguments(model, loss_fn, config, cost_term, out_dir)
    try:
        steps_per_epoch = len(train_data)  # type: ignore[arg-type]
    except TypeError:
        raise SoftWidthError("fit: train_data must have a length (e.g. a DataLoader or a list)") from None
    if steps_per_epoch < 1:
        raise SoftWidthError("fit: train_data is empty")
    total = config.epochs * steps_per_epoch
    optimizer = torch.optim.Adam(_groups(model, config, total), lr=config.lr, weight_decay=config.weight_decay)
    width_opt = _width_optimizer(model, config, total)
    trace = WidthTrace() if config.trace else None
    scheduler = WidthScheduler(model, config.schedule, total_steps=total, controller=cost_term)
    distributed.setup()  # under torchrun: join the process group (nothing in a single process)
    main = distributed.is_main()  # only rank 0 writes files and shows progress
    out = Path(out_dir) if out_dir is not None else None
    history: list[dict] = []
    start = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (out / TEMPORARY, out / "log.tmp") if main else ():  # left by a killed run: never trusted
            stale.unlink(missing_ok=True)
        if resume and ((out / CHECKPOINT).exists() or (out / PREVIOUS).exists()):
            start, history = _resume(out, model, (optimizer, width_opt, trace), scheduler, cost_term)
            if main:
                _write_csv(out / "log.csv", history)  # the log may be an epoch ahead of the checkpoint used
    distributed._replicate(model, steps_per_epoch=steps_per_epoch, start_epoch=start)
    board = open_writer(tensorboard, out) if main else None
    bar = progress_bar(range(start, config.epochs), desc="fit", unit="epoch", disable=not config.progress or not main)
    shrinking = config.shrink and bool(width_modules(model))  # a model without widths has nothing to shrink
    restart_pending = config.restart and not scheduler.frozen  # a resumed run past the freeze restarted already
    for epoch in bar:
        model.train()
        task_sum = 0.0
        shrunk = None
        for batch in train_data:
            if shrinking and shrunk is None and scheduler.frozen:
                shrunk, shrinking = _shrink(model, optimizer)
            net, opt = (shrunk.model, shrunk.optimizer) if shrunk is not None else (model, optimizer)
            if restart_pending and scheduler.frozen:
                _restart(net, opt)
                restart_pending = False
            at = f"epoch {epoch + 1}, step {scheduler.steps}"
            try:
                task = loss_fn(net, batch)
                loss = task + cost_term.penalty() if cost_term is not None and scheduler.widths_learning else task
            except SoftWidthError as err:  # e.g. NaN features reaching a layer, a diverged width: say when
                report = replace(locate_nonfinite(net, lambda: loss_fn(net, batch)), error="")  # NaN origin
                origin = f"; {report}" if report.module is not None or report.tensors else ""
                raise SoftWidthError(f"fit: at {at}: {err}{origin}") from None
            _check_loss(loss, at)
            if not torch.isfinite(loss):
                where = _nonfinite(net, loss_fn, batch, task)
                raise SoftWidthError(f"fit: loss became {float(loss)} at {at}; {where}")
            opt.zero_grad(set_to_none=True)
            if width_opt is not None:
                width_opt.zero_grad(set_to_none=True)
            _set_weight_lr(opt, config, scheduler.progress)
            loss.backward()
            distributed.average_gradients(net)  # torchrun: every rank takes the same step
            bad = nonfinite_tensors(net, grads=True)
            if bad:  # refuse the step, so NaN never enters a weight or a width
                raise SoftWidthError(f"fit: non-finite gradient at {at} in {', '.join(bad[:5])}; the step was not "
                                     "taken (lower the learning rate, check the loss for log(0), sqrt(0), x/0)")
            if trace is not None and scheduler.widths_learning:
                trace.record(model, cost_term, step=scheduler.steps, progress=scheduler.progress)
            opt.step()
            if width_opt is not None and scheduler.widths_learning:
                width_opt.step()
            if cost_term is not None and scheduler.widths_learning:
                cost_term.step()
            scheduler.step()
            _scale_width_lr(optimizer, config.schedule.width_lr_factor(scheduler.progress))
            if width_opt is not None:
                width_opt.scale_lr(config.schedule.width_lr_factor(scheduler.progress))
            task_sum += float(task.detach())
        if shrunk is not None:  # logs, checkpoints and the next epoch see the dynamic model
            check_finite(shrunk.model, where=f"fit: after epoch {epoch + 1}")
            shrunk.restore()
        check_finite(model, where=f"fit: after epoch {epoch + 1}")  # never log, save or consolidate a NaN model
        row = {"epoch": epoch + 1, "train_task": distributed._mean(task_sum / steps_per_epoch)}
        if val_data is not None:
            row["val_task"] = distributed._mean(evaluate(model, val_data, loss_fn))
        row.update(_cost_columns(model, cost_term))
        row.update({f"width:{k}": v["value"] for k, v in widths(model).items()})
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_task", "val_task", "cost")})
        if out is not None and main:
            _write_csv(out / "log.csv", history)
            if trace is not None:
                trace.write(out / "trace.csv")
            _save(out, epoch + 1, model, (optimizer, width_opt, trace), scheduler, cost_term, history)
        if board is not None:
            write_row(board, row)
    if board is not None:
        board.close()
    model.eval()
    check_finite(model, where="fit: before consolidation")
    plain = consolidate(model)
    if config.finetune_epochs:
        _finetune(plain, train_data, loss_fn, config)
        check_finite(plain, where="fit: after fine-tuning")
    plain.eval()
    if out is not None and main:
        save_consolidated(plain, out / "consolidated", widths=widths(model))
    return FitResult(model=model, consolidated=plain, history=history, widths=widths(model),
                     trace=trace.rows if trace is not None else [])


def _shrink(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Shrunk | None, bool]:
    """``(shrunk, keep trying)``: the consolidated model and its optimizer, or ``None`` (warned once) where the
    model cannot be shrunk."""
    try:
        return shrink(model, optimizer), True
    except SoftWidthError as err:
        warnings.warn(f"{err}; the frozen phase trains the masked full-size model", stacklevel=3)
        return None, False


def _restart(net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Re-initialise every weight of ``net`` as its module's ``reset_parameters`` does and forget the optimizer's
    moments: the chosen sizes then train as if from scratch (at their own fan-in, when ``net`` is the shrunk
    model; a masked full-size model keeps its full-size initial scale)."""
    with torch.random.fork_rng(devices=[]):  # a fixed draw per run; the run's own random stream is untouched
        torch.manual_seed(int(torch.initial_seed()) % 2**31 + 1)
        for module in net.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and not isinstance(module, Width):
                reset()
    optimizer.state.clear()


def _check_arguments(model, loss_fn, config, cost_term, out_dir) -> None:
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"fit: model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise SoftWidthError(f"fit: loss_fn must be a callable loss_fn(model, batch), got {type(loss_fn).__name__}")
    if not isinstance(config, FitConfig):
        raise SoftWidthError(f"fit: config must be a FitConfig, got {type(config).__name__}")
    if cost_term is not None and not all(hasattr(cost_term, a) for a in ("penalty", "step", "normalised_cost")):
        raise SoftWidthError(f"fit: cost_term must be a CostPenalty, a BudgetController or None, got "
                             f"{type(cost_term).__name__}")
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise SoftWidthError(f"fit: out_dir must be a path or None, got {type(out_dir).__name__}")


def _check_loss(loss, at: str) -> None:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        got = f"shape {tuple(loss.shape)} {loss.dtype}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise SoftWidthError(f"fit: loss_fn must return a scalar floating-point tensor, got {got} at {at}")
    if not loss.requires_grad:
        raise SoftWidthError(f"fit: the loss at {at} does not depend on a trainable parameter (no grad_fn); "
                             "compute it from model(...) inside loss_fn")


def _nonfinite(model: nn.Module, loss_fn: LossFn, batch, task: torch.Tensor) -> str:
    """One line on where a non-finite loss came from: the cost term, or the first module (a rerun)."""
    if bool(torch.isfinite(torch.as_tensor(task).detach()).all()):
        return "the task loss is finite: the cost term's penalty is not"
    return str(locate_nonfinite(model, lambda: loss_fn(model, batch)))


def _width_rate(config: FitConfig, total_steps: int) -> float:
    """The widths' step as a fraction of their range per step (``width_lr``, or ``width_travel`` crossings)."""
    s = config.schedule
    learning_steps = max(1.0, (s.freeze - s.warmup) * total_steps)
    return config.width_lr if config.width_lr is not None else config.width_travel / learning_steps


def _width_optimizer(model: nn.Module, config: FitConfig, total_steps: int) -> WidthSGD | None:
    """The widths' own optimizer under ``width_optimizer="shared"`` (``None``: no widths, or the Adam groups)."""
    ws = width_modules(model)
    if config.width_optimizer != "shared" or not ws:
        return None
    return WidthSGD(ws, lr=_width_rate(config, total_steps))


def _groups(model: nn.Module, config: FitConfig, total_steps: int) -> list[dict]:
    ws = width_modules(model)
    ids = {id(w.value) for w in ws}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if config.width_optimizer == "shared":
        return groups
    for w in ws:
        rel = _width_rate(config, total_steps)
        groups.append({"params": [w.value], "lr": rel * w.max_size, "base_lr": rel * w.max_size,
                       "weight_decay": 0.0, "width": w.label})
    return groups


def _weight_lr(config: FitConfig, progress: float) -> float:
    """The weights' learning rate at ``progress`` (fraction of the run's steps done) under ``config.lr_decay``."""
    if config.lr_decay == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return config.lr


def _set_weight_lr(optimizer: torch.optim.Optimizer, config: FitConfig, progress: float) -> None:
    """Set every non-width group's rate (computed from the progress, so a resumed run takes the same steps)."""
    lr = _weight_lr(config, progress)
    for group in optimizer.param_groups:
        if "width" not in group:
            group["lr"] = lr


def _scale_width_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        if "width" in group:
            group["lr"] = group["base_lr"] * factor


def _cost_columns(model: nn.Module, cost_term) -> dict:
    if cost_term is None:
        return {}
    row = {"cost": float(cost_term.normalised_cost().detach()),
           cost_term.kind: float(model_cost(model, cost_term.kind).detach())}
    if hasattr(cost_term, "multiplier"):
        row["multiplier"] = cost_term.multiplier
    return row


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


def _write_csv(path: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def _save(out: Path, epoch: int, model, optimizers, scheduler, cost_term, history) -> None:
    """Write the checkpoint of ``epoch`` and keep the previous one as ``checkpoint.prev.pt``.

    The new file is complete and on disk (fsync) before any rename, and each ``os.replace`` is atomic, so
    a kill at any instant leaves a loadable ``checkpoint.pt`` or ``checkpoint.prev.pt`` (or both).
    """
    optimizer, width_opt, trace = optimizers
    state = {
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "width_optimizer": width_opt.state_dict() if width_opt is not None else None,
        "trace": trace.state_dict() if trace is not None else None,
        "scheduler": scheduler.state_dict(), "cost_term": cost_term.state_dict() if cost_term else None,
        "history": history, "rng": torch.get_rng_state(),
    }
    tmp, current = out / TEMPORARY, out / CHECKPOINT
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if epoch == 1:  # a fresh run: checkpoints left by an earlier run in out_dir are not this run's fallback
        (out / PREVIOUS).unlink(missing_ok=True)
    elif current.exists():
        os.replace(current, out / PREVIOUS)
    os.replace(tmp, current)
    _fsync_dir(out)


def _fsync_dir(path: Path) -> None:
    """Make the renames durable across power loss (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _resume(out: Path, model, optimizers, scheduler, cost_term) -> tuple[int, list[dict]]:
    """Load ``checkpoint.pt``, falling back (with a warning) to ``checkpoint.prev.pt``."""
    current, previous = out / CHECKPOINT, out / PREVIOUS
    try:
        return _load(current, model, optimizers, scheduler, cost_term)
    except (SoftWidthError, FileNotFoundError) as err:
        first = str(err) if isinstance(err, SoftWidthError) else f"fit: cannot resume from {current}: missing"
    if not previous.exists():
        raise SoftWidthError(first)
    warnings.warn(f"{first}; using the previous checkpoint {previous}", stacklevel=3)
    try:
        return _load(previous, model, optimizers, scheduler, cost_term)
    except SoftWidthError as err:
        raise SoftWidthError(f"{first}; and {err}; delete {out} or resume=False to start afresh") from None


def _load(path: Path, model, optimizers, scheduler, cost_term) -> tuple[int, list[dict]]:
    if not path.exists():
        raise FileNotFoundError(path)
    optimizer, width_opt, trace = optimizers
    try:
        # weights_only: tensors and plain containers only, so a crafted pickle cannot run code
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if width_opt is not None:
            width_opt.load_state_dict(state["width_optimizer"])
        if trace is not None and state.get("trace") is not None:
            trace.load_state_dict(state["trace"])
        scheduler.load_state_dict(state["scheduler"])
        if cost_term is not None and state["cost_term"] is not None:
            cost_term.load_state_dict(state["cost_term"])
        torch.set_rng_state(state["rng"])
        return int(state["epoch"]), list(state["history"])
    except Exception as err:  # corrupt, truncated, not a checkpoint, another model's, or unsafe
        raise SoftWidthError(f"fit: cannot resume from {path}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    """One line: ``weights_only`` refusals are paragraphs of boilerplate around one telling line (the
    blocked global or opcode), which is kept."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, pickle.UnpicklingError) and len(lines) > 1:
        telling = [line for line in lines[1:] if not line.startswith(("Check the documentation", "Please file"))]
        # drop torch's advice to allowlist the global: for an untrusted file that is the wrong fix
        text = "unsafe pickle refused: " + (telling[-1] if telling else lines[0]).split(" Please use ")[0]
    else:
        text = " ".join(lines)
    return f"{type(err).__name__}: {text[:300]}"
