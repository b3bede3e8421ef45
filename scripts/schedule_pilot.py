"""Choose a case study's width schedule on the validation split: ``python scripts/schedule_pilot.py vad|antispoof``.

For each freeze point (the share of the steps during which the widths learn) it trains the study's dynamic models
at one budget each (VAD: CRNN at half the baseline's FLOP/s, Transformer at a quarter; anti-spoofing: the ResNet
with every stage dynamic at a quarter), 3 seeds each and everything else as in ``softwidth <study> train`` with the
weights' rate decaying along a cosine, then the fixed-size models trained from scratch at the sizes the first
freeze point chose (``--fixed-at all``: at every freeze point's sizes), and the full-size baselines, and scores every
model on the VALIDATION split (EER, %: frame level for VAD, pooled clips for anti-spoofing). The test split is not
read. Writes ``results/<study>_pilots/schedule.json`` (one row per run) and ``schedule.md`` (means per variant).
VAD: about 30 runs, 25 minutes on 2 cores; anti-spoofing: 15 runs, 20 minutes. ``--corpus DIR`` (default: the
full corpus in the user cache), ``--freeze 0.3 0.1 0.05`` (the first is the reference for the fixed-size runs),
``--rows FILE`` (rewrite the report from a ``schedule.json`` or the JSON lines printed while training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from softwidth.data.cache import default_cache_dir
from softwidth.schedule import Schedule

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
POINTS = {"vad": (("crnn", 0.5), ("transformer", 0.25)), "antispoof": (("resnet", 0.25),)}
CORPORA = {"vad": "vad-full", "antispoof": "antispoof-full"}
METRIC = {"vad": "frame-level EER (%)", "antispoof": "pooled EER over clips (%)"}
ORDER = {"vad": "CRNN conv1/conv2/hidden/bands, Transformer ff1/ff2/bands", "antispoof": "ResNet B0/B1/B2/B3"}


def reference(study: str) -> Schedule:
    """The study's own schedule, whose freeze point :func:`schedule` replaces."""
    if study == "vad":
        from softwidth.vad.study import VAD_SCHEDULE

        return VAD_SCHEDULE
    from softwidth.antispoof.study import AS_SCHEDULE

    return AS_SCHEDULE


def schedule(study: str, freeze: float) -> Schedule:
    """The study's schedule with the widths frozen at ``freeze``: the ramp anneals from 30 % of that point, except
    at 0.3, the studies' earlier schedule (annealing from 0.1)."""
    return replace(reference(study), anneal_start=0.1 if freeze == 0.3 else 0.3 * freeze, freeze=freeze)


def _vad(corpus: str, freeze: float, task: dict) -> tuple[dict, float]:
    from softwidth.vad.data import load_split
    from softwidth.vad.evaluate import model_scores
    from softwidth.vad.metrics import eer
    from softwidth.vad.study import VadStudyConfig, _train

    splits = {"train": load_split(corpus, "train"), "val": load_split(corpus, "val")}
    plain, chosen = _train(task, VadStudyConfig(corpus=corpus, schedule=schedule("vad", freeze)), splits)
    scores = model_scores(plain, splits["val"])
    return chosen, 100 * eer(scores.ravel(), splits["val"].labels.ravel())


def _antispoof(corpus: str, freeze: float, task: dict) -> tuple[dict, float]:
    from softwidth.antispoof.data import load_split
    from softwidth.antispoof.evaluate import breakdown, model_scores
    from softwidth.antispoof.study import AntispoofStudyConfig, _train

    config = AntispoofStudyConfig(corpus=corpus, lr_decay="cosine", schedule=schedule("antispoof", freeze))
    train, val = (load_split(corpus, s, features=config.features) for s in ("train", "val"))
    plain, chosen = _train(task, config, train)
    return chosen, 100 * breakdown(model_scores(plain, val), val)["pooled"]


def job(args: tuple) -> dict:
    study, corpus, variant, freeze, model, kind, target, seed, sizes = args
    torch.set_num_threads(1)
    task = {"model": model, "kind": kind, "seed": seed, **({"target": target} if target is not None else {}),
            **({"sizes": sizes} if sizes else {})}
    start = time.perf_counter()
    chosen, value = {"vad": _vad, "antispoof": _antispoof}[study](corpus, freeze, task)
    return {"variant": variant, "freeze": freeze, "model": model, "kind": kind, "target": target, "seed": seed,
            "sizes": chosen, "val_eer": value, "seconds": time.perf_counter() - start}


def train_all(study: str, corpus: str, freezes: list[float], workers: int, fixed_at_all: bool) -> list[dict]:
    points = POINTS[study]
    jobs = [(study, corpus, f"freeze {f:g}", f, m, "dynamic", t, s, None) for f in freezes for m, t in points
            for s in SEEDS]
    jobs += [(study, corpus, "baseline", freezes[0], m, "baseline", None, s, None) for m, _ in points for s in SEEDS]
    rows = []
    with Pool(workers) as pool:
        for row in pool.imap_unordered(job, jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
        chosen = [r for r in rows if r["kind"] == "dynamic" and (fixed_at_all or r["freeze"] == freezes[0])]
        fixed = [(study, corpus, f"fixed at freeze-{r['freeze']:g} sizes", r["freeze"], r["model"], "fixed",
                  r["target"], r["seed"], r["sizes"]) for r in chosen]
        for row in pool.imap_unordered(job, fixed):
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def report(study: str, rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedule.json").write_text(json.dumps({"study": study, "split": "val", "metric": METRIC[study],
                                                   "rows": rows}, indent=1) + "\n")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["model"], r["variant"]].append(r)
    budgets = ", ".join(f"{m} {t:g}" for m, t in POINTS[study])
    lines = [f"# {'VAD' if study == 'vad' else 'Anti-spoofing'} width schedule pilot (validation split)", "",
             f"Generated by `python scripts/schedule_pilot.py {study}`; {METRIC[study]} on the validation split, "
             f"mean ± std over seeds 0, 1, 2 (then each seed's); weights' rate decaying along a cosine. Dynamic runs "
             f"at the study's budgets ({budgets} of the baseline's FLOP/s); sizes per seed in the model's order "
             f"({ORDER[study]}).", "",
             "| model | variant | EER (val) | per seed | sizes |", "|---|---|---|---|---|"]
    for (model, variant), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        values = [r["val_eer"] for r in rs]
        sizes = "; ".join("/".join(str(v) for v in r["sizes"].values()) for r in rs)
        lines.append(f"| {model} | {variant} | {np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in values)} | {sizes} |")
    (out / "schedule.md").write_text("\n".join(lines) + "\n")


def read_rows(path: Path) -> list[dict]:
    """Rows from a ``schedule.json`` this script wrote, or from the JSON lines it prints while training."""
    text = path.read_text()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:  # several lines: one row each
        whole = None
    if isinstance(whole, dict) and "rows" in whole:
        return whole["rows"]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(POINTS))
    parser.add_argument("--corpus", default=None, help="default: the full corpus in the user cache")
    parser.add_argument("--freeze", type=float, nargs="+", default=[0.3, 0.1, 0.05])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=Path, default=None,
                        help="rewrite the report from a schedule.json or the JSON lines printed while training")
    parser.add_argument("--fixed-at", choices=("first", "all"), default="first",
                        help="fixed-size runs at the sizes of the first freeze point or of every one")
    parser.add_argument("--out", type=Path, default=None, help="default results/<study>_pilots")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "results" / f"{args.study}_pilots"
    if args.rows is not None:
        rows = read_rows(args.rows)
    else:
        corpus = args.corpus or str(default_cache_dir() / "corpora" / CORPORA[args.study])
        if not (Path(corpus) / "summary.json").exists():
            parser.error(f"no corpus at {corpus}: softwidth data build {args.study} --size full")
        rows = train_all(args.study, corpus, args.freeze, args.workers, args.fixed_at == "all")
    report(args.study, rows, out)
    print(f"written: {out}/schedule.json, schedule.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
