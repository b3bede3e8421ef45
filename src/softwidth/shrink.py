"""Train the consolidated network once every width is frozen, and write the result back.

After the schedule freezes the widths (:class:`~softwidth.schedule.WidthScheduler`), a dynamic model computes
the same function as its consolidation (hard 0/1 masks, no noise), but at its maximum size: every masked
feature still costs its multiply-adds. :func:`shrink` consolidates the model and carries the optimizer state of
every kept weight over, so the rest of training runs at the chosen sizes; :meth:`Shrunk.restore` writes the
trained weights, buffers and optimizer state back into the dynamic model and its optimizer.

Which element of the consolidated model came from which element of the dynamic one is found by consolidating a
copy whose tensors hold their own flat indices: consolidation only selects (:func:`softwidth.consolidate`), so
every consolidated tensor then holds its sources. A model whose consolidation computes a parameter from several
sources, or copies one twice, cannot be shrunk (:class:`SoftWidthError`); buffers that consolidation rebuilds
(constants such as a mel filter bank) are left as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .consolidate import consolidate
from .errors import SoftWidthError
from .optim import width_modules
from .width import Width

__all__ = ["Shrunk", "shrink"]

BASE = 2 ** 40
"""First index code: far from the values (0, 1) a freshly built module holds, so an element consolidation
initialises instead of copying is never mistaken for a traced one."""


@dataclass
class _Source:
    """Where the elements of one consolidated tensor came from: ``target.view(-1)[positions]`` are
    ``source.view(-1)[local]``."""

    source: torch.Tensor
    local: torch.Tensor
    positions: torch.Tensor


@dataclass
class _Links:
    """The trace of one shrink: the dynamic model's optimizer, and the sources of every consolidated
    parameter and traced buffer."""

    original: torch.optim.Optimizer
    params: list[tuple[nn.Parameter, list[_Source]]]
    buffers: list[tuple[torch.Tensor, list[_Source]]]


class Shrunk:
    """A consolidated copy of a frozen dynamic model and an optimizer over it carrying the original state.

    ``model``: the consolidated model (same train/eval mode); ``optimizer``: an optimizer of the original's
    class in which each consolidated weight sits in its source's parameter group (same hyper-parameters;
    groups left empty, such as the widths', are dropped); ``links``: the trace :func:`shrink` made. Train
    ``model`` with ``optimizer`` as usual, then call :meth:`restore`.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, links: _Links) -> None:
        self.model, self.optimizer, self.links = model, optimizer, links

    def restore(self) -> None:
        """Write the consolidated model's weights, buffers and optimizer state back into the dynamic model
        and the original optimizer (features the consolidation dropped keep their values)."""
        with torch.no_grad():
            for target, sources in self.links.params + self.links.buffers:
                for s in sources:
                    s.source.view(-1)[s.local] = target.detach().reshape(-1)[s.positions].to(s.source.dtype)
            for target, sources in self.links.params:
                state = self.optimizer.state.get(target)
                if not state:
                    continue
                for s in sources:
                    _scatter_state(self.links.original.state[s.source], state, s, target)


def shrink(model: nn.Module, optimizer: torch.optim.Optimizer) -> Shrunk:
    """Consolidate the frozen dynamic ``model`` and move ``optimizer``'s state to the consolidated weights.

    Args:
        model: a dynamic model whose widths are all frozen (:meth:`Width.freeze_`), so that its train-mode
            forward is its consolidation's.
        optimizer: the optimizer training ``model`` (any ``torch.optim`` optimizer whose per-parameter
            state is tensors shaped like the parameter plus scalars, e.g. Adam, AdamW, SGD with momentum).

    Returns:
        a :class:`Shrunk`; ``model`` and ``optimizer`` are not modified until :meth:`Shrunk.restore`.

    Raises:
        SoftWidthError: a width is not frozen, the model has no width, or its consolidation is not a pure
            selection of the dynamic model's elements.
    """
    if not isinstance(model, nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        raise SoftWidthError("shrink: expected an nn.Module and a torch.optim.Optimizer, got "
                             f"{type(model).__name__} and {type(optimizer).__name__}")
    ws = width_modules(model)
    if not ws or not all(w.frozen for w in ws):
        raise SoftWidthError("shrink: every width must be frozen first (WidthScheduler freezes them at "
                             "Schedule.freeze)")
    plain = consolidate(model)
    params, buffers = _provenance(model, plain)
    new = type(optimizer)(_groups(optimizer, params))
    with torch.no_grad():
        for target, sources in params:
            states = [optimizer.state.get(s.source) for s in sources]
            if all(states):
                new.state[target] = _gather_state(states, sources, target)
    return Shrunk(plain, new, _Links(optimizer, params, buffers))


def _groups(optimizer: torch.optim.Optimizer, params) -> list[dict]:
    """The original's parameter groups (hyper-parameters included) over the consolidated parameters: each
    goes to the group of its first source; groups left empty (e.g. the widths') are dropped."""
    where = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    members: dict[int, list] = {}
    for target, sources in params:
        if not sources:  # an empty tensor: nothing to carry over
            members.setdefault(0, []).append(target)
            continue
        if id(sources[0].source) not in where:
            raise SoftWidthError("shrink: a weight of the model is not in the optimizer")
        members.setdefault(where[id(sources[0].source)], []).append(target)
    return [{**{k: v for k, v in optimizer.param_groups[i].items() if k != "params"}, "params": ps}
            for i, ps in sorted(members.items())]


def _coded(model: nn.Module) -> tuple[nn.Module, list[torch.Tensor], list[int]]:
    """A copy of ``model`` whose parameters and buffers (outside widths) hold their global flat indices."""
    coded = copy.deepcopy(model)
    originals = {id(a): b for a, b in zip(_tensors(coded), _tensors(model))}
    sources, offsets, offset = [], [], BASE
    seen: set[int] = set()
    with torch.no_grad():
        for module in coded.modules():
            if isinstance(module, Width):  # widths are not consolidated: they decide the sizes
                continue
            for table in (module._parameters, module._buffers):
                for name, t in table.items():
                    if t is None:
                        continue
                    if id(originals[id(t)]) in seen:
                        raise SoftWidthError(f"shrink: {type(module).__name__}.{name} is shared by two modules (tied "
                                             "weights); the consolidated copies would train apart")
                    seen.add(id(originals[id(t)]))
                    dtype = torch.float64 if t.is_floating_point() else torch.int64
                    codes = torch.arange(offset, offset + t.numel(), dtype=dtype, device=t.device).view_as(t)
                    table[name] = nn.Parameter(codes, requires_grad=False) if isinstance(t, nn.Parameter) else codes
                    sources.append(originals[id(t)])
                    offsets.append(offset)
                    offset += t.numel()
    if offset >= 2 ** 53:  # float64 holds every integer below 2**53 exactly
        raise SoftWidthError(f"shrink: the model has {offset} elements, too many to trace through consolidation")
    return coded, sources, offsets


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for m in model.modules() for table in (m._parameters, m._buffers) for t in table.values()
            if t is not None]


def _provenance(model: nn.Module, plain: nn.Module):
    """Pair every parameter and buffer of ``plain`` (= ``consolidate(model)``) with its sources in ``model``."""
    coded, sources, offsets = _coded(model)
    try:
        traced = consolidate(coded)
    except (RuntimeError, TypeError, ValueError) as err:
        raise SoftWidthError(f"shrink: cannot trace the consolidation: {err}") from None
    starts = torch.tensor(offsets, dtype=torch.int64)
    used: list[torch.Tensor] = []

    def trace(codes: torch.Tensor, target: torch.Tensor, what: str, strict: bool) -> list[_Source] | None:
        flat = codes.detach().reshape(-1).cpu()
        if flat.is_floating_point():
            if not bool(torch.all(flat == flat.round())):
                if strict:
                    raise SoftWidthError(f"shrink: the consolidated {what} is computed, not selected")
                return None
            flat = flat.to(torch.int64)
        if codes.shape != target.shape or (flat.numel() and (int(flat.min()) < BASE or int(flat.max()) >= total)):
            if strict:
                raise SoftWidthError(f"shrink: the consolidated {what} does not come from the dynamic model")
            return None
        owner = torch.searchsorted(starts, flat, right=True) - 1
        out = []
        for k in owner.unique().tolist():
            positions = torch.nonzero(owner == k).flatten()
            local = flat[positions] - offsets[k]  # in range: the codes of one tensor are contiguous
            out.append(_Source(sources[k], local.to(sources[k].device), positions.to(target.device)))
        if strict:
            used.append(flat)
        return out

    total = int(starts[-1]) + sources[-1].numel() if sources else BASE
    traced_params, plain_params = dict(traced.named_parameters()), dict(plain.named_parameters())
    if traced_params.keys() != plain_params.keys():
        raise SoftWidthError("shrink: consolidating a copy gave another structure")
    params = [(p, trace(traced_params[n], p, f"parameter {n!r}", strict=True)) for n, p in plain_params.items()]
    every = torch.cat(used) if used else torch.zeros(0, dtype=torch.int64)
    if torch.unique(every).numel() != every.numel():
        raise SoftWidthError("shrink: the consolidation copies a weight twice (tied weights); the copies would "
                             "train apart")
    traced_buffers = dict(traced.named_buffers())
    buffers = []
    for name, b in plain.named_buffers():
        found = trace(traced_buffers[name], b, f"buffer {name!r}", strict=False) if name in traced_buffers else None
        if found:
            buffers.append((b, found))
    return params, buffers


def _gather_state(states: list[dict], sources: list[_Source], target: torch.Tensor) -> dict:
    out = {}
    for key, value in states[0].items():
        if isinstance(value, torch.Tensor) and value.shape == sources[0].source.shape and value.dim() > 0:
            gathered = torch.empty(target.numel(), dtype=value.dtype, device=value.device)
            for state, s in zip(states, sources):
                gathered[s.positions] = state[key].reshape(-1)[s.local]
            out[key] = gathered.view(target.shape)
        elif isinstance(value, torch.Tensor) and value.dim() > 0:
            raise SoftWidthError(f"shrink: optimizer state {key!r} is not shaped like its parameter")
        else:
            out[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
    return out


def _scatter_state(original: dict, state: dict, s: _Source, target: torch.Tensor) -> None:
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape == target.shape:
            if key not in original:
                original[key] = torch.zeros_like(s.source, dtype=value.dtype)
            original[key].view(-1)[s.local] = value.reshape(-1)[s.positions]
        else:
            original[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
