"""Tiny stock modules for operations torch has no layer for (``a + b``, ``torch.cat``).

Consolidated models must run without softwidth installed, so these are built as ``torch.fx.GraphModule``
instances: a standard torch class whose ``forward`` is generated code calling only torch functions.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

__all__ = ["add_module", "cat_module"]


def add_module() -> fx.GraphModule:
    """A stock module computing ``a + b``."""
    graph = fx.Graph()
    a, b = graph.placeholder("a"), graph.placeholder("b")
    graph.output(graph.call_function(operator.add, (a, b)))
    return fx.GraphModule(nn.Module(), graph, class_name="Add")


def cat_module(count: int, dim: int) -> fx.GraphModule:
    """A stock module computing ``torch.cat([x0, ..., x{count-1}], dim)``."""
    graph = fx.Graph()
    inputs = [graph.placeholder(f"x{i}") for i in range(count)]
    graph.output(graph.call_function(torch.cat, (inputs,), {"dim": dim}))
    return fx.GraphModule(nn.Module(), graph, class_name="Concat")
