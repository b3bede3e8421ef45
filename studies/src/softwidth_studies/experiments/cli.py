"""The ``train`` and ``evaluate`` sub-commands every case study has (``softwidth vad ...``, ``softwidth antispoof
...``): the same options, each study's own functions and wording."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from softwidth.errors import SoftWidthError

__all__ = ["add_study_parser", "parse_number", "read_results"]


def parse_number(text: str, kind: type = float) -> float | int:
    """``kind(text)`` for an argparse ``type=`` function, or an ``ArgumentTypeError`` that reads naturally: a bare
    ``ValueError`` would make argparse print the function's own (private) name, ``invalid _threshold value``."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
                                         ) from None


def read_results(out: Path, name: str, label: str, quick: bool) -> dict:
    """``out/results.json`` of a finished study, or :class:`SoftWidthError` saying which command writes it."""
    try:
        return json.loads((out / "results.json").read_text())
    except FileNotFoundError:
        raise SoftWidthError(f"no finished {label} study in {out} (results.json missing); run "
                             f"`softwidth {name} train{' --quick' if quick else ''}` first") from None


def add_study_parser(sub, name: str, *, help: str, train: Callable, train_help: str, quick_help: str,
                     evaluate: Callable, corpus_help: str, positive_int: Callable
                     ) -> tuple[argparse._SubParsersAction, argparse.ArgumentParser]:
    """Register ``softwidth NAME`` with ``train`` (``--quick --corpus --out --workers --fresh``) and ``evaluate``
    (``--quick --out``); returns the study's sub-command set (to add its own commands) and the train parser."""
    top = sub.add_parser(name, help=help)
    # metavar and title: usage and errors say COMMAND ("required: COMMAND"), not the destination's name
    commands = top.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND", title="commands")
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
