"""Torch-Pruning (PyPI ``torch-pruning``, MIT) as the studies' maintained-library pruning peer.

:func:`prune_to_flops` runs Torch-Pruning's global structured pruning (:class:`torch_pruning.pruner.MetaPruner`
with ``global_pruning=True``) one small step at a time until a caller-given cost of the pruned model is at or
below a budget, so the peer lands on the same FLOP/s as the runs it is compared with. Importance criteria
(:data:`IMPORTANCES`): ``"taylor"`` (first-order Taylor, ``|w * dL/dw|``, gradients of the task loss on a few
training batches before each step) and ``"group_norm"`` (the L2 norm of each coupled group's weights).

Torch-Pruning has no pruner for :class:`torch.nn.GRU`; :class:`GRUPruner` is one, written on its public
``BasePruningFunc`` API: pruning hidden units slices each unit's rows in the three gate blocks (r, z, n) of
``weight_ih`` / ``weight_hh`` and their biases and the columns of ``weight_hh``; pruning inputs slices
``weight_ih``'s columns. Torch-Pruning's importance criteria score the layers they know (convolutions, linear
layers, norms), not the GRU's own weights: a hidden unit is scored by the layer that reads it (the head), a GRU
input by the layer that writes it. Single-layer, unidirectional GRUs only. On CPU a GRU's autograd graph is
unrolled over time (a stack of per-step ops), which Torch-Pruning's tracer reads as concatenations; while the
dependency graph is traced each GRU therefore runs as an opaque map of its input features to its hidden units
(:func:`_opaque_grus`), and as itself everywhere else.

Needs the ``prune`` extra (``pip install "softwidth-studies[prune]"``); nothing else in the studies imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch_pruning as tp
from torch import nn

from softwidth.errors import SoftWidthError

__all__ = ["GRUPruner", "IMPORTANCES", "prune_to_flops"]

IMPORTANCES = ("taylor", "group_norm")


def _keep(n: int, idxs: Sequence[int]) -> torch.Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)


def _sliced(p: nn.Parameter, keep: torch.Tensor, dim: int) -> nn.Parameter:
    return nn.Parameter(p.data.index_select(dim, keep.to(p.device)).clone(), requires_grad=p.requires_grad)


class GRUPruner(tp.pruner.function.BasePruningFunc):
    """Torch-Pruning pruner for a single-layer, unidirectional :class:`torch.nn.GRU` (``batch_first`` either way)."""

    TARGET_MODULES = nn.GRU

    def prune_out_channels(self, layer: nn.GRU, idxs: Sequence[int]) -> nn.GRU:
        """Remove hidden units ``idxs``: their rows in each gate block, their ``weight_hh`` columns, biases."""
        _check_gru(layer)
        h = layer.hidden_size
        keep = _keep(h, idxs)
        rows = torch.cat([gate * h + keep for gate in range(3)])
        layer.weight_ih_l0 = _sliced(layer.weight_ih_l0, rows, 0)
        layer.weight_hh_l0 = _sliced(_sliced(layer.weight_hh_l0, rows, 0), keep, 1)
        if layer.bias:
            layer.bias_ih_l0 = _sliced(layer.bias_ih_l0, rows, 0)
            layer.bias_hh_l0 = _sliced(layer.bias_hh_l0, rows, 0)
        layer.hidden_size = len(keep)
        layer._init_flat_weights()
        return layer

    def prune_in_channels(self, layer: nn.GRU, idxs: Sequence[int]) -> nn.GRU:
        """Remove inputs ``idxs``: their ``weight_ih`` columns."""
        _check_gru(layer)
        keep = _keep(layer.input_size, idxs)
        layer.weight_ih_l0 = _sliced(layer.weight_ih_l0, keep, 1)
        layer.input_size = len(keep)
        layer._init_flat_weights()
        return layer

    def get_out_channels(self, layer: nn.GRU) -> int:
        return layer.hidden_size

    def get_in_channels(self, layer: nn.GRU) -> int:
        return layer.input_size


def _check_gru(layer: nn.GRU) -> None:
    if layer.num_layers != 1 or layer.bidirectional:
        raise SoftWidthError("GRUPruner prunes single-layer, unidirectional GRUs only")


@contextmanager
def _opaque_grus(model: nn.Module) -> Iterator[None]:
    """While tracing: each GRU's output is a product of its input with a constant (input, hidden) matrix, so the
    traced graph links the GRU's inputs to its outputs in one node."""
    grus = [m for m in model.modules() if isinstance(m, nn.GRU)]

    def opaque(gru: nn.GRU):
        def forward(x, hx=None):
            return x.matmul(torch.zeros(x.shape[-1], gru.hidden_size, dtype=x.dtype, device=x.device)), None
        return forward

    for gru in grus:
        gru.forward = opaque(gru)
    try:
        yield
    finally:
        for gru in grus:
            del gru.forward


def _importance(name: str) -> tp.importance.Importance:
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "group_norm":
        return tp.importance.GroupMagnitudeImportance(p=2)
    raise SoftWidthError(f"unknown Torch-Pruning importance {name!r}; choose from {list(IMPORTANCES)}")


def prune_to_flops(model: nn.Module, example_inputs: torch.Tensor, cost: Callable[[nn.Module], float],
                   budget: float, *, importance: str = "taylor", loss: Callable[[nn.Module, object], torch.Tensor]
                   | None = None, batches: Iterable | None = None, ignored_layers: Sequence[nn.Module] = (),
                   steps: int = 200, max_ratio: float = 0.95, round_to: int | None = None,
                   num_heads: dict | None = None) -> dict:
    """Prune ``model`` in place with Torch-Pruning's global pruning until ``cost(model) <= budget``.

    Args:
        model: a plain ``nn.Module`` (convolutions, linear layers, norms, GRUs); pruned in place.
        example_inputs: an input for tracing the model's dependency graph.
        cost: the pruned model's cost (e.g. FLOP/s) in the caller's units; read after every step.
        budget: the cost to reach, in ``cost``'s units (> 0).
        importance: one of :data:`IMPORTANCES`.
        loss: ``loss(model, batch) -> scalar`` for ``"taylor"``, backpropagated on every batch of ``batches``
            (gradients accumulated) before each pruning step.
        batches: a re-iterable of training batches for ``"taylor"``.
        ignored_layers: layers whose outputs are never pruned (e.g. the output head).
        steps: the number of equal pruning steps from 0 to ``max_ratio`` of every prunable group's channels.
        max_ratio: where Torch-Pruning's global schedule ends (its ``pruning_ratio``): the share of all prunable
            channels removed after ``steps`` steps; a single layer may lose more (never all).
        round_to, num_heads: passed to Torch-Pruning (channel multiples; attention heads).

    Returns ``{"steps": steps taken, "cost": the final cost, "reached": whether it is <= budget}``.
    """
    if budget <= 0:
        raise SoftWidthError(f"budget must be > 0, got {budget}")
    if importance == "taylor" and (loss is None or batches is None):
        raise SoftWidthError("the taylor importance needs loss= and batches=")
    with _opaque_grus(model):
        pruner = tp.pruner.MetaPruner(
            model, example_inputs, importance=_importance(importance), global_pruning=True, pruning_ratio=max_ratio,
            iterative_steps=steps, ignored_layers=list(ignored_layers), round_to=round_to, num_heads=num_heads or {},
            customized_pruners={nn.GRU: GRUPruner()}, root_module_types=[nn.modules.conv._ConvNd, nn.Linear, nn.GRU])
    taken = 0
    while cost(model) > budget and taken < steps:
        if importance == "taylor":
            model.zero_grad(set_to_none=True)
            model.train()
            for batch in batches:
                loss(model, batch).backward()
        pruner.step()
        taken += 1
    model.zero_grad(set_to_none=True)
    final = float(cost(model))
    return {"steps": taken, "cost": final, "reached": final <= budget}
