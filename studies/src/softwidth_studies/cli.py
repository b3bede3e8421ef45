"""The ``softwidth`` command line: ``softwidth demo``, the case studies (``softwidth synthetic``) and sweeps.

User errors exit with status 2 and a one-line message (no traceback); a refusal of the system (an
``OSError``: disk full, permission denied, a path through a file) exits with status 1, also in one line.

Torch runs on one thread unless ``--threads N`` or ``$SOFTWIDTH_THREADS`` says otherwise (or ``$OMP_NUM_THREADS``
is set, which torch follows): the models here are small, and torch's default of one thread per core makes them
4-10x slower as soon as other processes hold the cores (the demo: 8 s idle, 30-78 s beside other CPU-bound jobs,
8 s again on one thread). The studies' worker processes use one thread each in any case.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from softwidth.errors import SoftWidthError
from .experiments.cli import parse_number

__all__ = ["main"]

THREADS_ENV = "SOFTWIDTH_THREADS"


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(steps=args.steps, seed=args.seed, weight=args.weight)


def _synthetic(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .experiments.synthetic import SyntheticConfig, report_from_runs, run_synthetic

    config = SyntheticConfig.quick() if args.quick else SyntheticConfig()
    config = replace(config, workers=args.workers)
    out = args.out or Path("results/synthetic_quick" if args.quick else "results/synthetic")
    if args.report_only:
        report_from_runs(out)
    else:
        run_synthetic(config, out, resume=args.resume)
    print((out / "summary.md").read_text())
    print(f"results written to {out}/ (metrics.json, runs.csv, trajectories.csv, summary.md, *.png)")


def _sweep(args: argparse.Namespace) -> None:
    import json

    from .sweep import grid, sweep

    options = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SoftWidthError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value  # a bare string
    if args.epochs is not None:
        options["epochs"] = args.epochs
    points = grid(weights=args.weights, targets=args.targets, kappa_min=args.kappa_min or [None], seeds=args.seeds,
                  **options)
    out = args.out or Path(f"results/sweep_{args.case_study}")
    rows = sweep(args.case_study, points, out, backend=args.backend, workers=args.workers, resume=args.resume)
    print(f"{'weight':>8} {'target':>8} {'kappa':>6} {'seed':>4} {'FLOP/s':>12} {'quality':>9}  front")
    for r in rows:
        cells = [f"{r[k]:>8g}" if r[k] is not None else f"{'-':>8}" for k in ("weight", "target")]
        kappa = f"{r['kappa_min']:>6g}" if r["kappa_min"] is not None else f"{'-':>6}"
        numbers = (f"{r['flops']:>12.4g} {r['quality']:>9.4g}  {'*' if r['pareto'] else ''}" if not r["error"]
                   else f"error: {r['error']}")
        print(f"{cells[0]} {cells[1]} {kappa} {r['seed']:>4} {numbers}")
    print(f"results written to {out}/ (pareto.csv, pareto.png, points/)")


def _data_build(args: argparse.Namespace) -> None:
    from .data.cache import default_cache_dir

    out = args.out or default_cache_dir() / "corpora" / f"{args.corpus}-{args.size}"
    if args.corpus != "vad" and (args.speech or args.noise):
        raise SoftWidthError("--speech/--noise apply to the vad corpus only")
    try:
        if args.corpus == "vad":
            from .data.vad_corpus import build_vad_corpus

            path = build_vad_corpus(out, size=args.size, seed=args.seed, speech=args.speech, noise=args.noise)
        else:
            from .data.antispoof_corpus import build_antispoof_corpus

            path = build_antispoof_corpus(out, size=args.size, seed=args.seed)
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("softwidth"):
            raise
        raise SoftWidthError(f"the {args.corpus} corpus builder is not in this version of softwidth") from None
    print(f"{args.corpus} corpus ({args.size}) in {path}; summary: {path / 'summary.md'}")


def _data_check(args: argparse.Namespace) -> None:
    """Quality checks of a built corpus, written next to it as ``checks.json``."""
    import json

    path = args.dir
    if args.corpus == "vad":
        try:
            from .data.vad_report import label_agreement_with_silero

            result = {"label_agreement_with_silero": label_agreement_with_silero(path), "required": 0.9}
        except ModuleNotFoundError as err:
            raise SoftWidthError(f"the label check needs {err.name}: pip install silero-vad") from None
    else:
        from .data.antispoof_report import shortcut_eer

        result = {"shortcut": shortcut_eer(path), "required_test_eer": 0.4}
    (path / "checks.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


def _allocation(args: argparse.Namespace) -> None:
    from .experiments.allocation import main as allocation_main

    argv = ["--out", str(args.out), "--workers", str(args.workers)]
    argv += ["--epochs", str(args.epochs)] if args.epochs is not None else []
    allocation_main(argv + (["--report-only"] if args.report_only else []))


def _trace(args: argparse.Namespace) -> None:
    from softwidth.trace import plot_trace

    print(f"width trace plotted to {plot_trace(args.run_dir, args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softwidth", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help=f"torch threads of this process (default ${THREADS_ENV}, else 1 unless $OMP_NUM_THREADS "
                             "is set): small models are fastest on one, and much slower on a busy machine with more")
    # metavar and title: usage and errors say COMMAND ("required: COMMAND"), not the destination's name
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    demo = sub.add_parser("demo", help="build a dynamic model, train it briefly, consolidate it")
    demo.add_argument("--steps", type=_positive_int, default=200, help="training steps (default 200)")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    demo.add_argument("--weight", type=_non_negative_float, default=0.5, help="FLOP/s penalty weight (default 0.5)")
    demo.set_defaults(func=_demo)
    syn = sub.add_parser("synthetic", help="the synthetic case study (teacher with d* directions)")
    syn.add_argument("--quick", action="store_true", help="one seed, fewer runs (under a minute)")
    syn.add_argument("--out", type=Path, default=None,
                     help="output folder (default results/synthetic, or results/synthetic_quick with --quick)")
    syn.add_argument("--resume", action="store_true", help="reuse the runs an interrupted study finished")
    syn.add_argument("--report-only", action="store_true",
                     help="rewrite metrics, tables and plots from the stored runs without training")
    syn.add_argument("--workers", type=_positive_int, default=2, help="parallel processes (default 2)")
    syn.set_defaults(func=_synthetic)
    alloc = sub.add_parser("allocation", help="the known-answer allocation task (two branches, different prices) "
                                              "against a uniform shrink and a sweep of allocations")
    alloc.add_argument("--out", type=Path, default=Path("results/allocation"), help="default results/allocation")
    alloc.add_argument("--workers", type=_positive_int, default=2, help="parallel processes (default 2)")
    alloc.add_argument("--epochs", type=_positive_int, default=None, help="epochs per run (task default)")
    alloc.add_argument("--report-only", action="store_true", help="rewrite summary.md from results.json")
    alloc.set_defaults(func=_allocation)
    swp = sub.add_parser("sweep", help="train a case study over weights/targets/kappa_min; Pareto CSV and plot")
    swp.add_argument("case_study", help="a registered case study (built in: synthetic)")
    swp.add_argument("--weights", type=float, nargs="*", default=[], help="trade-off weights (CostPenalty)")
    swp.add_argument("--targets", type=float, nargs="*", default=[],
                     help="budgets as fractions of the full FLOP/s (BudgetController)")
    swp.add_argument("--kappa-min", type=float, nargs="*", default=[], help="width floors kappa_min (default none)")
    swp.add_argument("--seeds", type=int, nargs="+", default=[0], help="random seeds (default 0)")
    swp.add_argument("--epochs", type=_positive_int, default=None, help="epochs per point (case-study default)")
    swp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a case-study option for every point (JSON value), e.g. --set train_size=2000")
    swp.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local process pool (default) or Ray Tune (softwidth-studies[ray])")
    swp.add_argument("--workers", type=_positive_int, default=2, help="parallel points (default 2)")
    swp.add_argument("--out", type=Path, default=None, help="output folder (default results/sweep_<case study>)")
    swp.add_argument("--resume", action="store_true", help="reuse the points an interrupted sweep finished")
    swp.set_defaults(func=_sweep)
    trace = sub.add_parser("trace", help="plot a run's width trace (trace.csv of fit(..., FitConfig(trace=True)))")
    trace.add_argument("run_dir", type=Path, help="a run folder holding trace.csv, or the CSV itself")
    trace.add_argument("--out", type=Path, default=None, help="PNG to write (default: trace.png beside the CSV)")
    trace.set_defaults(func=_trace)
    data = sub.add_parser("data", help="speech corpora built offline from Debian packages")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", title="commands")
    build = data_sub.add_parser("build", help="build (or finish building) a corpus; idempotent and resumable")
    build.add_argument("corpus", choices=("vad", "antispoof"))
    build.add_argument("--size", choices=("tiny", "small", "full"), default="tiny", help="default tiny")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: the user cache)")
    build.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    build.add_argument("--speech", default=None, help="vad only: real speech, e.g. vctk:/data/VCTK-Corpus")
    build.add_argument("--noise", default=None, help="vad only: real noise, e.g. esc50:/data/ESC-50")
    build.set_defaults(func=_data_build)
    check = data_sub.add_parser("check", help="quality checks of a built corpus (silero label agreement, "
                                "no-shortcut EER), written to DIR/checks.json")
    check.add_argument("corpus", choices=("vad", "antispoof"))
    check.add_argument("dir", type=Path, help="the corpus folder")
    check.set_defaults(func=_data_check)
    from .vad.cli import add_vad_parser

    add_vad_parser(sub, _positive_int)
    from .antispoof.cli import add_antispoof_parser

    add_antispoof_parser(sub, _positive_int)
    return parser


# argparse `type=` functions: every refusal is an ArgumentTypeError with its own message (parse_number), since for a
# bare ValueError argparse prints the function's private name ("invalid _positive_int value")
def _positive_int(text: str) -> int:
    value = parse_number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = parse_number(text, int)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32 - 1], got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = parse_number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _threads(option: int | None) -> int | None:
    """Torch's intra-op threads for this command: ``--threads``, else ``$SOFTWIDTH_THREADS``, else 1, except that
    with ``$OMP_NUM_THREADS`` set torch keeps the count it chose from it (None)."""
    import os

    if option is not None:
        return option
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        try:
            return _positive_int(text)
        except argparse.ArgumentTypeError as err:
            raise SoftWidthError(f"${THREADS_ENV}: {err}") from None
    return None if os.environ.get("OMP_NUM_THREADS", "").strip() else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    restore = None
    try:
        threads = _threads(args.threads)
        if threads is not None:
            import torch

            restore = torch.get_num_threads()  # put back on return: main() may run inside a larger process (tests)
            torch.set_num_threads(threads)
        args.func(args)
    except SoftWidthError as err:
        print(f"softwidth: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("softwidth: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # disk full, permission denied, ...: the system's one-line reason, no traceback
        print(f"softwidth: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    finally:
        if restore is not None:
            import torch

            torch.set_num_threads(restore)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
