"""Optimizer helpers: a separate parameter group for widths, and projection into their bounds.

Width groups follow one convention wherever softwidth builds them (here, :class:`~softwidth.WidthSession`,
:func:`~softwidth.fit`, the Lightning callback): a group that holds widths has ``"width"`` (its width's label;
labels joined by ", " for a group of several), ``"base_lr"`` (its rate before the schedule's decay, which sets
``lr = base_lr * factor``) and ``weight_decay = 0``; a group without ``"width"`` holds weights.
"""

from __future__ import annotations

from torch import nn

from .errors import SoftWidthError, is_number
from .width import Width

__all__ = ["param_groups", "project_", "width_modules"]

WIDTH_KEY = "width"  # marks a width group; its value is the label(s) of the width(s) it holds


def width_modules(model: nn.Module) -> list[Width]:
    """Every distinct :class:`Width` in ``model``, in module order."""
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"expected an nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, Width)]


def param_groups(model: nn.Module, *, width_lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups for ``torch.optim``: model weights, then widths with their own learning rate.

    ``width_lr`` is in features per step for Adam-like optimizers (widths are stored in feature units).
    Widths never get weight decay. The widths' group is marked as every width group is (``"width"``: the labels,
    ``"base_lr"``: ``width_lr``; module docstring) and named ``"widths"``. Call :func:`project_` after
    ``optimizer.step()`` (widths are also projected before each use, so forgetting it cannot leave a width outside
    its bounds in a forward).
    """
    if not is_number(width_lr) or width_lr < 0:
        raise SoftWidthError(f"param_groups: width_lr must be a finite number >= 0, got {width_lr!r}")
    if not is_number(weight_decay) or weight_decay < 0:
        raise SoftWidthError(f"param_groups: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    ws = width_modules(model)
    ids = {id(w.value) for w in ws}
    others = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": others, "weight_decay": weight_decay},
            {**_width_group(ws, lr=width_lr), "name": "widths"}]


def _width_group(widths: list[Width], *, lr: float) -> dict:
    """One width group (the convention of the module docstring) holding ``widths`` at rate ``lr``."""
    return {"params": [w.value for w in widths], "lr": lr, "base_lr": lr, "weight_decay": 0.0,
            WIDTH_KEY: ", ".join(w.label for w in widths)}


def project_(model: nn.Module) -> None:
    """Clamp every width of ``model`` into its bounds in place (after an optimizer step)."""
    for width in width_modules(model):
        width.project_()
