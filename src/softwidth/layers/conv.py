"""Width-aware ``nn.Conv1d`` / ``nn.Conv2d``: dynamic input and output channels, incl. depthwise."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SoftWidthError
from ..layout import WidthLike, check_features
from ._base import Cost, DynamicLayer, as_layout, kept

__all__ = ["Conv1d", "Conv2d"]


class _ConvNd(DynamicLayer):
    _stock: type = nn.Conv1d
    _spatial = 1

    def __init__(
        self, conv: nn.Module, *, in_width: WidthLike | None = None, out_width: WidthLike | None = None
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if type(conv) is not self._stock:
            raise SoftWidthError(f"softwidth.layers.{name} wraps nn.{name}, got {type(conv).__name__}")
        if conv.padding_mode != "zeros":
            raise SoftWidthError(f"{name}: padding_mode={conv.padding_mode!r} is not supported, use 'zeros'")
        self.conv = conv
        self.in_layout = as_layout(in_width, conv.in_channels, where=self.where, role="in_width")
        self.out_layout = as_layout(out_width, conv.out_channels, where=self.where, role="out_width")
        g = conv.groups
        self.depthwise = g > 1 and g == conv.in_channels == conv.out_channels
        if self.depthwise and not self.in_layout.same_as(self.out_layout):
            raise SoftWidthError(
                f"{name}: a depthwise conv (groups == channels) must consume and produce the same width; "
                f"got in_width={self.in_layout.label}, out_width={self.out_layout.label}; pass the same "
                "Width object as in_width and out_width"
            )
        if g > 1 and not self.depthwise and (self.in_layout.is_dynamic or self.out_layout.is_dynamic):
            raise SoftWidthError(
                f"{name}: grouped conv with 1 < groups={g} < channels cannot have dynamic channels; use "
                "groups=1, a depthwise conv (groups == in == out channels) or fixed widths"
            )
        self.register_widths(out_width=self.out_layout, in_width=self.in_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() not in (self._spatial + 1, self._spatial + 2):
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise SoftWidthError(
                f"{self.where}: expected a {self._spatial + 2}-d (batched) or {self._spatial + 1}-d input, "
                f"got {got}"
            )
        check_features(x, self.conv.in_channels, -self._spatial - 1, where=self.where)
        return self.out_layout.gate(self.conv(x), -self._spatial - 1, where=self.where)

    def feature_dim(self, ndim: int, which: str) -> int:
        return -self._spatial - 1

    def cost(self, positions: float) -> Cost:
        c = self.conv
        p = positions
        k = math.prod(c.kernel_size)
        o = self.out_layout.real()
        if self.depthwise:  # groups follow the channel count: per channel k MACs per position
            macs = o * k * p
            flops = (2 * o * k if c.bias is not None else o * (2 * k - 1)) * p
            params = o * k + (o if c.bias is not None else 0)
            return {"flops": flops, "macs": macs, "params": params}
        i, g = self.in_layout.real(), c.groups
        macs = i * o * k * p / g
        flops = (2 * i * o * k / g if c.bias is not None else o * (2 * i * k - g) / g) * p
        params = i * o * k / g + (o if c.bias is not None else 0)
        return {"flops": flops, "macs": macs, "params": params}

    def consolidated(self) -> nn.Module:
        c = self.conv
        keep_in, keep_out = self.in_layout.kept_indices(), self.out_layout.kept_indices()
        groups = len(keep_out) if self.depthwise else c.groups
        out = self._stock(
            len(keep_in), len(keep_out), c.kernel_size, stride=c.stride, padding=c.padding,
            dilation=c.dilation, groups=groups, bias=c.bias is not None,
            device=c.weight.device, dtype=c.weight.dtype,
        )
        weight = kept(c.weight, 0, keep_out)
        if not self.depthwise:
            weight = kept(weight, 1, keep_in)
        out.weight.data.copy_(weight)
        if c.bias is not None:
            out.bias.data.copy_(kept(c.bias, 0, keep_out))
        return out


class Conv1d(_ConvNd):
    """Wraps ``nn.Conv1d``: channels of ``(N, C, L)`` / ``(C, L)`` inputs are dynamic.

    Args: ``conv`` (full size), ``in_width``, ``out_width`` as for :class:`~softwidth.layers.Linear`.
    Depthwise convs (``groups == in == out channels``) take the same width in and out.
    Cost (moduleprofiler convention), ``P`` output positions per example: ``2 I O k P / g`` FLOPs with bias.
    """

    _stock = nn.Conv1d
    _spatial = 1


class Conv2d(_ConvNd):
    """Wraps ``nn.Conv2d``: channels of ``(N, C, H, W)`` / ``(C, H, W)`` inputs are dynamic.

    Same arguments and cost convention as :class:`Conv1d` with ``k = kh * kw`` and ``P = H_out * W_out``.
    """

    _stock = nn.Conv2d
    _spatial = 2
