"""The one exception type softwidth raises for user errors."""

from __future__ import annotations

__all__ = ["SoftWidthError"]


class SoftWidthError(ValueError):
    """A width, layer or input breaks one of softwidth's rules.

    The message names the layer path (or width name), the rule that was broken and how to fix it.
    It subclasses :class:`ValueError` so generic input-validation handlers still catch it.
    """
