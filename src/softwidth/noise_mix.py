"""The train-mode gate's arithmetic as one autograd node: ``y = signal * x`` plus a noise term on a run of features.

:meth:`softwidth.layout.Layout.gate` computes, along the feature axis ``dim`` of ``x``,

    ``y_i = signal_i * x_i``                          for every feature ``i``,
    ``y_i += scale_i * eps_i``                        for the features ``lo <= i < lo + n`` (the noisy run),

with ``scale = noise weight * detached std`` and ``eps`` the drawn Gaussian numbers (no gradient). Written with
plain tensor ops, autograd keeps a padded or sliced copy of the noise term and reduces each parameter's gradient
through a full-size product (``grad * x``, ``grad * eps``) and a sum. This node instead writes the noise term in
place into the fresh product and reduces each gradient with one fused dot product per feature
(:func:`torch.linalg.vecdot`), which on CPU is about twice as fast as a product and a sum on the big tensors of a
convolutional first stage. The values and gradients are the plain ops' (tests/test_noise_mix.py).
"""

from __future__ import annotations

import math

import torch

from .errors import SoftWidthError

__all__ = ["noise_mix"]


def noise_mix(x: torch.Tensor, signal: torch.Tensor, scale: torch.Tensor, eps: torch.Tensor, dim: int,
              lo: int) -> torch.Tensor:
    """``signal * x`` along axis ``dim``, plus ``scale * eps`` on features ``lo .. lo + eps.shape[dim] - 1``.

    Args:
        x: any shape; ``x.shape[dim]`` features.
        signal: ``(x.shape[dim],)`` weights of the signal (differentiable).
        scale: weights of the noise, ``eps.shape[dim]`` of them on axis ``dim`` and 1 on every other axis
            (differentiable).
        eps: the noise, the shape of ``x`` narrowed to the run on ``dim`` (no gradient).
        dim: the feature axis (negative counts from the end).
        lo: first feature of the run.

    Returns: a new tensor the shape of ``x``. Raises ``SoftWidthError`` if ``scale`` is not shaped so.
    """
    dim = dim % x.dim()
    if tuple(scale.shape) != _axis_shape(x.dim(), dim, eps.shape[dim]):
        raise SoftWidthError(f"noise_mix: scale has shape {tuple(scale.shape)}; expected "
                             f"{_axis_shape(x.dim(), dim, eps.shape[dim])} (one weight per noisy feature)")
    return _NoiseMix.apply(x, signal, scale, eps, dim, lo)


class _NoiseMix(torch.autograd.Function):
    @staticmethod
    def forward(x, signal, scale, eps, dim, lo):
        out = x * signal.view(_axis_shape(x.dim(), dim))
        out.narrow(dim, lo, eps.shape[dim]).addcmul_(scale, eps)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, signal, scale, eps, dim, lo = inputs
        ctx.save_for_backward(x, signal, eps)
        ctx.dim, ctx.lo, ctx.scale_shape = dim, lo, scale.shape

    @staticmethod
    def backward(ctx, grad):
        x, signal, eps = ctx.saved_tensors
        dim, lo = ctx.dim, ctx.lo
        grad_x = grad_signal = grad_scale = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * signal.view(_axis_shape(grad.dim(), dim))
        if ctx.needs_input_grad[1]:
            grad_signal = _feature_dot(grad, x, dim)
        if ctx.needs_input_grad[2]:
            grad_scale = _feature_dot(grad.narrow(dim, lo, eps.shape[dim]), eps, dim).view(ctx.scale_shape)
        return grad_x, grad_signal, grad_scale, None, None, None


def _axis_shape(ndim: int, dim: int, size: int = -1) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[dim] = size
    return tuple(shape)


def _feature_dot(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """``(a * b)`` summed over every axis but ``dim``: shape ``(a.shape[dim],)``, one fused pass."""
    before, features = math.prod(a.shape[:dim]), a.shape[dim]
    after = math.prod(a.shape[dim + 1:])
    if after == 1:
        return torch.linalg.vecdot(a.reshape(before, features), b.reshape(before, features), dim=0)
    return torch.linalg.vecdot(a.reshape(before, features, after), b.reshape(before, features, after)).sum(0)
