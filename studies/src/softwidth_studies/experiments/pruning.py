"""The structured-pruning baseline: L1-norm channel pruning of a trained full model to a FLOP/s budget.

Each width's features are reordered by the L1 norm of their producer's weight rows (most important first),
the consumers' input columns are permuted to match, and then :func:`softwidth.objective.enforce_budget`
shrinks every width by one common factor to the budget; consolidation slices the pruned channels away.
Supports models whose widths are produced by :class:`softwidth.layers.Linear` layers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from softwidth.consolidate import consolidate
from softwidth.errors import SoftWidthError
from softwidth.layers import DynamicLayer, Linear
from softwidth.objective import enforce_budget, full_cost
from softwidth.optim import width_modules

__all__ = ["check_prune_sizes", "l1_prune"]


def l1_prune(model: nn.Module, fraction: float, *, kind: str = "flops") -> nn.Module:
    """Return a plain model pruned by L1 norm to ``fraction`` of ``model``'s full cost (a copy).

    ``model`` is a trained dynamic model whose widths are at their maximum; it is not modified.
    """
    pruned = copy.deepcopy(model)
    for width in width_modules(pruned):
        with torch.no_grad():
            width.value.fill_(float(width.max_size))
        producers = [m for m in pruned.modules() if isinstance(m, DynamicLayer)
                     and width in m.out_layout.widths]
        consumers = [m for m in pruned.modules() if isinstance(m, DynamicLayer) and m.in_layout is not None
                     and width in m.in_layout.widths and m not in producers]
        if len(producers) != 1 or not isinstance(producers[0], Linear) or len(producers[0].out_layout.blocks) != 1:
            raise SoftWidthError(f"l1_prune: width {width.label} must be produced by one softwidth Linear")
        producer = producers[0].linear
        order = producer.weight.detach().abs().sum(1).argsort(descending=True)
        with torch.no_grad():
            producer.weight.copy_(producer.weight[order])
            if producer.bias is not None:
                producer.bias.copy_(producer.bias[order])
            for consumer in consumers:
                if not isinstance(consumer, Linear) or len(consumer.in_layout.blocks) != 1:
                    raise SoftWidthError(f"l1_prune: consumer {consumer.where} of {width.label} must be a Linear")
                consumer.linear.weight.copy_(consumer.linear.weight[:, order])
    enforce_budget(pruned, fraction * full_cost(pruned, kind), kind=kind)
    return consolidate(pruned.eval())


def check_prune_sizes(model: nn.Module, sizes: Mapping[str, int], models: tuple[type, ...], *, package: str,
                      steps: Mapping[str, int] | None = None) -> dict[str, int]:
    """Validate the sizes a case study's pruning baseline prunes ``model`` to; returns the complete sizes.

    ``model`` must be one of ``models`` (built by ``softwidth.<package>.build_model``, with a ``sizes`` dict of
    its widths); every name in ``sizes`` one of its widths and every size an int in ``[step, full size]``, a
    multiple of ``steps[name]`` (default 1). Raises :class:`SoftWidthError` naming the rule broken.
    """
    if not isinstance(model, models):
        names = " or ".join(m.__name__ for m in models)
        raise SoftWidthError(
            f"prune: expects a softwidth.{package} {names} (from build_model), got {type(model).__name__}")
    if not isinstance(sizes, Mapping):
        raise SoftWidthError(f"prune: sizes must be a mapping {{width name: int}}, got {type(sizes).__name__}")
    unknown = sorted(set(sizes) - set(model.sizes), key=str)
    if unknown:
        raise SoftWidthError(f"prune: unknown widths {unknown} for {type(model).__name__}; known: "
                             f"{sorted(model.sizes)}")
    steps = steps or {}
    target = {**model.sizes, **sizes}
    for name, size in target.items():
        full, q = model.sizes[name], steps.get(name, 1)
        if isinstance(size, bool) or not isinstance(size, int) or not q <= size <= full or size % q:
            rule = f"an int in [{q}, {full}] (the trained model's size)" + (f", a multiple of {q}" if q > 1 else "")
            raise SoftWidthError(f"prune: size {name}={size!r} must be {rule}; pruning cannot grow a width")
    return target
