"""Optional dependencies of the library: softwidth itself needs only torch and numpy.

``require("safetensors.torch", "save", "saving a model")`` imports a module or raises a one-line
:class:`~softwidth.SoftWidthError` naming the extra that installs it; :func:`progress_bar` is tqdm's bar when tqdm is
installed and a silent stand-in otherwise (training never depends on it).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Iterable

from .errors import SoftWidthError

EXTRAS = {"safetensors.torch": "save", "matplotlib": "plot", "tqdm": "progress"}


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``; if it is missing, raise a SoftWidthError that says ``pip install "softwidth[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SoftWidthError(f"{what} needs {module.split('.')[0]}: pip install \"softwidth[{extra}]\"") from None


class _Silent:
    """What :func:`progress_bar` returns without tqdm: iterates, accepts ``set_postfix``, shows nothing."""

    def __init__(self, iterable: Iterable) -> None:
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable, **options: Any):
    """``tqdm.auto.tqdm(iterable, **options)``, or a silent iterator when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent(iterable)
    return tqdm(iterable, **options)
