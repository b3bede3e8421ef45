"""Width-aware ``nn.Linear``: consumes the layout of its input features, produces one width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SoftWidthError
from ..layout import WidthLike, check_features
from ._base import Cost, DynamicLayer, as_layout, kept

__all__ = ["Linear"]


class Linear(DynamicLayer):
    """Wraps an ``nn.Linear(in_features, out_features)`` whose input and/or output size is dynamic.

    Args:
        linear: the layer at full size; its parameters are used (not copied).
        in_width: width (or :class:`~softwidth.layout.Layout`) of the consumed features; ``None`` = fixed.
        out_width: width of the produced features; ``None`` = fixed (e.g. the output layer).

    Shapes: input ``(*, in_features)``, output ``(*, out_features)``; the output is gated by ``out_width``.
    Cost per position (moduleprofiler convention): ``2 * I * O`` FLOPs with bias, ``O * (2I - 1)`` without;
    ``I * O`` MACs; params ``I * O (+ O)``, with ``I``, ``O`` the real widths (differentiable).
    """

    def __init__(
        self, linear: nn.Linear, *, in_width: WidthLike | None = None, out_width: WidthLike | None = None
    ) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise SoftWidthError(f"softwidth.layers.Linear wraps nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.in_layout = as_layout(in_width, linear.in_features, where=self.where, role="in_width")
        self.out_layout = as_layout(out_width, linear.out_features, where=self.where, role="out_width")
        self.register_widths(out_width=self.out_layout, in_width=self.in_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.linear.in_features, -1, where=self.where)
        return self.out_layout.gate(F.linear(x, self.linear.weight, self.linear.bias), -1, where=self.where)

    def cost(self, positions: float) -> Cost:
        i, o, p = self.in_layout.real(), self.out_layout.real(), positions
        bias = self.linear.bias is not None
        flops = (2 * i * o if bias else o * (2 * i - 1)) * p
        return {"flops": flops, "macs": i * o * p, "params": i * o + (o if bias else 0)}

    def consolidated(self) -> nn.Linear:
        keep_in, keep_out = self.in_layout.kept_indices(), self.out_layout.kept_indices()
        w = self.linear.weight
        out = nn.Linear(len(keep_in), len(keep_out), bias=self.linear.bias is not None,
                        device=w.device, dtype=w.dtype)
        out.weight.data.copy_(kept(kept(w, 0, keep_out), 1, keep_in))
        if self.linear.bias is not None:
            out.bias.data.copy_(kept(self.linear.bias, 0, keep_out))
        return out
