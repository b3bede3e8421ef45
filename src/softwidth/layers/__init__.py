"""Width-aware layers: wrappers around stock ``torch.nn`` layers whose feature sizes are widths.

:func:`dynamic` picks the wrapper registered for a stock module's type::

    sw.dynamic(nn.Linear(40, 64), out_width=w)              # -> softwidth.layers.Linear
    sw.dynamic(nn.GRU(64, 128, batch_first=True), in_width=w, hidden_width=h)

A new layer type subclasses :class:`DynamicLayer` and is added with :func:`register`, as the built-in ones are
below (docs/api.md, "Adding a layer type").
"""

from __future__ import annotations

from torch import nn

from ._base import Cost, DynamicLayer, as_layout, kept
from ._registry import WRAPPERS, dynamic, register
from .attention import TransformerEncoderLayer
from .conv import Conv1d, Conv2d
from .elementwise import ELEMENTWISE_FLOPS, Add, Concat, Elementwise
from .frontend import LogMel
from .linear import Linear
from .norm import BatchNorm, LayerNorm
from .recurrent import GRU, LSTM

__all__ = [
    "GRU",
    "LSTM",
    "WRAPPERS",
    "Add",
    "BatchNorm",
    "Concat",
    "Conv1d",
    "Conv2d",
    "Cost",
    "DynamicLayer",
    "Elementwise",
    "LayerNorm",
    "Linear",
    "LogMel",
    "TransformerEncoderLayer",
    "as_layout",
    "dynamic",
    "kept",
    "register",
]

for _stock, _layer in (
    (nn.Linear, Linear), (nn.Conv1d, Conv1d), (nn.Conv2d, Conv2d), (nn.BatchNorm1d, BatchNorm),
    (nn.BatchNorm2d, BatchNorm), (nn.LayerNorm, LayerNorm), (nn.GRU, GRU), (nn.LSTM, LSTM),
    (nn.TransformerEncoderLayer, TransformerEncoderLayer), *((t, Elementwise) for t in ELEMENTWISE_FLOPS),
):
    register(_stock, _layer)
del _stock, _layer
