"""TensorBoard scalars for :func:`softwidth.fit`: every column of the per-epoch log, when tensorboard is installed.

``fit(..., tensorboard=None)`` (the default) writes ``out_dir/tensorboard/`` if the ``tensorboard`` package is
importable and ``out_dir`` is given, and nothing otherwise; ``tensorboard=False`` turns it off; a path
writes there (and needs tensorboard: ``pip install tensorboard``). Only rank 0 writes under ``torchrun``.
Scalars are named as the CSV columns (``train_task``, ``cost``, ``width:<name>`` ...), step = epoch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import SoftWidthError

__all__: list[str] = []  # used by fit; its public face is fit(..., tensorboard=...)


def open_writer(option: str | os.PathLike | bool | None, out_dir: Path | None):
    """A ``SummaryWriter`` for ``fit``'s ``tensorboard`` option, or ``None`` when nothing is to be written."""
    if option is False or (option is None and out_dir is None):
        return None
    available = importlib.util.find_spec("tensorboard") is not None
    if option is None or option is True:
        if not available:
            if option is True:
                raise SoftWidthError("fit: tensorboard=True needs the tensorboard package: pip install tensorboard")
            return None
        if out_dir is None:
            raise SoftWidthError("fit: tensorboard=True needs out_dir (or give the log folder as tensorboard=PATH)")
        folder = out_dir / "tensorboard"
    else:
        if not available:
            raise SoftWidthError(f"fit: tensorboard={str(option)!r} needs the tensorboard package: "
                                 "pip install tensorboard")
        folder = Path(option)
    from torch.utils.tensorboard import (
        SummaryWriter,  # imported here: tensorboard is optional
    )

    return SummaryWriter(log_dir=str(folder))


def write_row(writer, row: dict) -> None:
    """Add every numeric column of one epoch's log row as a scalar at step ``row["epoch"]``."""
    step = int(row["epoch"])
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)):
            writer.add_scalar(key, value, step)
    writer.flush()
