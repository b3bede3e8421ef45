"""Choose a case study's width schedule on the validation split: ``python scripts/schedule_pilot.py vad|antispoof``.

For each schedule it trains the study's dynamic models at one budget each (VAD: CRNN at half the baseline's
FLOP/s, Transformer at a quarter; anti-spoofing: the ResNet with every stage dynamic at a quarter), 3 seeds each and
everything else as in ``softwidth <study> train`` with the weights' rate decaying along a cosine, then the fixed-size
models trained from scratch at the sizes the first schedule chose (``--fixed-at all``: at every schedule's sizes;
``none``: no fixed-size runs), and the full-size baselines (unless ``--no-baselines``), and scores every model on the
VALIDATION split (EER, %: frame level for VAD, pooled clips for anti-spoofing). The test split is not read.

Schedules: ``--freeze F...``: the widths learn from the first step and freeze at ``F`` (the share of the steps);
``--late F...``: the network first trains at full size with nested dropout until ``F - 0.1``, the widths learn until
``F`` (:func:`schedule`). Writes ``results/<study>_pilots/<name>.json`` (one row per run) and ``<name>.md`` (means
per variant; ``--name``, default ``schedule``). VAD: about 30 runs, 25 minutes on 2 cores; anti-spoofing: 15 runs,
20 minutes. ``--corpus DIR`` (default: the full corpus in the user cache), ``--rows FILE`` (rewrite the report
from a ``<name>.json`` or the JSON lines printed while training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from importlib import import_module
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from softwidth_studies.data.cache import default_cache_dir
from softwidth.schedule import Schedule

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
POINTS = {"vad": (("crnn", 0.5), ("transformer", 0.25)), "antispoof": (("resnet", 0.25),)}
CORPORA = {"vad": "vad-full", "antispoof": "antispoof-full"}
METRIC = {"vad": "frame-level EER (%)", "antispoof": "pooled EER over clips (%)"}
CONFIGS = {"vad": "VadStudyConfig", "antispoof": "AntispoofStudyConfig"}  # softwidth.<study>.study.<name>
ORDER = {"vad": "CRNN conv1/conv2/hidden/bands, Transformer ff1/ff2/bands", "antispoof": "ResNet B0/B1/B2/B3"}


LATE_NOTE = (" Variants \"freeze F\": the widths learn from the first step and freeze at F (share of the steps); "
             "\"late F\": the network trains at full size with nested dropout until F - 0.1, the widths learn until F.")


def schedule(freeze: float, late: bool = False) -> Schedule:
    """A pilot schedule (ordering pressure off, the library's temperatures). ``late=False``: widths learn from the
    first step and freeze at ``freeze``, the ramp annealing from 30 % of that point (from 0.1 at 0.3, the studies'
    earlier schedule); ``late=True``: nested-dropout warm-up until ``freeze - 0.1``, annealing from
    ``freeze - 0.05``."""
    if late:
        if not 0.1 <= freeze <= 1.0:
            raise ValueError(f"a late schedule needs 0.1 <= freeze <= 1, got {freeze}")
        warmup, anneal = round(freeze - 0.1, 6), round(freeze - 0.05, 6)
        return Schedule(warmup=warmup, anneal_start=anneal, freeze=freeze, ordering=0.0)
    return Schedule(warmup=0.0, anneal_start=0.1 if freeze == 0.3 else 0.3 * freeze, freeze=freeze, ordering=0.0)


def job(args: tuple) -> dict:
    study, corpus, variant, sched, model, kind, target, seed, sizes = args
    task = {"model": model, "kind": kind, "seed": seed, **({"target": target} if target is not None else {}),
            **({"sizes": sizes} if sizes else {})}
    start = time.perf_counter()
    module = import_module(f"softwidth.{study}.study")
    chosen, value = module.validation_eer(task, getattr(module, CONFIGS[study])(corpus=corpus, schedule=sched))
    return {"variant": variant, "freeze": sched.freeze, **({"warmup": sched.warmup} if sched.warmup else {}),
            "model": model, "kind": kind, "target": target, "seed": seed, "sizes": chosen, "val_eer": value,
            "seconds": time.perf_counter() - start}


def variants(freezes: list[float], lates: list[float]) -> dict[str, Schedule]:
    """``{variant name: schedule}``: ``"freeze F"`` for each of ``freezes``, then ``"late F"`` for each of ``lates``."""
    return {**{f"freeze {f:g}": schedule(f) for f in freezes}, **{f"late {f:g}": schedule(f, late=True) for f in lates}}


def train_all(study: str, corpus: str, schedules: dict[str, Schedule], workers: int, fixed_at: str,
              baselines: bool = True) -> list[dict]:
    points = POINTS[study]
    jobs = [(study, corpus, v, sched, m, "dynamic", t, s, None) for v, sched in schedules.items() for m, t in points
            for s in SEEDS]
    first = next(iter(schedules))
    if baselines:
        jobs += [(study, corpus, "baseline", schedules[first], m, "baseline", None, s, None) for m, _ in points
                 for s in SEEDS]
    rows = []
    with Pool(workers) as pool:
        for row in pool.imap_unordered(job, jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
        chosen = [r for r in rows if r["kind"] == "dynamic" and (fixed_at == "all" or
                                                                 fixed_at == "first" and r["variant"] == first)]
        fixed = [(study, corpus, f"fixed at {r['variant'].replace('freeze ', 'freeze-')} sizes",
                  schedules[r["variant"]], r["model"], "fixed", r["target"], r["seed"], r["sizes"]) for r in chosen]
        for row in pool.imap_unordered(job, fixed):
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def report(study: str, rows: list[dict], out: Path, name: str = "schedule", command: str | None = None) -> None:
    """Write ``out/<name>.json`` (the rows, and ``command`` if given) and ``out/<name>.md`` (means per variant)."""
    out.mkdir(parents=True, exist_ok=True)
    stored = {"study": study, "split": "val", "metric": METRIC[study], **({"command": command} if command else {})}
    (out / f"{name}.json").write_text(json.dumps({**stored, "rows": rows}, indent=1) + "\n")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["model"], r["variant"]].append(r)
    budgets = ", ".join(f"{m} {t:g}" for m, t in POINTS[study])
    command = command or f"python scripts/schedule_pilot.py {study}"
    late = LATE_NOTE if any(r["variant"].startswith("late") for r in rows) else ""
    lines = [f"# {'VAD' if study == 'vad' else 'Anti-spoofing'} width schedule pilot (validation split)", "",
             f"Generated by `{command}`; {METRIC[study]} on the validation split, "
             f"mean ± std over seeds 0, 1, 2 (then each seed's); weights' rate decaying along a cosine. Dynamic runs "
             f"at the study's budgets ({budgets} of the baseline's FLOP/s); sizes per seed in the model's order "
             f"({ORDER[study]}).{late}", "",
             "| model | variant | EER (val) | per seed | sizes |", "|---|---|---|---|---|"]
    for (model, variant), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        values = [r["val_eer"] for r in rs]
        sizes = "; ".join("/".join(str(v) for v in r["sizes"].values()) for r in rs)
        lines.append(f"| {model} | {variant} | {np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in values)} | {sizes} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def _stored(path: Path) -> dict | None:
    try:
        whole = json.loads(path.read_text())
    except json.JSONDecodeError:  # several lines: one row each
        return None
    return whole if isinstance(whole, dict) and "rows" in whole else None


def read_rows(path: Path) -> list[dict]:
    """Rows from a ``<name>.json`` this script wrote, or from the JSON lines it prints while training."""
    whole = _stored(path)
    if whole is not None:
        return whole["rows"]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_command(path: Path) -> str | None:
    """The command stored in a ``<name>.json`` this script wrote (``None`` for JSON lines or older files)."""
    whole = _stored(path)
    return None if whole is None else whole.get("command")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(POINTS))
    parser.add_argument("--corpus", default=None, help="default: the full corpus in the user cache")
    parser.add_argument("--freeze", type=float, nargs="*", default=None,
                        help="widths learn from the start and freeze here (default 0.3 0.1 0.05 without --late)")
    parser.add_argument("--late", type=float, nargs="*", default=[],
                        help="nested-dropout warm-up until F - 0.1, widths learn until F")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=Path, default=None,
                        help="rewrite the report from a <name>.json or the JSON lines printed while training")
    parser.add_argument("--fixed-at", choices=("first", "all", "none"), default="first",
                        help="fixed-size runs at the sizes of the first schedule, of every one, or none")
    parser.add_argument("--no-baselines", action="store_true", help="skip the full-size baselines")
    parser.add_argument("--name", default="schedule", help="output file stem (default schedule)")
    parser.add_argument("--out", type=Path, default=None, help="default results/<study>_pilots")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "results" / f"{args.study}_pilots"
    if args.rows is not None:
        rows, command = read_rows(args.rows), read_command(args.rows)
    else:
        freezes = args.freeze if args.freeze is not None else ([] if args.late else [0.3, 0.1, 0.05])
        try:
            schedules = variants(freezes, args.late)
        except ValueError as err:
            parser.error(str(err))
        if not schedules:
            parser.error("no schedule to try: give --freeze or --late values")
        corpus = args.corpus or str(default_cache_dir() / "corpora" / CORPORA[args.study])
        if not (Path(corpus) / "summary.json").exists():
            parser.error(f"no corpus at {corpus}: softwidth data build {args.study} --size full")
        rows = train_all(args.study, corpus, schedules, args.workers, args.fixed_at, not args.no_baselines)
        command = " ".join(["python scripts/schedule_pilot.py", *argv]) if argv[1:] else None
    report(args.study, rows, out, args.name, command)
    print(f"written: {out}/{args.name}.json, {args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
