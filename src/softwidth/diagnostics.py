"""Where a run went non-finite: the first module whose output holds NaN or inf, and the tensors that do.

:func:`softwidth.fit` uses these when the loss or a gradient becomes non-finite (so its error names the step
and the layer) and before every checkpoint write and the consolidation (so a NaN model is never saved).
They work on any ``nn.Module``::

    report = locate_nonfinite(model, lambda: loss_fn(model, batch))
    print(report)   # first non-finite output: module 'encoder.2' (Linear), its input was finite; ...

:func:`locate_nonfinite` reruns the forward with a forward hook on every module, under ``torch.no_grad()``
and with the random state restored afterwards, so it costs one forward and changes nothing the training
run depends on (it is meant for the moment the run has already failed). Hooks fire when a module returns,
so the first module reported is the innermost one, in execution order, that produced the NaN/inf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import SoftWidthError

__all__ = ["NonFinite", "check_finite", "locate_nonfinite", "nonfinite_tensors"]

_SHOWN = 5  # names listed in a one-line message before "and N more"


@dataclass(frozen=True)
class NonFinite:
    """What :func:`locate_nonfinite` found.

    ``module``: path of the first module (in the order modules return) whose output holds NaN or inf
    (``""`` is the model itself), or ``None`` if every module output was finite (the NaN then comes from
    the code after the model, e.g. the loss function). ``module_type``: its class name. ``input_finite``:
    whether that module's inputs were finite (``False``: the NaN came in with the input, i.e. the batch or
    code outside modules). ``tensors``: parameters, buffers and widths of the model that hold NaN or inf.
    ``output_finite``: whether the value ``run()`` returned is finite. ``error``: what ``run()`` raised, if
    anything (one line). ``str()`` gives one line.
    """

    module: str | None
    module_type: str = ""
    input_finite: bool = True
    tensors: tuple[str, ...] = ()
    output_finite: bool = True
    error: str = ""

    def __str__(self) -> str:
        parts = []
        if self.module is not None:
            name = repr(self.module) if self.module else "the model itself"
            origin = ("its input was finite" if self.input_finite else
                      "its input was already non-finite (the batch, or code outside modules)")
            parts.append(f"first non-finite output: module {name} ({self.module_type}), {origin}")
        elif not self.output_finite:
            parts.append("every module output was finite: the code after the model made the NaN/inf")
        elif not self.error:
            parts.append("the rerun was finite everywhere (the NaN/inf did not recur: a random draw, or state "
                         "the failed step changed)")
        if self.tensors:
            parts.append(f"non-finite parameters/buffers: {_names(self.tensors)}")
        if self.error:
            parts.append(f"the rerun raised {self.error}")
        return "; ".join(parts)


def locate_nonfinite(model: nn.Module, run: Callable[[], object]) -> NonFinite:
    """Rerun ``run()`` (a forward of ``model``, e.g. ``lambda: loss_fn(model, batch)``) and report where the
    first NaN/inf appears.

    Args:
        model: the module whose submodules are watched (forward hooks on every one, removed afterwards).
        run: a callable without arguments that calls ``model`` (its return value, if a tensor or a
            container of tensors, is checked too).

    Returns a :class:`NonFinite`. The rerun runs without gradient and the CPU and CUDA random states are
    restored afterwards; exceptions raised by ``run()`` are caught and reported in ``error``. Buffers that
    the forward updates (BatchNorm running statistics in train mode) are updated once more.
    """
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"locate_nonfinite: model must be an nn.Module, got {type(model).__name__}")
    if not callable(run):
        raise SoftWidthError(f"locate_nonfinite: run must be a callable without arguments, got {type(run).__name__}")
    found: list[tuple[str, str, bool]] = []

    def watch(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if not found and not _finite(output):
                found.append((name, type(module).__name__, _finite(inputs)))
        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    error, result = "", None
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            result = run()
    except Exception as err:  # noqa: BLE001 - the run already failed: report what the rerun hit, not raise
        error = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    finally:
        for handle in handles:
            handle.remove()
    tensors = tuple(nonfinite_tensors(model))
    output_finite = _finite(result)
    if not found:
        return NonFinite(None, tensors=tensors, output_finite=output_finite, error=error)
    name, kind, input_finite = found[0]
    return NonFinite(name, kind, input_finite, tensors, output_finite, error)


def nonfinite_tensors(model: nn.Module, *, grads: bool = False) -> list[str]:
    """Names of ``model``'s parameters and buffers that hold NaN or inf (width values included), in
    ``named_parameters`` then ``named_buffers`` order; with ``grads=True`` the parameters whose ``.grad``
    does. One device synchronisation when everything is finite (the common case)."""
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"nonfinite_tensors: model must be an nn.Module, got {type(model).__name__}")
    if grads:
        named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    else:
        named = list(model.named_parameters()) + list(model.named_buffers())
    named = [(n, t) for n, t in named if t.is_floating_point() or t.is_complex()]
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, t) in enumerate(named):
        by_device.setdefault(t.device, []).append(i)
    flags = {d: torch.stack([torch.isfinite(named[i][1]).all() for i in idx]) for d, idx in by_device.items()}
    if all(bool(f.all()) for f in flags.values()):  # one synchronisation per device
        return []
    ok = [True] * len(named)
    for d, idx in by_device.items():
        for i, flag in zip(idx, flags[d].tolist()):
            ok[i] = flag
    return [n for (n, _), good in zip(named, ok) if not good]


def check_finite(model: nn.Module, *, where: str = "check_finite") -> None:
    """Raise :class:`SoftWidthError` (prefixed with ``where``) naming every parameter and buffer of
    ``model`` that holds NaN or inf; do nothing if all are finite. Call it before saving a model."""
    bad = nonfinite_tensors(model)
    if bad:
        raise SoftWidthError(f"{where}: non-finite values (NaN or inf) in {_names(bad)}; the model was not saved "
                             "or consolidated (lower the learning rate, check the data and the loss)")


def _finite(value) -> bool:
    """True unless ``value`` (a tensor or nested tuples/lists/dicts of them) holds a NaN or inf."""
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _names(names) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
