"""The ``train`` and ``evaluate`` sub-commands every case study has (``softwidth vad ...``, ``softwidth antispoof
...``): the same options, each study's own functions and wording."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_study_parser"]


def add_study_parser(sub, name: str, *, help: str, train: Callable, train_help: str, quick_help: str,
                     evaluate: Callable, corpus_help: str, positive_int: Callable
                     ) -> tuple[argparse._SubParsersAction, argparse.ArgumentParser]:
    """Register ``softwidth NAME`` with ``train`` (``--quick --corpus --out --workers --fresh``) and ``evaluate``
    (``--quick --out``); returns the study's sub-command set (to add its own commands) and the train parser."""
    top = sub.add_parser(name, help=help)
    commands = top.add_subparsers(dest=f"{name}_command", required=True)
    parser = commands.add_parser("train", help=train_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--corpus", type=Path, default=None, help=corpus_help)
    parser.add_argument("--out", type=Path, default=None, help=f"default results/{name} or results/{name}_quick")
    parser.add_argument("--workers", type=positive_int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--fresh", action="store_true", help="retrain runs already stored in the output folder")
    parser.set_defaults(func=train)
    rewrite = commands.add_parser("evaluate", help="rewrite the tables, checks and plots from results.json")
    rewrite.add_argument("--quick", action="store_true", help=f"use results/{name}_quick")
    rewrite.add_argument("--out", type=Path, default=None, help=f"the study folder (default results/{name})")
    rewrite.set_defaults(func=evaluate)
    return commands, parser
