"""The layout of a feature axis: an ordered concatenation of width-governed and fixed blocks.

A plain layer output has one block (its :class:`~softwidth.Width`). A bidirectional RNN output has two blocks
governed by the same width (forward units, then backward units); :func:`softwidth.concat` builds the
layout of concatenated features. A consumer of a layout slices, at consolidation, the kept features of
every block out of its input weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

import torch

from .errors import SoftWidthError
from .gate import NOISE_CUT, batch_std, check_features, gate_features
from .width import Width

__all__ = ["NOISE_CUT", "Layout", "WidthLike", "batch_std", "check_features"]  # the last three: from .gate

WidthLike = Union[Width, int, "Layout"]


class Layout:
    """An ordered tuple of blocks, each a :class:`Width` (gated) or an ``int`` (fixed size).

    Blocks may repeat the same :class:`Width` (e.g. both directions of a bidirectional GRU).
    """

    __slots__ = ("blocks",)

    def __init__(self, blocks: Iterable[Width | int]) -> None:
        flat: list[Width | int] = []
        for block in blocks:
            if isinstance(block, Layout):
                flat.extend(block.blocks)
            elif isinstance(block, Width) or isinstance(block, int) and not isinstance(block, bool) and block >= 1:
                flat.append(block)
            else:
                raise SoftWidthError(
                    f"a layout block must be a Width, a Layout or an int >= 1, got {block!r}"
                )
        if not flat:
            raise SoftWidthError("a layout needs at least one block")
        self.blocks = tuple(flat)

    @staticmethod
    def of(width: WidthLike) -> Layout:
        """Coerce a :class:`Width`, an int (fixed size) or a :class:`Layout` to a :class:`Layout`."""
        return width if isinstance(width, Layout) else Layout([width])

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def max_size(self) -> int:
        return sum(_max(b) for b in self.blocks)

    @property
    def widths(self) -> tuple[Width, ...]:
        """The distinct widths in this layout, in order of first appearance."""
        seen: dict[int, Width] = {}
        for b in self.blocks:
            if isinstance(b, Width):
                seen.setdefault(id(b), b)
        return tuple(seen.values())

    @property
    def is_dynamic(self) -> bool:
        return bool(self.widths)

    def real(self) -> torch.Tensor | float:
        """Differentiable total size (sum of the real block sizes); a float if no block is dynamic."""
        total: torch.Tensor | float = 0.0
        for b in self.blocks:
            total = total + (b.real() if isinstance(b, Width) else float(b))
        return total

    @property
    def rounded(self) -> int:
        """Total size after consolidation."""
        return sum(b.rounded if isinstance(b, Width) else b for b in self.blocks)

    def kept_indices(self) -> torch.Tensor:
        """Indices (along the full axis) of the features kept at consolidation, shape ``(rounded,)``."""
        parts, offset = [], 0
        for b in self.blocks:
            n = b.rounded if isinstance(b, Width) else b
            parts.append(torch.arange(offset, offset + n))
            offset += _max(b)
        return torch.cat(parts)

    def repeat(self, times: int) -> Layout:
        """This layout concatenated ``times`` times (e.g. the gates of an RNN)."""
        return Layout(self.blocks * times)

    def shares(self, like: torch.Tensor) -> torch.Tensor:
        """Signal shares of every feature, shape ``(max_size,)``: soft in train mode, 0/1 in eval mode."""
        return torch.cat([_mask(b, like) for b in self.blocks])

    # -- gate ----------------------------------------------------------------------------------
    def gate(self, x: torch.Tensor, dim: int = -1, *, where: str = "") -> torch.Tensor:
        """Apply every block's gate along axis ``dim`` of ``x`` (``x.shape[dim] == max_size``).

        Train mode: the noise mix of :mod:`softwidth.width` with per-feature detached batch std;
        eval mode: zero the features that consolidation drops. Fixed blocks pass unchanged.
        """
        if not self.is_dynamic:
            check_features(x, self.max_size, dim, where=where or self.label)
            return x

        def weights() -> tuple[torch.Tensor, torch.Tensor]:
            signal, noise = zip(*(_weights(b, x) for b in self.blocks))
            return torch.cat(signal), torch.cat(noise)

        return gate_features(x, dim, size=self.max_size, where=where or self.label,
                             training=any(w.training and not w.frozen for w in self.widths),
                             shares=lambda: self.shares(x), weights=weights)

    def regate(self, x: torch.Tensor, dim: int = -1, *, where: str = "") -> torch.Tensor:
        """Re-apply the gate after a per-feature map of features this layout's producer already gated.

        A norm maps a dropped (zero) feature to its bias and an activation with ``f(0) != 0`` to ``f(0)``, so
        the drop must be re-applied after them. Eval mode: the same truncation as :meth:`gate`. Train mode:
        ``x_i * sqrt(e_i)`` (:meth:`Width.envelope`), no second noise mix: a per-feature map keeps the
        signal-to-noise ratio the producer's gate set, and a norm that rescales a feature to unit power is
        brought back to the producer's envelope. softwidth's own norms and activations call :meth:`gate` (a
        fresh mix) instead, which trained better in the VAD study (docs/method.md); this is for custom layers.
        """
        check_features(x, self.max_size, dim, where=where or self.label)
        if not self.is_dynamic:
            return x
        shape = [1] * x.dim()
        shape[dim] = self.max_size
        weights = torch.cat([b.envelope().to(x) if isinstance(b, Width) else x.new_ones(b) for b in self.blocks])
        return x * weights.view(shape)

    @property
    def label(self) -> str:
        return "+".join(b.label if isinstance(b, Width) else str(b) for b in self.blocks)

    def same_as(self, other: Layout) -> bool:
        """True if both layouts have the same blocks (the same Width objects, the same fixed sizes)."""
        if len(self.blocks) != len(other.blocks):
            return False
        return all(
            (a is b) if isinstance(a, Width) or isinstance(b, Width) else a == b
            for a, b in zip(self.blocks, other.blocks)
        )

    def __repr__(self) -> str:
        return f"Layout({self.label})"


def concat(*widths: WidthLike) -> Layout:
    """The layout of features concatenated along one axis, in order (``torch.cat`` of gated tensors)."""
    return Layout(Layout.of(w) for w in widths)


def _max(block: Width | int) -> int:
    return block.max_size if isinstance(block, Width) else block


def _mask(block: Width | int, x: torch.Tensor) -> torch.Tensor:
    if isinstance(block, Width):
        return block.shares().to(device=x.device, dtype=x.dtype)
    return x.new_ones(block)


def _weights(block: Width | int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(block, Width):
        return block.mix_weights()
    return x.new_ones(block), x.new_zeros(block)
