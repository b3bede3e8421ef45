"""A trainable layer width: a real number K in [min_size, max_size] that gates a feature axis.

The gate is the paper's noise-injection mix (Gómez & Bäckström, arXiv 2601.13704). Feature ``i`` of
the governed axis (0-based) gets a signal share ``s_i(K)`` in [0, 1] and is replaced in train mode by

    y_i = sqrt(s_i) * x_i + sqrt(e_i - s_i) * sigma_i * eps_i,    eps_i ~ N(0, 1)

with an envelope ``e_i >= s_i``: features inside the envelope keep their power and let exactly the fraction
``s_i`` of their information through; features past it are off (zero), as in the paper. The information
that passes, ``sum_i s_i``, is (about) ``K``, so the task loss is differentiable in ``K``.
Two share profiles ("mixes") are available:

``"paper"``
    ``s_i = clamp(K - i, 0, 1)``, ``e_i = [i < K]``: the first ``ceil(K) - 1`` features pass, one boundary
    feature is mixed with ``frac = K - (ceil(K) - 1)`` in (0, 1], the rest are off. Literal form of the paper;
    its gradient is singular just above integers, which traps ``K`` there (see docs/method.md).
``"ramp"`` (default)
    ``s_i = sigmoid((K - i - 1/2) / temperature)``, ``e_i = sigmoid((K - i) / temperature)``: a smooth ramp
    whose total share is still ``~K``; the noise sits in the ramp and fades out above it.
    As ``temperature -> 0`` it tends to the hard truncation at ``round(K)`` used in eval mode and at
    consolidation, so annealing the temperature closes the train/eval gap.

In eval mode the gate is a hard truncation: features ``i >= rounded`` are set to zero and no noise is
injected. ``rounded`` is the integer the layer keeps at consolidation (round half up, then to a multiple
of ``multiple_of``, clamped into the bounds).

Noise scale ``sigma_i``: the population standard deviation of feature ``i`` over every other axis of the
current batch (batch and positions), computed without gradient (detached), so the noise never carries
gradient and only the shares ``s_i(K)`` do.

Bounds: ``K`` is stored directly as an ``nn.Parameter`` in feature units (a width learning rate is "features
per step"). It is projected back into [min_size, max_size] (an in-place clamp, only when it is outside, so an
optimizer step is never undone inside the bounds and the gradient is never that of a flat clamp) before
every use; :func:`softwidth.project_` does the same for a whole model after an optimizer step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SoftWidthError, is_number
from .gate import gate_features

__all__ = ["MIXES", "Width"]

MIXES = ("ramp", "paper")
_EPS = 1e-12
_MAX_SIZE = 2**24  # feature indices are float32 (exact integers up to 2**24)


class Width(nn.Module):
    """A trainable size in ``[min_size, max_size]`` for one feature axis.

    Args:
        max_size: number of features the layer has at full size (int >= 1).
        min_size: smallest allowed real size, ``1 <= min_size <= max_size``. Default 1.
        kappa_min: alternative to ``min_size``: ``min_size = kappa_min * max_size`` (0 < kappa_min <= 1).
        init: initial real size (default ``max_size``).
        mix: ``"ramp"`` (default) or ``"paper"``; see the module docstring.
        temperature: ramp temperature in features (> 0); ignored by ``"paper"``. Anneal it with
            :meth:`set_temperature` (it is a buffer, so it is saved in the state_dict).
        multiple_of: the rounded size is a multiple of this (e.g. the number of attention heads).
        name: label used in logs and error messages (default: set from the model by ``softwidth.profile``).

    Shapes: :meth:`forward` takes ``x`` of any shape with ``x.shape[dim] == max_size`` and returns a tensor of
    the same shape.
    """

    def __init__(
        self,
        max_size: int,
        *,
        min_size: float | None = None,
        kappa_min: float | None = None,
        init: float | None = None,
        mix: str = "ramp",
        temperature: float = 1.0,
        multiple_of: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__()
        label = name or "Width"
        if isinstance(max_size, bool) or not isinstance(max_size, int) or not 1 <= max_size <= _MAX_SIZE:
            raise SoftWidthError(f"{label}: max_size must be an int >= 1 and <= 2**24, got {max_size!r}")
        if name is not None and not isinstance(name, str):
            raise SoftWidthError(f"{label}: name must be a str or None, got {type(name).__name__}")
        if min_size is not None and kappa_min is not None:
            raise SoftWidthError(f"{label}: give min_size or kappa_min, not both")
        if kappa_min is not None:
            if not is_number(kappa_min) or not 0.0 < kappa_min <= 1.0:
                raise SoftWidthError(f"{label}: kappa_min must be in (0, 1], got {kappa_min!r}")
            min_size = max(1.0, kappa_min * max_size)
        min_size = 1.0 if min_size is None else min_size
        if not is_number(min_size) or not 1.0 <= min_size <= max_size:
            raise SoftWidthError(
                f"{label}: bounds out of order or outside [1, max_size]: min_size={min_size!r}, "
                f"max_size={max_size}; use 1 <= min_size <= max_size"
            )
        if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
            raise SoftWidthError(f"{label}: multiple_of must be an int >= 1, got {multiple_of!r}")
        if max_size % multiple_of:
            raise SoftWidthError(
                f"{label}: max_size={max_size} is not a multiple of multiple_of={multiple_of}"
            )
        if mix not in MIXES:
            raise SoftWidthError(f"{label}: mix must be one of {MIXES}, got {mix!r}")
        init = float(max_size) if init is None else init
        if not is_number(init) or not min_size <= init <= max_size:
            raise SoftWidthError(
                f"{label}: init={init!r} is outside [min_size, max_size] = [{min_size}, {max_size}]"
            )
        self.max_size = max_size
        self.min_size = float(min_size)
        self.multiple_of = multiple_of
        self.mix = mix
        self.name = name
        self.value = nn.Parameter(torch.tensor(float(init)))
        self._good = float(init)  # the last finite in-bounds value (restored by project_ after a NaN step)
        self.project_()  # init == a min_size that float32 cannot hold exactly: start just above it
        self.register_buffer("temperature", torch.tensor(1.0))
        self.set_temperature(temperature)
        self.register_buffer("index", torch.arange(max_size, dtype=torch.float32), persistent=False)
        self.ordering = 0.0  # probability of a nested-dropout truncation per train forward (see set_ordering)
        self._cut: float | None = None  # the prefix the last train-mode mix drew, if ordering pressure drew one
        self.frozen = False  # see freeze_

    # -- value -------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.name or f"Width(max_size={self.max_size})"

    def set_temperature(self, temperature: float) -> None:
        """Set the ramp temperature (features, > 0)."""
        if not is_number(temperature) or temperature <= 0:
            raise SoftWidthError(f"{self.label}: temperature must be a finite number > 0, got {temperature!r}")
        self.temperature.fill_(float(temperature))

    def set_ordering(self, probability: float) -> None:
        """Ordering pressure: with this probability per train-mode forward the gate ignores ``K`` and keeps a
        hard prefix of ``u ~ Uniform(min_size, max_size)`` features, the rest noise (nested dropout). The
        network then stays useful at every prefix with the most useful information first, so the gradient
        that moves ``K`` does not depend on where ``K`` started. 0 disables it."""
        if not is_number(probability) or not 0.0 <= probability <= 1.0:
            raise SoftWidthError(f"{self.label}: ordering probability must be in [0, 1], got {probability!r}")
        self.ordering = float(probability)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the parameter into ``[min_size, max_size]`` in place, only if it is outside.

        If the parameter is NaN or infinite (e.g. after a diverged step or a NaN gradient), it is reset to
        its last projected value, so a width never holds a value outside its bounds, and
        :class:`SoftWidthError` is raised.
        """
        value = float(self.value.detach())
        if not math.isfinite(value):
            self.value.fill_(self._good)  # never leave NaN/inf in the parameter: the next forward stays sane
            raise SoftWidthError(f"{self.label}: width became {value} (diverged optimizer step?); reset to its "
                                 f"last value {self._good:g}; lower the width learning rate or fix the loss")
        if value < self.min_size or value > self.max_size:
            self.value.clamp_(self.min_size, float(self.max_size))
            if float(self.value.detach()) < self.min_size:  # min_size is no float32: use the next one above
                self.value.copy_(torch.nextafter(self.value, self.value.new_tensor(math.inf)))
            value = float(self.value.detach())
        self._good = value

    def real(self) -> torch.Tensor:
        """The real-valued size K as a differentiable 0-dim tensor (projected into bounds first)."""
        self.project_()
        return self.value

    @property
    def rounded(self) -> int:
        """The integer size kept at consolidation (round half up, to ``multiple_of``, within bounds)."""
        self.project_()
        q = self.multiple_of
        n = q * math.floor(float(self.value.detach()) / q + 0.5)
        lowest = q * math.ceil(self.min_size / q - 1e-9)
        return int(min(max(n, lowest, q), self.max_size))

    # -- gate --------------------------------------------------------------------------------
    def shares(self) -> torch.Tensor:
        """Signal shares ``s_i`` in [0, 1], shape ``(max_size,)``; hard 0/1 mask in eval mode."""
        if not self.training or self.frozen:
            return (self.index < self.rounded).to(self.value.dtype)
        k = self.real()
        if self.mix == "paper":
            return (k - self.index).clamp(0.0, 1.0)
        return torch.sigmoid((k - self.index - 0.5) / self.temperature)

    def mix_weights(self, size: torch.Tensor | None = None, index: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train-mode weights ``(sqrt(s_i), sqrt(e_i - s_i))`` of signal and noise, each ``index``-shaped.

        ``s_i`` is the signal share, ``e_i >= s_i`` the envelope of features that are on at all (signal or
        noise): features past the boundary are off (zero), as in the paper. ``size`` (default: this width's
        real value, differentiable) and ``index`` (default ``0 .. max_size - 1``) let a layer evaluate the mix
        at a derived size, e.g. the per-head dimension ``K / heads`` of attention. Gradients are finite for
        both mixes. A frozen width (see :meth:`freeze_`) returns the hard 0/1 mask and no noise.
        """
        own = size is None and index is None
        index = self.index if index is None else index
        if self.frozen:
            keep = (index < self.rounded if own else index < float(size)).to(self.value.dtype)
            return keep, torch.zeros_like(keep)
        k = self.real() if size is None else size
        if self.mix == "paper":
            s = (k - index).clamp(0.0, 1.0)
            signal = _sqrt(s)
            noise = _sqrt((index < k).to(s.dtype) - s)
        else:
            z = (k - index) / self.temperature
            signal = torch.exp(0.5 * F.logsigmoid(z - 0.5 / self.temperature))
            noise = _sqrt(torch.sigmoid(z) - signal.square())
        if own and self.ordering > 0.0 and float(torch.rand(())) < self.ordering:
            # nested dropout over the whole range: this forward sees a hard prefix of u features, whatever K
            # is, so every prefix stays useful and ordered and dL/dK does not depend on where K started
            cut = self.min_size + float(torch.rand(())) * (self.max_size - self.min_size)
            signal = (index < cut).to(signal.dtype)
            noise = torch.zeros_like(signal)
            self._cut = cut
        elif own:
            self._cut = None
        return signal, noise

    def envelope(self) -> torch.Tensor:
        """``sqrt(e_i)``, shape ``(max_size,)``: the amplitude of feature ``i`` after the gate of the last
        train-mode forward (signal and noise together), the 0/1 keep mask in eval mode or when frozen.

        :meth:`softwidth.layout.Layout.regate` multiplies by it to re-apply the drop after a per-feature map
        without a second noise mix. If the last
        :meth:`mix_weights` drew a nested-dropout prefix (ordering pressure), the envelope is that prefix.
        """
        if not self.training or self.frozen:
            return (self.index < self.rounded).to(self.value.dtype)
        if self._cut is not None:
            return (self.index < self._cut).to(self.value.dtype)
        k = self.real()
        if self.mix == "paper":
            return (self.index < k).to(k.dtype)
        return torch.exp(0.5 * F.logsigmoid((k - self.index) / self.temperature))

    @torch.no_grad()
    def freeze_(self) -> None:
        """Round the width, stop its gradient and gate with the hard truncation in train mode too."""
        self.value.fill_(float(self.rounded))
        self.value.requires_grad_(False)
        self.frozen = True

    def unfreeze_(self) -> None:
        """Undo :meth:`freeze_`: the width learns again and train mode uses the noise mix."""
        self.value.requires_grad_(True)
        self.frozen = False

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Gate axis ``dim`` of ``x`` (size ``max_size``): noise mix in train mode, truncation in eval."""
        return gate_features(x, dim, size=self.max_size, where=self.label, training=self.training and not self.frozen,
                             shares=self.shares, weights=self.mix_weights)

    def extra_repr(self) -> str:
        return (
            f"value={float(self.value.detach()):.3f}, min_size={self.min_size:g}, max_size={self.max_size}, "
            f"mix={self.mix!r}, temperature={float(self.temperature):g}"
            + (f", multiple_of={self.multiple_of}" if self.multiple_of > 1 else "")
            + (f", name={self.name!r}" if self.name else "")
        )


def _sqrt(u: torch.Tensor) -> torch.Tensor:
    """``sqrt(u)`` that is exactly 0 (with zero gradient) where ``u <= _EPS``, finite-gradient elsewhere."""
    return torch.where(u > _EPS, u.clamp_min(_EPS).sqrt(), torch.zeros_like(u))
