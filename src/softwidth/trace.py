"""A per-step width trace: why each width went where it went.

:class:`WidthTrace` records, at every optimizer step while the widths learn (and the step at the freeze), each
width's real value, its task gradient and its cost gradient, the cost relative to the target (or to the full
model) and the cost term's multiplier. ``fit(..., config=FitConfig(trace=True))`` and the Lightning callback
(``SoftWidthCallback(trace=True)``) write it to ``trace.csv``; :func:`plot_trace` (``softwidth trace RUN_DIR``)
draws it. Columns:

- ``step``, ``progress`` (fraction of the run's steps), ``cost`` (cost / full model's), ``cost_to_target``
  (cost / target for a budget, else empty), ``multiplier`` (the budget's price, task-loss units per unit of
  ``cost / target``; the weight for a fixed penalty);
- per width ``w``: ``width:w`` (features), ``task_grad:w`` (d task loss / dK, per feature) and ``cost_grad:w``
  (d (cost / full cost) / dK, per feature). Their ratio ``-task_grad / cost_grad`` is the width's marginal
  benefit per unit of cost: at a balanced allocation it is the same for every width.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import torch
from torch import nn

from ._optional import require
from .errors import SoftWidthError
from .objective import model_cost
from .optim import width_modules

__all__ = ["WidthTrace", "plot_trace", "read_trace"]

FILE = "trace.csv"
SMOOTH = 5


class WidthTrace:
    """Collects one row per recorded step (``rows``); :meth:`write` saves them as CSV."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def record(self, model: nn.Module, cost_term, *, step: int, progress: float) -> None:
        """Record the widths and gradients as they are now, after ``backward()`` and before the optimizer step."""
        widths = width_modules(model)
        kind = getattr(cost_term, "kind", "flops")
        full = getattr(cost_term, "full", None)
        values = [w.value for w in widths]
        with torch.enable_grad():
            cost = model_cost(model, kind)
            full = float(full) if full else _full(model, kind)
            cost_grads = _grads(cost / full, values)
            penalty = cost_term.penalty() if cost_term is not None else None
            penalty_grads = _grads(penalty, values) if penalty is not None else [0.0] * len(widths)
        row = {"step": step, "progress": progress, "cost": float(cost.detach()) / full,
               "cost_to_target": "", "multiplier": getattr(cost_term, "multiplier", getattr(cost_term, "weight", ""))}
        target = getattr(cost_term, "target", None)
        if target:
            row["cost_to_target"] = float(cost.detach()) / float(target)
        for w, c, p in zip(widths, cost_grads, penalty_grads):
            grad = 0.0 if w.value.grad is None else float(w.value.grad)
            row[f"width:{w.label}"] = float(w.value.detach())
            row[f"task_grad:{w.label}"] = grad - p
            row[f"cost_grad:{w.label}"] = c
        self.rows.append(row)

    def write(self, path: str | os.PathLike) -> None:
        """Write every row to ``path`` (CSV, atomically replaced)."""
        path = Path(path)
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


def _grads(value: torch.Tensor, params: list[torch.Tensor]) -> list[float]:
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        return [0.0] * len(params)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [0.0 if g is None else float(g) for g in grads]


def _full(model: nn.Module, kind: str) -> float:
    from .objective import full_cost

    return full_cost(model, kind)


def _running_mean(values: list[float]) -> list[float]:
    """Mean of each value and the ``SMOOTH - 1`` before it (the per-step gradients are noisy)."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - SMOOTH + 1):i + 1] if not math.isnan(v)]
        out.append(sum(window) / len(window) if window else math.nan)
    return out


def read_trace(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``trace.csv`` (or of ``RUN_DIR/trace.csv``), numbers as floats (empty cells as NaN)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise SoftWidthError(f"no width trace at {path}: train with FitConfig(trace=True) and an out_dir")
    with path.open(newline="") as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def plot_trace(source: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Plot a trace (``trace.csv`` or a run folder holding one) to ``out`` (default: ``trace.png`` beside it).

    Three panels over the steps: every width as a fraction of its maximum; cost / target (or cost / full) and
    the multiplier; each width's marginal benefit per cost ``-task_grad / cost_grad`` (symmetric log scale).
    Returns the PNG's path.
    """
    matplotlib = require("matplotlib", "plot", "plot_trace")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_trace(source)
    if not rows:
        raise SoftWidthError(f"the width trace {source} has no rows")
    source = Path(source)
    out = Path(out) if out is not None else (source if source.is_dir() else source.parent) / "trace.png"
    names = [k.split(":", 1)[1] for k in rows[0] if k.startswith("width:")]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for name in names:
        top = max(r[f"width:{name}"] for r in rows)
        axes[0].plot(steps, [r[f"width:{name}"] / top for r in rows], label=f"{name} (max seen {top:.0f})")
        ratio = [-r[f"task_grad:{name}"] / r[f"cost_grad:{name}"] if r[f"cost_grad:{name}"] else math.nan
                 for r in rows]
        axes[2].plot(steps, _running_mean(ratio), label=name)
    axes[0].set_ylabel("width / largest value")
    axes[0].legend(fontsize=8)
    budget = not math.isnan(rows[0].get("cost_to_target", math.nan))
    axes[1].plot(steps, [r["cost_to_target" if budget else "cost"] for r in rows], color="k",
                 label="cost / target" if budget else "cost / full")
    if budget:
        axes[1].axhline(1.0, color="0.6", lw=0.8)
        axes[1].axhspan(0.9, 1.1, color="0.9")
    axes[1].set_ylabel("cost / target" if budget else "cost / full")
    twin = axes[1].twinx()
    twin.plot(steps, _running_mean([r.get("multiplier", math.nan) for r in rows]), color="tab:red", lw=0.8)
    twin.set_ylabel(f"multiplier ({SMOOTH}-step mean)", color="tab:red")
    axes[2].set_yscale("symlog", linthresh=1e-3)
    axes[2].set_ylabel(f"-task grad / cost grad\n({SMOOTH}-step mean)")
    axes[2].set_xlabel("optimizer step")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
