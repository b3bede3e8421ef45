"""Optimizer helpers: a separate parameter group for widths, and projection into their bounds."""

from __future__ import annotations

from torch import nn

from .errors import SoftWidthError, is_number
from .width import Width

__all__ = ["param_groups", "project_", "width_modules"]


def width_modules(model: nn.Module) -> list[Width]:
    """Every distinct :class:`Width` in ``model``, in module order."""
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"expected an nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, Width)]


def param_groups(model: nn.Module, *, width_lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups for ``torch.optim``: model weights, then widths with their own learning rate.

    ``width_lr`` is in features per step for Adam-like optimizers (widths are stored in feature units).
    Widths never get weight decay. Call :func:`project_` after ``optimizer.step()`` (widths are also
    projected before each use, so forgetting it cannot leave a width outside its bounds in a forward).
    """
    if not is_number(width_lr) or width_lr < 0:
        raise SoftWidthError(f"param_groups: width_lr must be a finite number >= 0, got {width_lr!r}")
    if not is_number(weight_decay) or weight_decay < 0:
        raise SoftWidthError(f"param_groups: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    width_params = {id(w.value): w.value for w in width_modules(model)}
    others = [p for p in model.parameters() if id(p) not in width_params]
    return [
        {"params": others, "weight_decay": weight_decay},
        {"params": list(width_params.values()), "lr": width_lr, "weight_decay": 0.0, "name": "widths"},
    ]


def project_(model: nn.Module) -> None:
    """Clamp every width of ``model`` into its bounds in place (after an optimizer step)."""
    for width in width_modules(model):
        width.project_()
