"""Consolidation: a new, plain, smaller ``nn.Module`` with every width rounded and unused weights removed."""

from __future__ import annotations

import copy

from torch import nn

from .errors import SoftWidthError
from .layers import DynamicLayer
from .probe import name_widths
from .width import Width

__all__ = ["consolidate", "widths"]


def consolidate(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` in which every width-aware layer is a stock torch module at rounded size.

    The producer of each width keeps its first ``rounded`` features and each consumer the matching input
    columns (for concatenated layouts, the kept features of every block). No noise, no widths, no softwidth
    classes remain: the result runs without softwidth, scripts with TorchScript and exports to ONNX (for
    containers of the user's own classes, as far as their ``forward`` does). ``model`` is not modified;
    the copy keeps its train/eval mode. Use :func:`widths` for a JSON-able record of the chosen sizes.
    """
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"consolidate: expected an nn.Module, got {type(model).__name__}")
    if isinstance(model, DynamicLayer):
        return _stock(model, "the model")
    plain = copy.deepcopy(model)
    plain.__dict__.pop("softwidth_profile", None)
    replaced = 0
    for name, module in list(plain.named_modules()):
        if not isinstance(module, DynamicLayer):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = plain.get_submodule(parent_name)
        if not isinstance(parent, DynamicLayer):  # nested layers are replaced with their parent
            setattr(parent, child, _stock(module, name))
            replaced += 1
    left = [n for n, m in plain.named_modules() if isinstance(m, (Width, DynamicLayer))]
    if left:
        raise SoftWidthError(
            f"consolidate: widths left outside width-aware layers at {left}; a Width must be used "
            "through a softwidth layer"
        )
    return plain


def _stock(layer: DynamicLayer, where: str) -> nn.Module:
    """``layer.consolidated()`` in the layer's train/eval mode, checked to be a plain module."""
    plain = layer.consolidated()
    if not isinstance(plain, nn.Module) or any(isinstance(m, (Width, DynamicLayer)) for m in plain.modules()):
        got = type(plain).__name__ if not isinstance(plain, nn.Module) else "a module holding softwidth classes"
        raise SoftWidthError(
            f"consolidate: {where} ({type(layer).__name__}).consolidated() returned {got}; it must return a new "
            "stock torch module (no Width, no width-aware layer) at the rounded widths"
        )
    return plain.train(layer.training)


def widths(model: nn.Module) -> dict[str, dict]:
    """JSON-able record of every width: ``{name: {"value", "rounded", "min_size", "max_size", "mix", "temperature"}}``."""
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"widths: expected an nn.Module, got {type(model).__name__}")
    name_widths(model)
    record: dict[str, dict] = {}
    for module in model.modules():
        if isinstance(module, Width):
            record[module.label] = {
                "value": float(module.value.detach()), "rounded": module.rounded, "min_size": module.min_size,
                "max_size": module.max_size, "mix": module.mix,
                "temperature": float(module.temperature),
            }
    return record
