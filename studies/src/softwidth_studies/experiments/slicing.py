"""Slicing a trained state_dict to kept feature indices: what the studies' L1 pruning of their models shares."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from softwidth.consolidate import consolidate
from softwidth.width import Width

__all__ = ["Index", "State", "batchnorm_plan", "full_size_model", "slice_state", "top_indices"]

State = dict[str, torch.Tensor]
Index = torch.Tensor | None  # kept indices along one axis, ``None`` = all


def full_size_model(model: nn.Module) -> nn.Module:
    """The consolidated full-size model: a copy with every width at its maximum, in eval mode."""
    full = copy.deepcopy(model)
    with torch.no_grad():
        for width in full.modules():
            if isinstance(width, Width):
                width.value.fill_(float(width.max_size))
    return consolidate(full.eval())


def top_indices(importance: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest entries, most important first (a stable sort: ties keep index order)."""
    return importance.argsort(descending=True, stable=True)[:k]


def slice_state(state: State, plan: Mapping[str, tuple[Index, ...]]) -> State:
    """``state`` with every tensor named in ``plan`` cut to the kept indices along each axis (others copied)."""
    out = dict(state)
    for name, axes in plan.items():
        t = state[name]
        for dim, index in enumerate(axes):
            if index is not None:
                t = t.index_select(dim, index.to(t.device))
        out[name] = t.clone()
    return out


def batchnorm_plan(prefix: str, keep: torch.Tensor) -> dict[str, tuple[Index, ...]]:
    """The slicing plan of a BatchNorm's four per-feature tensors under ``prefix`` to the ``keep`` indices."""
    return {f"{prefix}.{n}": (keep,) for n in ("weight", "bias", "running_mean", "running_var")}
