"""Width-aware layers: wrappers around stock ``torch.nn`` layers whose feature sizes are widths.

:func:`dynamic` picks the wrapper for a stock module::

    sw.dynamic(nn.Linear(40, 64), out_width=w)              # -> softwidth.layers.Linear
    sw.dynamic(nn.GRU(64, 128, batch_first=True), in_width=w, hidden_width=h)
"""

from __future__ import annotations

from torch import nn

from ..errors import SoftWidthError
from ._base import Cost, DynamicLayer
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
    "dynamic",
]

WRAPPERS: dict[type, type] = {
    nn.Linear: Linear,
    nn.Conv1d: Conv1d,
    nn.Conv2d: Conv2d,
    nn.BatchNorm1d: BatchNorm,
    nn.BatchNorm2d: BatchNorm,
    nn.LayerNorm: LayerNorm,
    nn.GRU: GRU,
    nn.LSTM: LSTM,
    nn.TransformerEncoderLayer: TransformerEncoderLayer,
    **{t: Elementwise for t in ELEMENTWISE_FLOPS},
}
"""Stock module type -> width-aware wrapper class (extended by the recurrent, attention modules)."""


def dynamic(module: nn.Module, /, **widths) -> DynamicLayer:
    """Wrap a stock ``torch.nn`` module so its feature sizes follow the given widths.

    Keyword arguments are those of the wrapper (``in_width``/``out_width`` for Linear and convs,
    ``width`` for norms and activations, ``in_width``/``hidden_width`` for GRU/LSTM,
    ``model_width``/``ff_width`` for ``nn.TransformerEncoderLayer``). The module's parameters are reused.
    """
    if isinstance(module, DynamicLayer):
        raise SoftWidthError(f"{type(module).__name__} is already width-aware")
    wrapper = WRAPPERS.get(type(module))
    if wrapper is None:
        names = ", ".join(sorted({t.__name__ for t in WRAPPERS}))
        raise SoftWidthError(f"unsupported module {type(module).__name__}; supported: {names}")
    try:
        return wrapper(module, **widths)
    except TypeError as err:  # wrong keyword for this wrapper
        raise SoftWidthError(f"{wrapper.__name__}: {err}") from None
