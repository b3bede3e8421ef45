"""``softwidth vad sweep``: the allocation sweep (:mod:`softwidth_studies.vad.sweep`) on the command line."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..experiments.cli import parse_number

__all__ = ["add_sweep_parser"]


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of seeds, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"distinct non-negative seeds, got {text!r}")
    return seeds


def _fraction(text: str) -> float:
    value = parse_number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _sweep(args: argparse.Namespace) -> None:
    from .corpus_option import corpus_from_args as _corpus
    from .study import VadStudyConfig
    from .sweep import SweepConfig, run_sweep

    corpus = str(_corpus(args))
    study = VadStudyConfig.quick(corpus) if args.quick else VadStudyConfig(corpus=corpus)
    study = replace(study, workers=args.workers, targets=tuple(sorted({*study.targets, args.target})))
    sweep = SweepConfig(model=args.model, target=args.target, count=args.count, best=args.best, seeds=args.seeds)
    out = args.out or Path("results/vad_sweep_quick" if args.quick else "results/vad_sweep")
    store = args.store or Path("results/vad_quick" if args.quick else "results/vad")
    run_sweep(study, sweep, out, store)
    print(f"sweep written to {out}/ (sweep.json, summary.md, eer_vs_allocation.png, models/)")
    print((out / "summary.md").read_text())


def add_sweep_parser(commands, positive_int) -> None:
    """Register ``vad sweep`` on the ``vad`` sub-commands."""
    from .models import MODELS

    parser = commands.add_parser(
        "sweep", help="train many allocations of one FLOP/s budget from scratch: the best one, where uniform and "
        "learned stand", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="crnn", help="the study model")
    parser.add_argument("--target", type=_fraction, default=0.25, help="budget, a share of the full model's FLOP/s")
    parser.add_argument("--count", type=positive_int, default=24, help="allocations in stage 1 (uniform included)")
    parser.add_argument("--best", type=positive_int, default=4, help="stage-1 allocations retrained with every seed")
    parser.add_argument("--seeds", type=_seeds, default=(0, 1, 2, 3, 4), metavar="S,S,...",
                        help="seeds of stage 2; the first is stage 1's")
    parser.add_argument("--quick", action="store_true", help="small corpus, the study's quick training")
    parser.add_argument("--corpus", type=Path, default=None, help="a built VAD corpus (default: the cached one)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/vad_sweep)")
    parser.add_argument("--store", type=Path, default=None,
                        help="run store shared with the study (default results/vad; runs in STORE/runs)")
    parser.add_argument("--workers", type=positive_int, default=2, help="parallel processes")
    parser.set_defaults(func=_sweep)
