"""Element-wise activations, residual additions and concatenation of width-governed features.

Stock activations with ``f(0) == 0`` (ReLU, GELU, Tanh, ...) need no wrapper: a dropped feature stays zero
and :func:`softwidth.profile` prices them automatically from the width of their input. Activations with
``f(0) != 0`` (Sigmoid, Softplus) must be wrapped in :class:`Elementwise`, which re-applies the gate.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import SoftWidthError
from ..layout import Layout, WidthLike, check_features
from ._base import Cost, DynamicLayer, kept
from ._graph import add_module, cat_module

__all__ = ["ELEMENTWISE_FLOPS", "Add", "Concat", "Elementwise"]

# FLOPs per element (moduleprofiler's convention where it has one; GELU/SiLU/Hardswish/Dropout ours).
ELEMENTWISE_FLOPS: dict[type, int] = {
    nn.Identity: 0, nn.Dropout: 0, nn.Dropout1d: 0, nn.Dropout2d: 0,
    nn.ReLU: 1, nn.ReLU6: 2, nn.LeakyReLU: 4, nn.PReLU: 4, nn.ELU: 3, nn.SELU: 7, nn.Sigmoid: 3,
    nn.Tanh: 7, nn.Softplus: 5, nn.SiLU: 4, nn.GELU: 8, nn.Hardswish: 4, nn.Hardtanh: 2,
}


class Elementwise(DynamicLayer):
    """Applies a stock element-wise module, then re-applies the gate of ``width`` along axis ``dim``.

    Needed for activations with ``f(0) != 0``; harmless for others. ``nn.PReLU`` with one slope per channel
    has its slopes sliced at consolidation. Cost: ``ELEMENTWISE_FLOPS[type] * C * P`` FLOPs.
    """

    def __init__(self, module: nn.Module, width: WidthLike, *, dim: int = -1) -> None:
        super().__init__()
        if type(module) not in ELEMENTWISE_FLOPS:
            names = ", ".join(sorted(t.__name__ for t in ELEMENTWISE_FLOPS))
            raise SoftWidthError(f"Elementwise: unsupported module {type(module).__name__}; supported: {names}")
        self.module = module
        self.dim = dim
        self.in_layout = self.out_layout = Layout.of(width)
        if isinstance(module, nn.PReLU) and module.num_parameters not in (1, self.out_layout.max_size):
            raise SoftWidthError(
                f"Elementwise: PReLU has {module.num_parameters} slopes but the width has "
                f"{self.out_layout.max_size} features"
            )
        self.register_widths(width=self.out_layout)

    @classmethod
    def fixed(cls, module: nn.Module, inputs: tuple) -> Elementwise:
        """The fixed-size pricer of an unwrapped activation: features on axis 1 for a per-channel PReLU of a
        batched input (where its slopes act), the last axis otherwise."""
        x = inputs[0]
        dim = 1 if isinstance(module, nn.PReLU) and x.dim() > 1 else -1
        return cls(module, x.shape[dim], dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.out_layout.max_size, self.dim, where=self.where)  # before the module sees it
        return self.out_layout.gate(self.module(x), self.dim, where=self.where)

    def feature_dim(self, ndim: int, which: str) -> int:
        return self.dim

    def cost(self, positions: float) -> Cost:
        c = self.out_layout.real()
        params = c if isinstance(self.module, nn.PReLU) and self.module.num_parameters > 1 else 0.0
        if isinstance(self.module, nn.PReLU) and self.module.num_parameters == 1:
            params = 1.0
        return {"flops": ELEMENTWISE_FLOPS[type(self.module)] * c * positions, "macs": 0.0,
                "params": params}

    def consolidated(self) -> nn.Module:
        out = copy.deepcopy(self.module)
        if isinstance(out, nn.PReLU) and out.num_parameters > 1:
            keep = self.out_layout.kept_indices()
            out.num_parameters = len(keep)
            out.weight = nn.Parameter(kept(self.module.weight, 0, keep))
        return out


class Add(DynamicLayer):
    """Residual addition ``a + b`` of two tensors that share one width (checked by :func:`profile`).

    Shapes: ``a`` and ``b`` equal, with ``width.max_size`` features on axis ``dim``. The sum is re-masked in
    eval mode, so an input that is not gated cannot leak dropped features. Cost: ``C * P`` FLOPs.
    """

    def __init__(self, width: WidthLike, *, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim
        self.in_layout = self.out_layout = Layout.of(width)
        self.register_widths(width=self.out_layout)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_features(a, self.out_layout.max_size, self.dim, where=self.where)
        check_features(b, self.out_layout.max_size, self.dim, where=self.where)
        if a.shape != b.shape:
            raise SoftWidthError(f"{self.where}: cannot add shapes {tuple(a.shape)} and {tuple(b.shape)}")
        out = a + b
        if self.training:
            return out
        shape = [1] * out.dim()
        shape[self.dim] = -1
        return out * self.out_layout.shares(out).view(shape)

    def feature_dim(self, ndim: int, which: str) -> int:
        return self.dim

    def cost(self, positions: float) -> Cost:
        return {"flops": self.out_layout.real() * positions, "macs": 0.0, "params": 0.0}

    def consolidated(self) -> nn.Module:
        return add_module()


class Concat(DynamicLayer):
    """``torch.cat(tensors, dim)`` of tensors governed by ``widths`` (one per input, in order).

    Its :attr:`out_layout` is the concatenated layout; give it as ``in_width`` to the consumer.
    Costs nothing.
    """

    def __init__(self, *widths: WidthLike, dim: int = -1) -> None:
        super().__init__()
        if len(widths) < 2:
            raise SoftWidthError("Concat needs at least two widths (one per concatenated input)")
        self.dim = dim
        self.parts = [Layout.of(w) for w in widths]
        self.in_layout = None
        self.out_layout = Layout(self.parts)
        self.register_widths(**{f"part{i}": part for i, part in enumerate(self.parts)})

    def input_layout(self, index: int) -> Layout | None:
        """Input ``index`` is governed by the ``index``-th width."""
        return self.parts[index] if index < len(self.parts) else self.in_layout

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if len(tensors) != len(self.parts):
            raise SoftWidthError(f"{self.where}: expected {len(self.parts)} tensors, got {len(tensors)}")
        for t, part in zip(tensors, self.parts):
            check_features(t, part.max_size, self.dim, where=self.where)
        return torch.cat(tensors, dim=self.dim)

    def feature_dim(self, ndim: int, which: str) -> int:
        return self.dim

    def cost(self, positions: float) -> Cost:
        return {"flops": 0.0, "macs": 0.0, "params": 0.0}

    def consolidated(self) -> nn.Module:
        return cat_module(len(self.parts), self.dim)


