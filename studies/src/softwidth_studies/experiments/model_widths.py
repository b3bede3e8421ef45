"""The widths of the studies' models, built once for the VAD and the anti-spoofing models alike."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from softwidth.errors import SoftWidthError
from softwidth.width import Width

__all__ = ["max_size", "model_widths"]


def model_widths(kind: str, sizes: Mapping[str, int], dynamic: Collection[str], kappa_min: float,
                 defaults: Mapping[str, int], multiple_of: Mapping[str, int]) -> dict[str, Width | int]:
    """The named widths of a study model ``kind``: a :class:`~softwidth.Width` for each name in ``dynamic``
    (floor ``max(step, kappa_min * size)``), the plain int size for the others; ``sizes`` override ``defaults``
    (every size an int multiple of its ``multiple_of`` step, else :class:`~softwidth.SoftWidthError`)."""
    unknown = set(sizes) - set(defaults)
    if unknown:
        raise SoftWidthError(f"{kind}: unknown sizes {sorted(unknown)}; known: {sorted(defaults)}")
    bad = set(dynamic) - set(defaults)
    if bad:
        raise SoftWidthError(f"{kind}: unknown dynamic widths {sorted(bad)}; known: {sorted(defaults)}")
    full = {**defaults, **sizes}
    out: dict[str, Width | int] = {}
    for name, size in full.items():
        step = multiple_of.get(name, 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < step or size % step:
            raise SoftWidthError(f"{kind}: size {name} must be an int >= {step} and a multiple of {step}, "
                                 f"got {size!r}")
        if name in dynamic:
            low = max(float(step), kappa_min * size)
            out[name] = Width(size, min_size=min(low, float(size)), multiple_of=step, name=name)
        else:
            out[name] = size
    return out


def max_size(w: Width | int) -> int:
    """A width's largest size, or the fixed size itself."""
    return w.max_size if isinstance(w, Width) else w
