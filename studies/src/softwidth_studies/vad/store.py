"""Saving and loading a consolidated VAD without pickle: ``model.json`` (architecture) + ``model.safetensors``.

``model.json`` holds ``{"model": "crnn"|"transformer", "sizes": {...}, "threshold": float, ...}``; loading builds
the fixed-size model of those sizes, consolidates it to stock modules and loads the weights from safetensors,
so a downloaded model directory can never run code. :data:`DEFAULT_MODEL` is the model trained by the full
study (``softwidth vad train``), shipped with the package and used by ``softwidth vad detect``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from softwidth.consolidate import consolidate
from softwidth.errors import SoftWidthError
from .models import MODELS, build_model

__all__ = ["DEFAULT_MODEL", "load_vad", "save_vad"]

DEFAULT_MODEL = Path(__file__).with_name("default_model")


def save_vad(model: nn.Module, directory: str | os.PathLike[str], *, kind: str, sizes: dict, threshold: float,
             **info) -> Path:
    """Write the consolidated ``model`` of ``kind`` at ``sizes`` with its decision ``threshold`` to ``directory``."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    meta = {"model": kind, "sizes": {k: int(v) for k, v in sizes.items()}, "threshold": float(threshold), **info}
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_vad(directory: str | os.PathLike[str] = DEFAULT_MODEL) -> tuple[nn.Module, dict]:
    """``(consolidated model in eval mode, metadata)`` from a directory written by :func:`save_vad`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    try:
        meta = json.loads((path / "model.json").read_text())
        kind, sizes = meta["model"], meta["sizes"]
    except FileNotFoundError:
        raise SoftWidthError(f"no VAD model in {path} (model.json is missing); train one with "
                             f"`softwidth vad train` or pass --model DIR") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SoftWidthError(f"{path / 'model.json'} is not a VAD model description: {err}") from None
    if kind not in MODELS or not isinstance(sizes, dict):
        raise SoftWidthError(f"{path / 'model.json'}: unknown model {kind!r} or bad sizes")
    model = consolidate(build_model(kind, sizes).eval())
    try:
        state = load_file(str(path / "model.safetensors"))
        model.load_state_dict(state, strict=True)
    except (OSError, SafetensorError, RuntimeError) as err:
        raise SoftWidthError(f"cannot load the weights in {path / 'model.safetensors'}: "
                             f"{str(err).splitlines()[0]}") from None
    return model.eval(), meta
