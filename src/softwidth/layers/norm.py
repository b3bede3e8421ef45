"""Width-aware normalisation: ``nn.BatchNorm1d/2d`` over dynamic channels, ``nn.LayerNorm`` over a dynamic
last axis. Both gate their output with the width they normalise (a norm maps a dropped, zero feature to its
bias, so the drop must be re-applied after it): the truncation in eval mode, a fresh noise mix in train mode
(docs/method.md, point 7: the envelope-only :meth:`~softwidth.layout.Layout.regate` was measured and
lost)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SoftWidthError
from ..layout import WidthLike, check_features
from ._base import Cost, DynamicLayer, as_layout, kept

__all__ = ["BatchNorm", "LayerNorm"]


class BatchNorm(DynamicLayer):
    """Wraps ``nn.BatchNorm1d`` (``(N, C)`` or ``(N, C, L)``) or ``nn.BatchNorm2d`` (``(N, C, H, W)``).

    Args:
        norm: the full-size norm; ``width``: the width of its ``C`` channels (consumed and produced).

    Running statistics are kept for all channels; consolidation slices the kept ones.
    Cost (moduleprofiler convention, batch 1): ``(7 P + 4) C`` FLOPs affine, ``(5 P + 4) C`` otherwise,
    ``P`` positions per example; params ``2 C`` if affine.
    """

    def __init__(self, norm: nn.Module, width: WidthLike | None = None) -> None:
        super().__init__()
        if type(norm) not in (nn.BatchNorm1d, nn.BatchNorm2d):
            raise SoftWidthError(f"softwidth.layers.BatchNorm wraps nn.BatchNorm1d/2d, got {type(norm).__name__}")
        self.norm = norm
        self.in_layout = self.out_layout = as_layout(width, norm.num_features, where=self.where, role="width")
        self.register_widths(width=self.out_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = 1 if isinstance(x, torch.Tensor) and x.dim() > 1 else 0  # check_features refuses a non-tensor
        check_features(x, self.norm.num_features, dim, where=self.where)
        return self.out_layout.gate(self.norm(x), 1, where=self.where)

    def feature_dim(self, ndim: int, which: str) -> int:
        return 1

    def cost(self, positions: float) -> Cost:
        c, p = self.out_layout.real(), positions
        per = 7 if self.norm.affine else 5
        return {"flops": (per * p + 4) * c, "macs": 0.0, "params": 2 * c if self.norm.affine else 0.0}

    def consolidated(self) -> nn.Module:
        n = self.norm
        keep = self.out_layout.kept_indices()
        ref = next(iter(n.buffers()), n.weight)
        out = type(n)(len(keep), eps=n.eps, momentum=n.momentum, affine=n.affine,
                      track_running_stats=n.track_running_stats,
                      device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
        if n.affine:
            out.weight.data.copy_(kept(n.weight, 0, keep))
            out.bias.data.copy_(kept(n.bias, 0, keep))
        if n.track_running_stats:
            out.running_mean.copy_(kept(n.running_mean, 0, keep))
            out.running_var.copy_(kept(n.running_var, 0, keep))
            out.num_batches_tracked.copy_(n.num_batches_tracked)
        out.train(n.training)
        return out


class LayerNorm(DynamicLayer):
    """Wraps ``nn.LayerNorm(C)`` normalising a dynamic last axis of ``(*, C)`` inputs.

    Statistics are share-weighted over the features: ``mean = sum_i s_i x_i / sum_i s_i`` and likewise the
    variance, with ``s_i`` the width's signal shares (soft in train mode, the 0/1 keep mask in eval mode),
    so in eval mode it equals ``nn.LayerNorm`` over the kept features exactly.
    Cost (moduleprofiler convention): ``(7 C + 4) P`` FLOPs with affine and bias, ``(6 C + 4) P`` affine
    without bias, ``(5 C + 4) P`` without affine; params ``2 C`` / ``C`` / 0.
    """

    def __init__(self, norm: nn.LayerNorm, width: WidthLike | None = None) -> None:
        super().__init__()
        if type(norm) is not nn.LayerNorm or len(norm.normalized_shape) != 1:
            raise SoftWidthError(
                "softwidth.layers.LayerNorm wraps an nn.LayerNorm over one (the last) axis, got "
                f"{norm!r}"
            )
        self.norm = norm
        self.in_layout = self.out_layout = as_layout(
            width, norm.normalized_shape[0], where=self.where, role="width")
        self.register_widths(width=self.out_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.norm.normalized_shape[0], -1, where=self.where)
        s = self.out_layout.shares(x)
        total = s.sum()
        mean = (x * s).sum(-1, keepdim=True) / total
        var = ((x - mean).square() * s).sum(-1, keepdim=True) / total
        y = (x - mean) * torch.rsqrt(var + self.norm.eps)
        if self.norm.weight is not None:
            y = y * self.norm.weight
        if self.norm.bias is not None:
            y = y + self.norm.bias
        return self.out_layout.gate(y, -1, where=self.where)

    def cost(self, positions: float) -> Cost:
        c, p = self.out_layout.real(), positions
        affine = self.norm.weight is not None
        bias = self.norm.bias is not None
        per = 7 if affine and bias else 6 if affine else 5
        params = (c if affine else 0.0) + (c if bias else 0.0)
        return {"flops": (per * c + 4) * p, "macs": 0.0, "params": params}

    def consolidated(self) -> nn.LayerNorm:
        n = self.norm
        keep = self.out_layout.kept_indices()
        ref = n.weight if n.weight is not None else None
        out = nn.LayerNorm(len(keep), eps=n.eps, elementwise_affine=n.weight is not None,
                           bias=n.bias is not None,
                           device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
        if n.weight is not None:
            out.weight.data.copy_(kept(n.weight, 0, keep))
        if n.bias is not None:
            out.bias.data.copy_(kept(n.bias, 0, keep))
        return out
