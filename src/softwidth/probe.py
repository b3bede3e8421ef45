"""The probe forward pass: how many positions each layer computes per second of audio, and width checks.

:func:`profile` runs the model once in eval mode on an example input that holds ``seconds`` of audio (1 s
by default) and records, for every layer, the positions (frames, steps, pixels) it computes per example.
FLOP/s then follow from the closed-form per-position costs. While probing, every gated tensor carries its
layout, so the probe also checks the wiring: a layer that consumes a width must declare the same width the
producer gated with, residual additions must share a width, and a stock layer fed by a dynamic width is
refused (it would break at consolidation). Layers the user did not make dynamic are priced at fixed size.

What is priced: every width-aware layer; stock modules of every registered type
(``softwidth.layers.WRAPPERS``: Linear, Conv1d/2d, GRU, LSTM, BatchNorm, LayerNorm, TransformerEncoderLayer, the
element-wise activations of ``softwidth.layers.ELEMENTWISE_FLOPS`` and the types added with
``softwidth.layers.register``), as module calls, with their layer's formulas at fixed size
(:meth:`~softwidth.layers.DynamicLayer.fixed`). Not priced: functional calls in ``forward`` (``F.relu``,
``x + y``, pooling) and parameter-free modules outside that list.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SoftWidthError, is_number
from .layers import WRAPPERS, DynamicLayer, Elementwise
from .layers.elementwise import ELEMENTWISE_FLOPS
from .layout import Layout
from .width import Width

__all__ = ["Entry", "Profile", "profile"]

_TAG = "_softwidth_layout"
_NONZERO_AT_ZERO = (nn.Sigmoid, nn.Softplus)


@dataclass(frozen=True)
class Entry:
    """One priced module: its path, the layer whose formulas price it, positions per example."""

    name: str
    layer: DynamicLayer
    positions: float
    dynamic: bool


@dataclass
class Profile:
    """Result of :func:`profile`, stored on the model as ``model.softwidth_profile``."""

    seconds: float
    entries: list[Entry] = field(default_factory=list)


def profile(model: nn.Module, example, *, seconds: float = 1.0) -> Profile:
    """Probe ``model`` with ``example`` (``seconds`` of audio per example) and store the result on it.

    Args:
        model: a model containing width-aware layers.
        example: the input of one forward call (a tensor, or a tuple of positional inputs), batch first,
            e.g. ``torch.zeros(1, 16000)`` for 1 s of 16 kHz audio or ``(1, 100, 80)`` features at 10 ms.
        seconds: the audio duration one example of ``example`` covers (> 0).

    Returns the :class:`Profile` (also kept as ``model.softwidth_profile``; re-run after changing the
    model). Raises :class:`SoftWidthError` on wiring errors, naming the layer and the widths involved.
    """
    if not isinstance(model, nn.Module):
        raise SoftWidthError(f"profile: model must be an nn.Module, got {type(model).__name__}")
    if not is_number(seconds) or seconds <= 0:
        raise SoftWidthError(f"profile: seconds must be a finite number > 0, got {seconds!r}")
    inputs = example if isinstance(example, tuple) else (example,)
    first = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
    if first is None or first.dim() == 0:
        raise SoftWidthError("profile: example must be a batched tensor (or a tuple holding one)")
    batch = first.shape[0]
    if batch < 1:  # positions are counted per example
        raise SoftWidthError(f"profile: example has batch size 0 (shape {tuple(first.shape)}); use one example or more")
    name_widths(model)

    # width-aware layers, and stock composites softwidth prices as one unit, hide their children
    units = [m for m in model.modules() if isinstance(m, DynamicLayer) or (type(m) in WRAPPERS and list(m.children()))]
    inside = {id(sub) for m in units for sub in m.modules() if sub is not m}
    result = Profile(seconds=float(seconds))
    handles = []
    for name, module in model.named_modules():
        if id(module) in inside:
            continue
        if isinstance(module, DynamicLayer):
            module.path = name
            handles.append(module.register_forward_hook(_dynamic_hook(name, batch, result)))
        elif type(module) in WRAPPERS or not list(module.children()):
            handles.append(module.register_forward_hook(_stock_hook(name, batch, result)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    model.softwidth_profile = result
    return result


def name_widths(model: nn.Module) -> None:
    """Give every unnamed :class:`Width` a path in ``model``, preferring where it is produced.

    A width reached as ``fc1.out_width`` and ``fc2.in_width`` is named ``"fc1.out_width"``.
    """
    paths: dict[int, list[str]] = {}
    found: dict[int, Width] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, Width):
            paths.setdefault(id(module), []).append(name)
            found[id(module)] = module
    for key, width in found.items():
        if width.name is None:
            names = paths[key]
            width.name = next((n for n in names if not n.rsplit(".", 1)[-1].startswith("in_width")), names[0])


def _tag(tensor, layout: Layout, dim: int) -> None:
    if isinstance(tensor, torch.Tensor) and tensor.dim() > 0:
        setattr(tensor, _TAG, (layout, dim % tensor.dim()))


def _tags(inputs) -> list[tuple[int, Layout, int]]:
    found = []
    for i, t in enumerate(inputs):
        tag = getattr(t, _TAG, None) if isinstance(t, torch.Tensor) else None
        if tag is not None:
            found.append((i, *tag))
    return found


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def _dynamic_hook(name: str, batch: int, result: Profile):
    def hook(layer: DynamicLayer, inputs, output):
        _check_consumed(name, layer, inputs)
        result.entries.append(Entry(name, layer, layer.count_positions(inputs, output, batch), True))
        out = _first_tensor(output)
        if layer.out_layout is not None and layer.out_layout.is_dynamic and out is not None:
            _tag(out, layer.out_layout, layer.feature_dim(out.dim(), "out"))
    return hook


def _check_consumed(name: str, layer: DynamicLayer, inputs) -> None:
    for index, layout, dim in _tags(inputs):
        expected = layer.input_layout(index)
        if expected is None:
            continue
        if not expected.is_dynamic:
            raise SoftWidthError(
                f"{name}: its input {index} is gated by width {layout.label} but the layer has a fixed "
                f"input size; pass in_width={layout.label} (the producer's width) when wrapping it"
            )
        if not expected.same_as(layout):
            raise SoftWidthError(
                f"{name}: must share a width with its producer: input {index} is gated by "
                f"{layout.label}, the layer declares {expected.label}; pass the producer's Width object"
            )


def _stock_hook(name: str, batch: int, result: Profile):
    def hook(module: nn.Module, inputs, output):
        tags = _tags(inputs)
        if tags:
            _, layout, dim = tags[0]
            if type(module) not in ELEMENTWISE_FLOPS:
                raise SoftWidthError(
                    f"{name}: stock {type(module).__name__} consumes dynamic width {layout.label} but is "
                    "not width-aware; wrap it with softwidth.dynamic(...) and pass the width"
                )
            if isinstance(module, _NONZERO_AT_ZERO):
                raise SoftWidthError(
                    f"{name}: {type(module).__name__}(0) != 0, so features dropped by width {layout.label} "
                    "would leak; wrap it: softwidth.dynamic(module, width=...)"
                )
            if isinstance(module, nn.PReLU) and module.num_parameters > 1:
                raise SoftWidthError(
                    f"{name}: stock PReLU with one slope per channel consumes dynamic width {layout.label}; "
                    "wrap it so its slopes are sliced: softwidth.dynamic(module, width=..., dim=1)"
                )
            pricer = Elementwise(module, layout, dim=dim)
            x = inputs[0]
            result.entries.append(Entry(name, pricer, x.numel() / x.shape[dim] / batch, True))
            out = _first_tensor(output)
            if out is not None and out.shape == x.shape:
                _tag(out, layout, dim)
            return
        wrapper = WRAPPERS.get(type(module))
        if wrapper is None:
            if any(True for _ in module.parameters(recurse=False)):
                warnings.warn(f"softwidth.profile: {name} ({type(module).__name__}) is not priced", stacklevel=2)
            return
        try:
            pricer = wrapper.fixed(module, inputs)
        except TypeError as err:  # a registered layer whose constructor needs its widths
            raise SoftWidthError(
                f"{name}: {wrapper.__name__}.fixed cannot price the unwrapped {type(module).__name__} ({err}); give "
                f"{wrapper.__name__}'s widths defaults of None or override its fixed(module, inputs)") from None
        positions = pricer.count_positions(inputs, output, batch)
        result.entries.append(Entry(name, pricer, positions, False))
    return hook
