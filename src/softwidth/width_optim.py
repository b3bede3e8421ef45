"""An optimizer for widths whose steps keep the gradients' relative size: :class:`WidthSGD`.

Adam gives every width its own second-moment estimate, so each width's step is about ``lr`` whatever its
gradient: widths then fall together at one speed (a uniform shrink), however much each one costs and buys.
:class:`WidthSGD` is momentum SGD with **one** second-moment estimate shared by all widths: the steps are
normalised by one common scale (so ``lr`` is a distance per step, as with Adam), but a width whose gradient is
twice another's moves twice as far. Gradients are taken in a common unit, ``unit="range"`` (a fraction of each
width's ``max_size``, default) or ``unit="features"``. At a fixed point every width's task gradient balances
its cost gradient, at one multiplier: equal marginal benefit per FLOP (measurements in docs/method.md)::

    weights = torch.optim.Adam(sw.param_groups(model, width_lr=0)[0]["params"], lr=3e-3)
    widths = sw.WidthSGD(sw.width_modules(model), lr=0.02)
    ...; loss.backward(); weights.step(); widths.step(); sw.project_(model)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .errors import SoftWidthError, is_number
from .width import Width

__all__ = ["UNITS", "WidthSGD"]

UNITS = ("range", "features")


class WidthSGD(torch.optim.Optimizer):
    """Momentum SGD on widths with one second-moment estimate shared by all of them.

    Per step, with ``g_j`` the gradient of width ``j`` in the common unit (``g_j * max_size_j`` for
    ``unit="range"``): ``v <- beta2 v + (1 - beta2) mean_j g_j^2``, ``m_j <- momentum m_j + (1 - momentum) g_j``
    and ``K_j <- K_j - lr * u_j * m_hat_j / (sqrt(v_hat) + eps)`` (bias-corrected as in Adam; ``u_j`` the unit
    in features). Widths without a gradient (held or frozen) are skipped and do not enter ``v``.

    Args:
        widths: the :class:`Width` modules to train (e.g. ``softwidth.width_modules(model)``).
        lr: step in units per step (``unit="range"``: a fraction of ``max_size``; > 0).
        momentum: first-moment decay in [0, 1).
        beta2: decay of the shared second moment in [0, 1).
        unit: ``"range"`` or ``"features"``.
        eps: added to the normalising root mean square.
    """

    def __init__(self, widths: Iterable[Width], *, lr: float, momentum: float = 0.9, beta2: float = 0.99,
                 unit: str = "range", eps: float = 1e-12) -> None:
        widths = list(widths)
        if not widths or not all(isinstance(w, Width) for w in widths):
            raise SoftWidthError("WidthSGD: widths must be a non-empty iterable of softwidth.Width modules")
        if not is_number(lr) or lr <= 0:
            raise SoftWidthError(f"WidthSGD: lr must be a finite number > 0, got {lr!r}")
        for name, value in (("momentum", momentum), ("beta2", beta2)):
            if not is_number(value) or not 0.0 <= value < 1.0:
                raise SoftWidthError(f"WidthSGD: {name} must be in [0, 1), got {value!r}")
        if unit not in UNITS:
            raise SoftWidthError(f"WidthSGD: unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if not is_number(eps) or eps <= 0:
            raise SoftWidthError(f"WidthSGD: eps must be a finite number > 0, got {eps!r}")
        scales = [float(w.max_size) if unit == "range" else 1.0 for w in widths]
        group = {"params": [w.value for w in widths], "scales": scales, "unit": unit, "v": 0.0, "t": 0}
        super().__init__([group], {"lr": float(lr), "momentum": float(momentum), "beta2": float(beta2),
                                   "eps": float(eps), "base_lr": float(lr)})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch.optim signature
        """Take one step on every width that has a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            live = [(p, s) for p, s in zip(group["params"], group["scales"]) if p.grad is not None]
            if not live:
                continue
            grads = [float(p.grad) * s for p, s in live]
            group["t"] += 1
            t, b1, b2 = group["t"], group["momentum"], group["beta2"]
            group["v"] = b2 * group["v"] + (1.0 - b2) * sum(g * g for g in grads) / len(grads)
            rms = math.sqrt(group["v"] / (1.0 - b2**t)) + group["eps"]
            for (p, s), g in zip(live, grads):
                state = self.state[p]
                m = b1 * float(state.get("m", 0.0)) + (1.0 - b1) * g
                state["m"] = torch.tensor(m)
                p.sub_(group["lr"] * s * (m / (1.0 - b1**t)) / rms)
        return loss

    def scale_lr(self, factor: float) -> None:
        """Set the learning rate to ``factor`` times the one given at construction (the schedule's decay)."""
        for group in self.param_groups:
            group["lr"] = group["base_lr"] * factor
