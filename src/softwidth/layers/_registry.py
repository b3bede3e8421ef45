"""The registry of width-aware layers: which layer wraps which stock module type.

:func:`register` is the one way in, for the built-in layers (``softwidth.layers`` registers them on import) and
for a user's own. Everything that dispatches on a stock type reads the registry: :func:`dynamic` picks the
wrapper, :func:`softwidth.profile` prices an unwrapped stock module with its wrapper's formulas at fixed size,
and :mod:`softwidth.export` rebuilds registered stock types from their constructor arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from torch import nn

from ..errors import SoftWidthError
from ._base import DynamicLayer

__all__ = ["WRAPPERS", "dynamic", "register"]

_REGISTRY: dict[type, type] = {}
WRAPPERS: Mapping[type, type] = MappingProxyType(_REGISTRY)
"""Stock module type -> width-aware layer class; read-only (add with :func:`register`)."""

_REQUIRED = ("forward", "cost", "consolidated")  # what DynamicLayer (or nn.Module) leaves unimplemented


def register(stock_type: type, dynamic_type: type, /, *, replace: bool = False) -> None:
    """Make ``dynamic_type`` the width-aware layer of ``stock_type`` modules.

    ``dynamic_type`` subclasses :class:`DynamicLayer` and implements ``forward``, ``cost`` and ``consolidated``;
    its constructor takes the stock module first and its widths as keywords, each defaulting to ``None``
    (fixed), so ``dynamic_type(module)`` prices an unwrapped module in the probe (override
    :meth:`DynamicLayer.fixed` otherwise). Registering the registered class again, or one of the same module
    and name (a reloaded module, a re-run notebook cell), replaces it; another class for a registered type
    needs ``replace=True``. Raises :class:`SoftWidthError` naming the fix.
    """
    if not isinstance(stock_type, type) or not issubclass(stock_type, nn.Module):
        raise SoftWidthError(f"register: stock_type must be an nn.Module subclass, got {stock_type!r}; pass the "
                             "stock layer's class, e.g. nn.RMSNorm")
    if issubclass(stock_type, DynamicLayer):
        raise SoftWidthError(f"register: stock_type {stock_type.__name__} is already width-aware; pass the stock "
                             "torch module type it wraps")
    if not isinstance(dynamic_type, type) or not issubclass(dynamic_type, DynamicLayer):
        raise SoftWidthError(f"register: dynamic_type must be a subclass of softwidth.layers.DynamicLayer, got "
                             f"{dynamic_type!r}; derive the width-aware layer from DynamicLayer")
    missing = [name for name in _REQUIRED if getattr(dynamic_type, name) is getattr(DynamicLayer, name)]
    if missing:
        raise SoftWidthError(f"register: {dynamic_type.__name__} does not implement {', '.join(missing)}; define "
                             f"{' and '.join(f'{name}()' for name in missing)} in the class")
    old = _REGISTRY.get(stock_type)
    if old is not None and not replace and _name(old) != _name(dynamic_type):
        raise SoftWidthError(f"register: {stock_type.__name__} already has the width-aware layer {_name(old)}; "
                             "pass replace=True to replace it")
    _REGISTRY[stock_type] = dynamic_type


def dynamic(module: nn.Module, /, **widths) -> DynamicLayer:
    """Wrap a stock ``torch.nn`` module so its feature sizes follow the given widths.

    Keyword arguments are those of the wrapper (``in_width``/``out_width`` for Linear and convs,
    ``width`` for norms and activations, ``in_width``/``hidden_width`` for GRU/LSTM,
    ``model_width``/``ff_width`` for ``nn.TransformerEncoderLayer``). The module's parameters are reused.
    """
    if isinstance(module, DynamicLayer):
        raise SoftWidthError(f"{type(module).__name__} is already width-aware")
    wrapper = _REGISTRY.get(type(module))
    if wrapper is None:
        names = ", ".join(sorted({t.__name__ for t in _REGISTRY}))
        raise SoftWidthError(f"unsupported module {type(module).__name__}; supported: {names}; add a width-aware "
                             "layer for it with softwidth.layers.register(stock_type, dynamic_type)")
    try:
        return wrapper(module, **widths)
    except TypeError as err:  # wrong keyword for this wrapper
        raise SoftWidthError(f"{wrapper.__name__}: {err}") from None


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
