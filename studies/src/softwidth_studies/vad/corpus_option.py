"""The ``--corpus`` / ``--quick`` options of the VAD commands: a given corpus folder, else the cached default one."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["corpus_from_args"]


def corpus_from_args(args: argparse.Namespace) -> Path:
    """``args.corpus`` when given, else the cached ``vad-small`` (``--quick``) or ``vad-full`` corpus, built once."""
    if args.corpus is not None:
        return args.corpus
    from ..data.cache import default_cache_dir
    from ..data.vad_corpus import build_vad_corpus

    size = "small" if args.quick else "full"
    return build_vad_corpus(default_cache_dir() / "corpora" / f"vad-{size}", size=size)
