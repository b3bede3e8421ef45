"""Differentiable cost of a model: FLOPs, MACs, parameters and FLOP/s of audio, per layer and in total.

Convention (the paper's first author's ``moduleprofiler``): multiplies and adds are counted separately, so
one multiply-accumulate is 2 FLOPs; Linear with bias ``2 I O`` per position; Conv ``2 Cin Cout k P / g``;
GRU ``6 T H (H_in + H + 3.5)`` and LSTM ``8 T H (H_in + H + 3.875)`` per layer and direction; norms and
activations are counted (see each layer's docstring). MACs count multiply-accumulates of matrix products
and convolutions only. Every figure is per example; FLOP/s divide by the seconds of audio the probe input
covers (:func:`softwidth.profile`). Widths enter as their real values, so every figure is a torch scalar
differentiable in every width; at integer widths it equals the consolidated model's count.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .errors import SoftWidthError
from .layers import DynamicLayer
from .probe import Profile

__all__ = ["KINDS", "cost", "flops", "flops_per_second", "macs", "params"]

KINDS = ("flops", "macs", "params")
Kind = Literal["flops", "macs", "params"]


def cost(model: nn.Module, *, per_layer: bool = False) -> dict:
    """FLOPs and MACs per example of the probe input, and parameters, of ``model``.

    Returns ``{"flops": T, "macs": T, "params": T}`` (0-dim tensors, differentiable in the widths), or with
    ``per_layer=True`` ``{path: {"flops", "macs", "params"}}`` for every priced module. Needs
    :func:`softwidth.profile` to have run on the model.
    """
    record = _profile_of(model)
    rows = {}
    for entry in record.entries:
        c = entry.layer.cost(entry.positions)
        rows[entry.name] = {k: _tensor(c[k]) for k in KINDS}
    if per_layer:
        return rows
    return {k: sum((r[k] for r in rows.values()), torch.zeros(())) for k in KINDS}


def flops(model: nn.Module) -> torch.Tensor:
    """Total FLOPs per example of the probe input (differentiable)."""
    return cost(model)["flops"]


def macs(model: nn.Module) -> torch.Tensor:
    """Total multiply-accumulates per example of the probe input (differentiable)."""
    return cost(model)["macs"]


def flops_per_second(model: nn.Module) -> torch.Tensor:
    """FLOP/s: FLOPs per second of audio, from the probe's duration (differentiable)."""
    return flops(model) / _profile_of(model).seconds


def params(model: nn.Module) -> torch.Tensor:
    """Parameter count of the consolidated model as a differentiable scalar; needs no probe.

    Width-aware layers count their real-width parameters; stock modules outside them their own
    parameters; the width parameters themselves are not counted (consolidation removes them).
    """
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"params: model must be an nn.Module, got {type(model).__name__}")
    total = torch.zeros(())
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, DynamicLayer):
            inside.update(id(m) for m in module.modules())
            total = total + _tensor(module.cost(0.0)["params"])
        else:
            total = total + sum(p.numel() for p in module.parameters(recurse=False))
    return total


def _profile_of(model: nn.Module) -> Profile:
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"expected an nn.Module, got {type(model).__name__}")
    record = getattr(model, "softwidth_profile", None)
    if not isinstance(record, Profile):
        raise SoftWidthError(
            "this model has not been probed: run softwidth.profile(model, example_input, seconds=...) once "
            "(an input holding `seconds` of audio) before asking for FLOPs"
        )
    return record


def _tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
