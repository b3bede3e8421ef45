"""What every width-aware layer shares: the widths it consumes and produces, its cost, its consolidation.

A width-aware layer wraps (or builds) standard ``torch.nn`` parameters at their *maximum* size. In train
and eval mode it computes on the full-size tensors and gates its output with the width it produces (see
:mod:`softwidth.width`). :meth:`DynamicLayer.consolidated` returns the equivalent stock module at the
rounded widths, with the unused rows (produced features) and columns (consumed features) sliced away.

A new layer type subclasses :class:`DynamicLayer`, builds its layouts with :func:`as_layout`, registers its
widths with :meth:`DynamicLayer.register_widths`, slices its weights with :func:`kept` and is registered for
its stock type with :func:`softwidth.layers.register` (docs/api.md, "Adding a layer type").
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import SoftWidthError
from ..layout import Layout, WidthLike
from ..width import Width

__all__ = ["Cost", "DynamicLayer", "as_layout", "kept"]

Cost = Mapping[str, "torch.Tensor | float"]
"""A cost record: ``{"flops": ..., "macs": ..., "params": ...}``, each a float or a differentiable scalar."""


class DynamicLayer(nn.Module):
    """Base class of width-aware layers.

    Subclasses set ``in_layout`` (the layout of the features they consume, or ``None`` if they consume none
    of interest) and ``out_layout`` (the layout they produce), register every :class:`Width` they use with
    :meth:`register_widths` (so the width parameters are in ``model.parameters()``) and implement ``forward``,
    :meth:`cost` and :meth:`consolidated`. :meth:`feature_dim`, :meth:`count_positions`, :meth:`input_layout`
    and :meth:`fixed` have defaults for a layer with one input whose features are on the last axis.

    Costs are per example for ``positions`` positions (frames, time steps, pixels), the count the layer saw
    per example in the probe forward pass of :func:`softwidth.profile`.
    """

    in_layout: Layout | None
    out_layout: Layout | None

    def __init__(self) -> None:
        super().__init__()
        self.path: str = ""

    # -- to implement ------------------------------------------------------------------------------
    def cost(self, positions: float) -> Cost:
        """FLOPs, MACs and parameters per example when the layer computes ``positions`` positions."""
        raise NotImplementedError

    def consolidated(self) -> nn.Module:
        """A new stock ``torch.nn`` module with the rounded widths; never mutates ``self``."""
        raise NotImplementedError

    # -- defaults to override ------------------------------------------------------------------------
    def feature_dim(self, ndim: int, which: str) -> int:
        """The feature axis of an input (``which="in"``) or output (``"out"``) tensor with ``ndim`` dims."""
        return -1

    def count_positions(self, inputs: tuple, output: torch.Tensor, batch: int) -> float:
        """Positions per example from the probe's input/output tensors (default: output numel / features)."""
        out = output[0] if isinstance(output, tuple) else output
        return out.numel() / out.shape[self.feature_dim(out.dim(), "out")] / batch

    def input_layout(self, index: int) -> Layout | None:
        """The layout the layer declares for its positional input ``index`` (default: ``in_layout`` for all).

        :func:`softwidth.profile` checks it against the width the producer of that input gated with.
        """
        return self.in_layout

    @classmethod
    def fixed(cls, module: nn.Module, inputs: tuple) -> DynamicLayer:
        """The layer at fixed size that prices an unwrapped stock ``module`` (``inputs``: its probe call's).

        :func:`softwidth.profile` prices stock modules of a registered type with it. Default ``cls(module)``.
        """
        return cls(module)

    # -- shared helpers ------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The layer's path in the model (set by :func:`softwidth.profile`) or its class name."""
        return self.path or type(self).__name__

    def register_widths(self, **roles: Layout | None) -> None:
        """Register the widths of each role's layout as submodules named after the role.

        ``self.register_widths(in_width=..., out_width=...)`` registers ``in_width`` / ``out_width`` (a
        layout with several widths adds ``_1``, ``_2`` ...); a width already registered is skipped, and so is a
        ``None`` layout.
        """
        for role, layout in roles.items():
            if layout is None:
                continue
            for index, width in enumerate(layout.widths):
                if not any(width is w for w in self._widths()):
                    self.add_module(role if index == 0 else f"{role}_{index}", width)

    def _widths(self) -> list[Width]:
        return [m for m in self.children() if isinstance(m, Width)]


def as_layout(width: WidthLike | None, size: int, *, where: str, role: str) -> Layout:
    """The layout of ``width`` after checking it has ``size`` features; ``None`` gives the fixed ``Layout([size])``.

    ``where`` and ``role`` name the layer and the argument in the error: a :class:`SoftWidthError` when the
    width's ``max_size`` is not ``size``.
    """
    if width is None:
        return Layout([size])
    layout = Layout.of(width)
    if layout.max_size != size:
        raise SoftWidthError(
            f"{where}: {role} {layout.label} has max size {layout.max_size}, but the layer has {size} "
            f"features there; make the width's max_size equal {size}"
        )
    return layout


def kept(tensor: torch.Tensor | None, dim: int, index: torch.Tensor) -> torch.Tensor | None:
    """The entries of ``tensor`` at ``index`` along ``dim`` as a new, detached, contiguous tensor (what
    :meth:`DynamicLayer.consolidated` copies into the stock module); ``None`` passes through."""
    if tensor is None:
        return None
    return tensor.detach().index_select(dim, index.to(tensor.device)).clone()
