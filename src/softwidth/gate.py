"""Gating one feature axis: the input checks, the detached batch std and the train/eval gate of a width.

:class:`~softwidth.Width` (one block) and :class:`~softwidth.layout.Layout` (several) both gate through
:func:`gate_features`, which takes the per-feature weights as callables, so this module needs no width type.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import SoftWidthError
from .noise_mix import noise_mix

__all__ = ["NOISE_CUT", "batch_std", "check_features", "gate_features"]

NOISE_CUT = 1e-3
"""Noise weights ``sqrt(e_i - s_i)`` at or below this get no noise: their noise power is at most 1e-6 of the
feature's, and skipping them spares the random numbers and the std of features far from every boundary."""


def gate_features(x: torch.Tensor, dim: int, *, size: int, where: str, training: bool,
                  shares: Callable[[], torch.Tensor],
                  weights: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Gate axis ``dim`` of ``x`` (``x.shape[dim] == size``, checked).

    Eval mode (``training`` False): ``x * shares()``, the 0/1 (or soft) share of every feature, shape ``(size,)``.
    Train mode: ``weights()`` gives ``(signal, noise)`` of shape ``(size,)``; the features whose noise weight is
    above :data:`NOISE_CUT` (one contiguous run) get ``noise * batch std * N(0, 1)`` added to ``signal * x``
    (:func:`~softwidth.noise_mix.noise_mix`). Differentiable in ``x`` and in the weights.
    """
    check_features(x, size, dim, where=where)
    shape = [1] * x.dim()
    shape[dim] = size
    if not training:
        return x * shares().to(device=x.device, dtype=x.dtype).view(shape)
    signal, noise = weights()
    signal, noise = signal.to(x.dtype), noise.to(x.dtype)
    # noise only where its weight is not exactly zero (a contiguous run around each boundary): the std and
    # the random numbers of the other features would be multiplied by zero
    on = torch.nonzero(noise.detach() > NOISE_CUT).flatten()
    if on.numel() == 0:
        return signal.view(shape) * x
    lo, hi = int(on[0]), int(on[-1]) + 1
    part = x.detach().narrow(dim, lo, hi - lo)
    reduce = [d for d in range(x.dim()) if d != dim % x.dim()]
    sigma = batch_std(part, reduce) if reduce else part.abs()
    shape[dim] = hi - lo
    # contiguous draw: on a strided tensor (a permuted or channel-last ``x``) the CPU normal_ falls back to a
    # per-element loop, several times slower
    eps = torch.randn_like(part, memory_format=torch.contiguous_format)
    return noise_mix(x, signal, noise[lo:hi].view(shape) * sigma, eps, dim, lo)


def check_features(x: torch.Tensor, expected: int, dim: int, *, where: str) -> None:
    """Raise :class:`SoftWidthError` unless ``x`` is a finite floating-point tensor with ``x.shape[dim] ==
    expected`` (``dim`` an int)."""
    if not isinstance(x, torch.Tensor):
        raise SoftWidthError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():  # the noise mix needs a std; layers need float weights' dtype
        raise SoftWidthError(f"{where}: expected floating-point features, got a {x.dtype} tensor; cast with .float()")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise SoftWidthError(f"{where}: the feature axis must be an int, got {dim!r}")
    if not -x.dim() <= dim < max(x.dim(), 1) or x.dim() == 0:
        raise SoftWidthError(f"{where}: input of shape {tuple(x.shape)} has no feature axis {dim}")
    if x.shape[dim] != expected:
        raise SoftWidthError(
            f"{where}: input has {x.shape[dim]} features on axis {dim} (shape {tuple(x.shape)}), "
            f"expected {expected}; check the layer's in_width / the producer's max size"
        )
    # one reduction decides in the common case (a finite sum means no NaN/inf); the exact elementwise check runs
    # only when the sum is not finite (NaN/inf inside, or finite values whose float sum overflows)
    if not bool(torch.isfinite(x.detach().sum())) and not bool(torch.isfinite(x).all()):
        raise SoftWidthError(f"{where}: input features contain NaN or inf")


def batch_std(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Population std of ``x`` over ``dims`` (keepdim), without gradient.

    From the first two moments, ``sqrt(max(E[x^2] - E[x]^2, 0))``: one fused pass, several times faster on CPU
    than :func:`torch.std` over a non-trailing set of axes. Where that form loses precision (a mean over 30
    times the std, so ``E[x]^2`` dwarfs the variance), the exact two-pass :func:`torch.std` is used instead.
    """
    x = x.detach()
    mean = x.mean(dims, keepdim=True)
    var = x.square().mean(dims, keepdim=True) - mean.square()
    if bool((mean.square() > 1e3 * var).any()):
        return x.std(dim=dims, correction=0, keepdim=True)
    return var.clamp_min(0.0).sqrt()
