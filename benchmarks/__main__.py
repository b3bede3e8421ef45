"""``python -m benchmarks [--quick] [--only NAME ...] [--corpus DIR] [--out DIR] [--docs FILE]``.

Runs the benchmarks (all by default) on one thread, writes ``<out>/<name>.json`` (default ``results/bench``)
and regenerates ``<docs>`` (default ``docs/benchmarks.md``) and ``<out>/headline.md`` (the README's
summary) from every JSON there. Exit status 0 even when a
target is missed: a MISS is a result, reported in the JSON and the table.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import torch

from . import BENCHMARKS
from ._common import Settings, write_result
from .report import headline, write_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="softwidth's benchmark suite")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and repeats (smoke run, < 1 minute)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--corpus", type=Path, default=Settings.corpus,
                        help="built VAD corpus (vad_rtf re-measures on its test split; skipped if absent)")
    parser.add_argument("--out", type=Path, default=Settings.root / "results" / "bench")
    parser.add_argument("--docs", type=Path, default=Settings.root / "docs" / "benchmarks.md")
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds of timed runs per measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    min_run = args.min_run_time if args.min_run_time is not None else (0.02 if args.quick else 1.0)
    settings = Settings(quick=args.quick, min_run_time=min_run, warmup=1 if args.quick else 3, corpus=args.corpus)
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        module = importlib.import_module(f".{name}", __package__)
        path = write_result(args.out, name, module.run(settings), settings)
        print(f"{name}: {time.perf_counter() - start:.1f} s -> {path}", flush=True)
    write_markdown(args.out, args.docs, list(BENCHMARKS))
    (args.out / "headline.md").write_text(headline(args.out, list(BENCHMARKS)))  # the README's block
    print(f"table: {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
