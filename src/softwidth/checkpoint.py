"""fit's files: the per-epoch log and crash-safe checkpoints that resume bit for bit.

A checkpoint is one ``torch.save`` dict: the :class:`~softwidth.WidthSession`'s state (``scheduler``,
``cost_term``, ``width_optimizer``, ``trace``) at its top level, with ``epoch``, ``model``, ``optimizer``
(the weights' Adam), ``history`` and ``rng`` beside it.

Crash safety: each checkpoint is written to ``checkpoint.tmp``, fsynced, and renamed over ``checkpoint.pt``
after the previous one was renamed to ``checkpoint.prev.pt``. A run killed at any point (SIGKILL, power loss)
therefore leaves at least one complete checkpoint; on resume a missing, truncated, corrupt or incompatible
``checkpoint.pt`` gives a warning and ``checkpoint.prev.pt`` is used. ``weights_only=True`` means a
checkpoint that smuggles code (a pickle with arbitrary globals) is refused, never executed.
"""

from __future__ import annotations

import csv
import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import SoftWidthError
from .session import WidthSession

__all__: list[str] = []  # used by fit; its public face is fit(..., out_dir=..., resume=...)

CHECKPOINT, PREVIOUS, TEMPORARY = "checkpoint.pt", "checkpoint.prev.pt", "checkpoint.tmp"


def clear_stale(out: Path) -> None:
    """Remove the temporaries a killed run left in ``out``: they are never trusted."""
    for stale in (out / TEMPORARY, out / "log.tmp"):
        stale.unlink(missing_ok=True)


def has_checkpoint(out: Path) -> bool:
    return (out / CHECKPOINT).exists() or (out / PREVIOUS).exists()


def write_log(path: Path, history: list[dict]) -> None:
    """Write the per-epoch rows as CSV (columns in order of first appearance), atomically replaced."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def save_checkpoint(out: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    session: WidthSession, history: list[dict]) -> None:
    """Write the checkpoint of ``epoch`` and keep the previous one as ``checkpoint.prev.pt``.

    The new file is complete and on disk (fsync) before any rename, and each ``os.replace`` is atomic, so
    a kill at any instant leaves a loadable ``checkpoint.pt`` or ``checkpoint.prev.pt`` (or both).
    """
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             **session.state_dict(), "history": history, "rng": torch.get_rng_state()}
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


def resume_checkpoint(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                      session: WidthSession) -> tuple[int, list[dict]]:
    """``(epochs done, history)`` from ``checkpoint.pt``, falling back (with a warning) to ``checkpoint.prev.pt``;
    :class:`SoftWidthError` naming both if neither loads."""
    current, previous = out / CHECKPOINT, out / PREVIOUS
    try:
        return _load(current, model, optimizer, session)
    except (SoftWidthError, FileNotFoundError) as err:
        first = str(err) if isinstance(err, SoftWidthError) else f"fit: cannot resume from {current}: missing"
    if not previous.exists():
        raise SoftWidthError(first)
    warnings.warn(f"{first}; using the previous checkpoint {previous}", stacklevel=4)  # the caller of fit
    try:
        return _load(previous, model, optimizer, session)
    except SoftWidthError as err:
        raise SoftWidthError(f"{first}; and {err}; delete {out} or resume=False to start afresh") from None


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


def _load(path: Path, model, optimizer, session: WidthSession) -> tuple[int, list[dict]]:
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        # weights_only: tensors and plain containers only, so a crafted pickle cannot run code
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        session.load_state_dict(state)
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
