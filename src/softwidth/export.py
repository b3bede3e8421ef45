"""Save and reload consolidated models without pickle, and export them to TorchScript and ONNX.

A saved model is a folder with two files::

    model.safetensors   the state_dict (safetensors: tensors only, nothing is executed on load)
    model.json          {"format": "softwidth.export", "version": 1,
                         "architecture": {"builder": NAME, "config": {...}}, "widths": {...}, ...}

:func:`load` looks the builder ``NAME`` up in a registry of trusted Python functions
(:func:`register_builder`), calls ``builder(**config)`` to get a module with the consolidated shapes, and
loads the weights into it (``strict``). The generic builder ``"softwidth.modules"`` (used when
``architecture`` is ``None``) rebuilds ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict`` trees of stock
layers (every type registered in ``softwidth.layers.WRAPPERS``: Linear, Conv1d/2d, GRU, LSTM, BatchNorm1d/2d,
LayerNorm, TransformerEncoderLayer, activations, Dropout, Identity and the types added with
``softwidth.layers.register``; and pooling, Flatten, Softmax) from their constructor arguments, so a
consolidated ``nn.Sequential`` reloads with no user code. Models of other classes register a builder::

    sw.export.register_builder("vad.crnn", lambda **config: CRNN(**config))
    sw.export.save(plain, "out/vad", architecture={"builder": "vad.crnn", "config": {"bands": 37}})
    model = sw.export.load("out/vad")      # in a process that registered "vad.crnn" too

:func:`save` rebuilds the model from the architecture before writing and refuses (``SoftWidthError``)
when the rebuilt module's state_dict keys or shapes (or, for the generic builder, its ``repr``) differ, so a
saved folder always reloads. The round trip is exact: same tensors, same outputs.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._optional import require
from .errors import SoftWidthError
from .layers import WRAPPERS

__all__ = ["describe", "load", "register_builder", "save", "to_onnx", "to_torchscript"]

FORMAT, VERSION, GENERIC = "softwidth.export", 1, "softwidth.modules"
WEIGHTS, ARCHITECTURE = "model.safetensors", "model.json"

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

# stock leaf modules the generic builder rebuilds from their constructor arguments (read back as attributes):
# the registered types of softwidth.layers.WRAPPERS (see _leaves) and these, which no width-aware layer wraps
_OTHER_LEAVES = (
    nn.Flatten, nn.Unflatten, nn.Hardsigmoid, nn.Mish, nn.Softmax, nn.LogSoftmax,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
)
_CONTAINERS = {"Sequential": nn.Sequential, "ModuleList": nn.ModuleList, "ModuleDict": nn.ModuleDict}
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def register_builder(name: str, fn: Callable[..., nn.Module]) -> None:
    """Register ``fn(**config) -> nn.Module`` (the consolidated shapes, any weights) under ``name``.

    Registering the same function again is allowed; another function under a taken name raises
    :class:`SoftWidthError` (two meanings of one saved file would be a silent bug).
    """
    if not isinstance(name, str) or not name:
        raise SoftWidthError(f"register_builder: name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise SoftWidthError(f"register_builder: {name!r}: fn must be callable, got {type(fn).__name__}")
    if name == GENERIC or (name in _BUILDERS and _BUILDERS[name] is not fn):
        raise SoftWidthError(f"register_builder: the name {name!r} is taken; choose another name")
    _BUILDERS[name] = fn


def save(module: nn.Module, directory: str | os.PathLike, *, architecture: dict | None = None) -> Path:
    """Write ``module``'s weights (safetensors) and architecture (JSON) into ``directory``; returns it.

    ``architecture``: ``{"builder": name, "config": {...}}`` naming a registered builder and its JSON-able
    keyword arguments, or ``None`` for the generic description of a tree of stock modules (:func:`describe`).
    Raises :class:`SoftWidthError` if the module cannot be described, the builder is unknown, the config
    is not JSON, or the rebuilt module does not match ``module``. Files are replaced atomically.
    """
    return _save(module, Path(directory), architecture=architecture, extra={})


def load(directory: str | os.PathLike) -> nn.Module:
    """Rebuild the module saved in ``directory`` and load its weights; returned in eval mode.

    Never unpickles: the architecture is JSON, the weights safetensors, the code a registered builder.
    Raises :class:`SoftWidthError` for a missing or malformed folder, an unregistered builder, or weights
    that do not fit the rebuilt module.
    """
    load_file = require("safetensors.torch", "save", "load").load_file

    folder = Path(directory)
    record = _read_record(folder)
    architecture = record.get("architecture")
    if architecture is None:
        raise SoftWidthError(
            f"load: {folder} holds weights only (its architecture could not be described when it was saved); "
            f"build the model yourself and load {folder / WEIGHTS} with safetensors.torch.load_file"
        )
    module = _build(architecture, where=f"load: {folder}")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as err:  # missing, truncated or not safetensors
        raise SoftWidthError(f"load: cannot read {folder / WEIGHTS}: {type(err).__name__}: {err}") from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise SoftWidthError(f"load: the weights in {folder} do not fit the rebuilt module: "
                             f"{' '.join(line.strip() for line in first[:3])}") from None
    return module.eval()


def describe(module: nn.Module) -> dict:
    """The generic, JSON-able description of a tree of stock modules (what ``save`` writes by default).

    Leaves are ``{"type": "Linear", "args": {"in_features": 6, ...}}``; containers are
    ``{"type": "Sequential", "children": [[name, node], ...]}``. Raises :class:`SoftWidthError` naming the
    path and class of the first module that is neither (a class of your own: register a builder).
    """
    return _describe(module, "")


def to_torchscript(module: nn.Module, path: str | os.PathLike) -> torch.jit.ScriptModule:
    """Script ``module`` with ``torch.jit.script`` and save it to ``path`` (load with ``torch.jit.load``)."""
    try:
        scripted = torch.jit.script(module.eval())
    except Exception as err:
        raise SoftWidthError(f"to_torchscript: torch.jit.script failed on {type(module).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    scripted.save(str(path))
    return scripted


def to_onnx(module: nn.Module, example, path: str | os.PathLike, *, dynamic: Sequence[int] = (0,)) -> Path:
    """Export ``module`` (eval mode) to ONNX at ``path`` with the ``torch.export`` based exporter.

    ``example``: a tensor or a tuple of tensors (one forward call). ``dynamic``: axes of every input whose
    size may change at run time (default the batch axis; ``(0, 1)`` for batch and frames); each needs a
    size >= 2 in ``example``. Needs ``onnx`` and ``onnxscript`` (``softwidth[onnx]``).
    """
    inputs = example if isinstance(example, tuple) else (example,)
    shapes = []
    for i, x in enumerate(inputs):
        axes = {}
        for axis in dynamic:
            if not isinstance(x, torch.Tensor) or not -x.dim() <= axis < x.dim():
                raise SoftWidthError(f"to_onnx: input {i} has no axis {axis} to make dynamic")
            if x.shape[axis] < 2:
                raise SoftWidthError(f"to_onnx: input {i} has size {x.shape[axis]} on dynamic axis {axis}; give "
                                     "an example with size >= 2 there (size 1 is specialised by torch.export)")
            axes[axis % x.dim()] = torch.export.Dim(f"input{i}_axis{axis % x.dim()}")
        shapes.append(axes)
    torch.onnx.export(module.eval(), inputs, str(path), dynamo=True, dynamic_shapes=tuple(shapes), verbose=False)
    return Path(path)


# -- saving ---------------------------------------------------------------------------------------------
def save_consolidated(module: nn.Module, directory: Path, *, widths: dict) -> Path:
    """What :func:`softwidth.fit` writes: :func:`save` with the widths record; weights only (``"architecture":
    null``) when the model is not a tree of stock modules and no architecture can be described."""
    try:
        return _save(module, directory, architecture=None, extra={"widths": widths})
    except SoftWidthError:  # not a tree of stock modules: keep the weights, the user rebuilds the model
        return _save(module, directory, architecture=None, extra={"widths": widths}, check=False)


def _save(module: nn.Module, folder: Path, *, architecture: dict | None, extra: dict, check: bool = True) -> Path:
    save_file = require("safetensors.torch", "save", "save").save_file

    if not isinstance(module, nn.Module):
        raise SoftWidthError(f"save: expected an nn.Module, got {type(module).__name__}")
    if architecture is None and check:
        architecture = {"builder": GENERIC, "config": {"tree": describe(module)}}
    if architecture is not None:
        _check_architecture(module, architecture)
    folder.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors sharing storage (tied weights); load_state_dict restores the tie
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, folder / WEIGHTS)
    from . import __version__

    record = {"format": FORMAT, "version": VERSION, "architecture": architecture, "weights": WEIGHTS,
              "softwidth": __version__, "torch": torch.__version__, **extra}
    tmp = folder / (ARCHITECTURE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, folder / ARCHITECTURE)
    return folder


def _check_architecture(module: nn.Module, architecture) -> None:
    if not isinstance(architecture, dict) or set(architecture) != {"builder", "config"}:
        raise SoftWidthError('save: architecture must be {"builder": name, "config": {...}}, '
                             f"got {architecture!r}")
    try:
        json.dumps(architecture, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise SoftWidthError(f"save: the architecture config is not JSON: {err}") from None
    rebuilt = _build(architecture, where="save")
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if ours != theirs:
        diff = sorted(set(ours.items()) ^ set(theirs.items()))[:4]
        raise SoftWidthError(f"save: the builder {architecture['builder']!r} makes a module whose weights differ "
                             f"from the model's (key, shape): {diff}; fix the config")
    if architecture["builder"] == GENERIC and repr(rebuilt) != repr(module):
        raise SoftWidthError("save: the generic description does not reproduce the model exactly (a changed "
                             "attribute?); register a builder for it")


def _read_record(folder: Path) -> dict:
    try:
        record = json.loads((folder / ARCHITECTURE).read_text())
    except OSError:
        raise SoftWidthError(f"load: {folder} has no {ARCHITECTURE}; is it a folder written by softwidth.export.save?") from None
    except ValueError as err:
        raise SoftWidthError(f"load: {folder / ARCHITECTURE} is not valid JSON: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SoftWidthError(f"load: {folder / ARCHITECTURE} is not a softwidth.export record")
    if record.get("version") != VERSION:
        raise SoftWidthError(f"load: {folder} has format version {record.get('version')!r}; this softwidth "
                             f"reads version {VERSION}")
    return record


def _build(architecture, *, where: str) -> nn.Module:
    if not isinstance(architecture, dict) or not isinstance(architecture.get("config"), dict):
        raise SoftWidthError(f"{where}: malformed architecture {architecture!r}")
    name = architecture.get("builder")
    if name == GENERIC:
        return _rebuild(architecture["config"].get("tree"), "")
    if name not in _BUILDERS:
        known = ", ".join(sorted(_BUILDERS)) or "none"
        raise SoftWidthError(f"{where}: no builder {name!r} is registered (registered: {known}); call "
                             "softwidth.export.register_builder(name, fn) before loading")
    module = _BUILDERS[name](**architecture["config"])
    if not isinstance(module, nn.Module):
        raise SoftWidthError(f"{where}: builder {name!r} returned {type(module).__name__}, not an nn.Module")
    return module


# -- the generic builder: trees of stock modules ----------------------------------------------------------
def _describe(module: nn.Module, path: str) -> dict:
    name = type(module).__name__
    where = path or "the model"
    if type(module) in _CONTAINERS.values():
        return {"type": name, "children": [[n, _describe(m, f"{path}.{n}" if path else n)]
                                            for n, m in module.named_children()]}
    name = _type_name(type(module))
    if _leaves().get(name) is not type(module):
        raise SoftWidthError(
            f"describe: {where} is a {type(module).__module__}.{type(module).__qualname__}, which the generic "
            "builder does not know; register a builder (softwidth.export.register_builder) and pass "
            "architecture={'builder': name, 'config': {...}} to save"
        )
    if isinstance(module, nn.TransformerEncoderLayer):
        return {"type": name, "args": _encoder_args(module, where)}
    args = {}
    # GRU and LSTM take *args: their arguments are RNNBase's (less the mode; proj_size is LSTM's only)
    init = nn.RNNBase.__init__ if isinstance(module, nn.RNNBase) else type(module).__init__
    skip = {"device", "dtype", "mode"} | ({"proj_size"} if isinstance(module, nn.GRU) else set())
    for param in list(inspect.signature(init).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in skip:
            continue
        if not hasattr(module, param.name):
            if param.default is param.empty:
                raise SoftWidthError(f"describe: {where} ({name}) does not store its argument {param.name!r}")
            continue  # e.g. PReLU's init: the weights carry it
        value = getattr(module, param.name)
        if param.name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        args[param.name] = _jsonable(value, f"{where} ({name}).{param.name}")
    return {"type": name, "args": args}


def _encoder_args(layer: nn.TransformerEncoderLayer, where: str) -> dict:
    act = layer.activation
    if isinstance(act, nn.Module):
        activation = _describe(act, f"{where}.activation")
    else:
        activation = next((k for k, f in _ACTIVATIONS.items() if act is f), None)
        if activation is None:
            raise SoftWidthError(f"describe: {where}: activation {act!r} is not relu/gelu or a stock module")
    attn = layer.self_attn
    return {"d_model": attn.embed_dim, "nhead": attn.num_heads, "dim_feedforward": layer.linear1.out_features,
            "dropout": layer.dropout.p, "activation": activation, "layer_norm_eps": layer.norm1.eps,
            "batch_first": attn.batch_first, "norm_first": layer.norm_first, "bias": layer.linear1.bias is not None,
            "attention_dropout": attn.dropout, "dropout1": layer.dropout1.p, "dropout2": layer.dropout2.p}


def _jsonable(value, where: str):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SoftWidthError(f"describe: {where} = {value} cannot be written as JSON")
        return value
    raise SoftWidthError(f"describe: {where} = {value!r} ({type(value).__name__}) cannot be written as JSON")


def _rebuild(node, path: str) -> nn.Module:
    where = path or "the model"
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise SoftWidthError(f"load: malformed module description at {where}: {node!r}")
    name = node["type"]
    if name in _CONTAINERS:
        children = [(str(n), _rebuild(c, f"{path}.{n}" if path else str(n))) for n, c in node.get("children", [])]
        if name == "ModuleList":
            return nn.ModuleList(m for _, m in children)
        return _CONTAINERS[name](dict(children)) if name == "ModuleDict" else nn.Sequential(_ordered(children))
    leaves = _leaves()
    if name not in leaves or not isinstance(node.get("args"), dict):
        raise SoftWidthError(f"load: {where}: {name!r} is not a module the generic builder makes")
    args = {k: _tuples(v) for k, v in node["args"].items()}  # JSON lists back to the tuples torch stores
    if name == "TransformerEncoderLayer":
        extra = {k: args.pop(k) for k in ("attention_dropout", "dropout1", "dropout2")}
        act = args["activation"]
        args["activation"] = _rebuild(act, f"{where}.activation") if isinstance(act, dict) else act
        layer = nn.TransformerEncoderLayer(**args)
        layer.self_attn.dropout, layer.dropout1.p, layer.dropout2.p = (
            extra["attention_dropout"], extra["dropout1"], extra["dropout2"])
        return layer
    try:
        return leaves[name](**args)
    except (TypeError, ValueError) as err:
        raise SoftWidthError(f"load: {where}: cannot build {name}(**{args}): {err}") from None


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _ordered(children):
    from collections import OrderedDict

    return OrderedDict(children)


def _leaves() -> dict[str, type]:
    """Name written in the description -> stock type, for every type the generic builder makes (the registry
    is read on every call: a type registered after import is described and rebuilt too)."""
    return {_type_name(cls): cls for cls in (*WRAPPERS, *_OTHER_LEAVES)}


def _type_name(cls: type) -> str:
    """``Linear`` for a ``torch.nn`` class, ``package.module.Class`` for any other (no two types share a name)."""
    return cls.__name__ if cls.__module__.startswith("torch.nn.") else f"{cls.__module__}.{cls.__qualname__}"
