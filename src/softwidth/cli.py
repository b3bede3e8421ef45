"""The ``softwidth`` command line: ``softwidth demo`` and the case studies (``softwidth synthetic``).

User errors exit with status 2 and a one-line message (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import SoftWidthError

__all__ = ["main"]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softwidth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a dynamic model, train it briefly, consolidate it")
    demo.add_argument("--steps", type=_positive_int, default=200, help="training steps (default 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--weight", type=float, default=0.5, help="FLOP/s penalty weight (default 0.5)")
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
    data = sub.add_parser("data", help="speech corpora built offline from Debian packages")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser("build", help="build (or finish building) a corpus; idempotent and resumable")
    build.add_argument("corpus", choices=("vad", "antispoof"))
    build.add_argument("--size", choices=("tiny", "small", "full"), default="tiny", help="default tiny")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: the user cache)")
    build.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    build.add_argument("--speech", default=None, help="vad only: real speech, e.g. vctk:/data/VCTK-Corpus")
    build.add_argument("--noise", default=None, help="vad only: real noise, e.g. esc50:/data/ESC-50")
    build.set_defaults(func=_data_build)
    check = data_sub.add_parser("check", help="quality checks of a built corpus (silero label agreement, "
                                "no-shortcut EER), written to DIR/checks.json")
    check.add_argument("corpus", choices=("vad", "antispoof"))
    check.add_argument("dir", type=Path, help="the corpus folder")
    check.set_defaults(func=_data_check)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SoftWidthError as err:
        print(f"softwidth: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("softwidth: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
