"""The one exception type softwidth raises for user errors, and the shared argument check."""

from __future__ import annotations

import math

__all__ = ["SoftWidthError", "is_number"]


class SoftWidthError(ValueError):
    """A width, layer or input breaks one of softwidth's rules.

    The message names the layer path (or width name), the rule that was broken and how to fix it.
    It subclasses :class:`ValueError` so generic input-validation handlers still catch it.
    """


def is_number(value: object) -> bool:
    """True for a finite real ``int``/``float`` (not a bool): the check behind every numeric argument."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
