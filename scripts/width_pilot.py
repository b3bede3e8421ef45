"""Choose how widths learn, on the validation split: ``python scripts/width_pilot.py``.

For points of the VAD study (default: the CRNN at a quarter and an eighth of its baseline's FLOP/s, the Transformer
at a quarter), 3 seeds each, this trains (everything else as ``softwidth vad train``) and scores on the VALIDATION
split (frame-level EER, %; the test split is not read):

- dynamic variants, every width trainable, named ``dynamic/<optimizer>[/restart][/freeze=F]``: the widths'
  optimizer ``shared`` (:class:`softwidth.WidthSGD`, one second-moment estimate shared by all widths) or ``adam``
  (an Adam group per width, the earlier rule); ``restart``: the weights are re-initialised at the freeze
  (``FitConfig.restart``); ``freeze=F``: the widths learn until the fraction ``F`` of the steps (annealing from
  ``F / 3``) instead of the study's 5 %. All use the budget projection and the proportional rounding;
- ``uniform``: every width of the full-size model shrunk by one factor to the same budget
  (``scripts/uniform_widths.py``'s :func:`uniform_sizes`), trained from scratch as the study's fixed-size models;
- ``fixed@<variant>``: the sizes a dynamic variant chose, trained from scratch.

Rows accumulate in ``results/vad_pilots/width_method.json`` (a rerun replaces the rows it trains again);
``width_method.md`` is regenerated from all of them (means, differences to uniform paired by seed with 95 % t
intervals). The CRNN at a quarter, seed 0, also leaves its width trace in ``results/vad_pilots/width_trace_<variant>/``
(``trace.csv``, ``trace.png``). Options: ``--variants V...`` (default ``dynamic/shared dynamic/adam``),
``--points crnn:0.25 ...``, ``--fixed`` (also train ``fixed@`` each variant), ``--fixed-only`` (only ``fixed@`` the
stored rows of ``--variants``), ``--no-uniform``, ``--corpus DIR``,
``--workers N``, ``--report-only``. The commands that made the committed rows are in docs/method.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

from uniform_widths import uniform_sizes

from softwidth_studies.data.cache import default_cache_dir
from softwidth_studies.experiments.paired import LEVEL, describe, paired_difference, pooled_difference

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "vad_pilots"
SEEDS = (0, 1, 2)
POINTS = (("crnn", 0.25), ("crnn", 0.125), ("transformer", 0.25))
TRACED = ("crnn", 0.25, 0)


def _full(model: str) -> dict:
    from softwidth_studies.vad.models import MODELS
    from softwidth_studies.vad.study import VadStudyConfig

    return {**MODELS[model].defaults, **VadStudyConfig().sizes[model]}


def study_config(corpus: str, variant: str):
    """The study's config for a dynamic ``variant`` name (see the module docstring)."""
    from softwidth_studies.vad.study import VadStudyConfig

    parts = variant.split("/")[1:]
    config = VadStudyConfig(corpus=corpus, restart="restart" in parts)
    if parts:
        config = replace(config, width_optimizer=parts[0])
    for part in parts[1:]:
        if part == "restart":
            config = replace(config, restart=True)
        elif part.startswith("freeze="):
            freeze = float(part.split("=", 1)[1])
            config = replace(config, schedule=replace(config.schedule, anneal_start=freeze / 3, freeze=freeze))
        else:
            raise ValueError(f"unknown variant option {part!r} in {variant!r}")
    return config


def job(args: tuple) -> dict:
    corpus, variant, model, target, seed, sizes = args
    from softwidth.trace import plot_trace, read_trace
    from softwidth_studies.vad.study import validation_eer

    start = time.perf_counter()
    dynamic = variant.startswith("dynamic")
    config = study_config(corpus, variant if dynamic else "dynamic")
    task = {"model": model, "kind": "dynamic" if dynamic else "fixed", "seed": seed, "target": target,
            **({"sizes": sizes} if sizes else {})}
    traced = dynamic and (model, target, seed) == TRACED
    controller = {}
    with tempfile.TemporaryDirectory() as tmp:
        chosen, value = validation_eer(task, config, out_dir=tmp if dynamic else None)
        if dynamic:
            controller = controller_figures(read_trace(tmp))
        if traced:
            trace = OUT / f"width_trace_{variant.split('/', 1)[1].replace('/', '_').replace('=', '')}"
            trace.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / "trace.csv", trace / "trace.csv")
            plot_trace(trace)
    return {"variant": variant, "model": model, "target": target, "seed": seed, "sizes": chosen, "val_eer": value,
            "seconds": time.perf_counter() - start, **({"controller": controller} if controller else {})}


def controller_figures(rows: list[dict]) -> dict:
    """cost / target over a trace: the lowest and highest after it first reaches the target, and at the last
    width-learning step (right before enforcement)."""
    ratios = [r["cost_to_target"] for r in rows]
    first = next((i for i, r in enumerate(ratios) if r <= 1.0 + 1e-9), None)
    after = ratios[first:] if first is not None else []
    return {"first_crossing_step": first, "after_min": min(after, default=None),
            "after_max": max(after, default=None), "at_freeze": ratios[-1] if ratios else None}


def _cost(model: str, sizes: dict) -> float:
    from softwidth_studies.vad.study import model_cost

    return model_cost(model, sizes)["flops_per_s"]


def plan(corpus: str, variants: list[str], points, uniform: bool) -> list[tuple]:
    jobs = []
    for model, target in points:
        full = _full(model)
        sizes = uniform_sizes(model, full, target * _cost(model, full))
        for seed in SEEDS:
            jobs += [(corpus, v, model, target, seed, None) for v in variants]
            if uniform:
                jobs.append((corpus, "uniform", model, target, seed, sizes))
    return jobs


def run(jobs: list[tuple], workers: int) -> list[dict]:
    rows = []
    with Pool(workers, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(job, jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    """Markdown: per point and variant the mean EER and sizes, and each variant minus uniform, paired by seed."""
    cell: dict = {}
    for r in rows:
        cell.setdefault((r["model"], r["target"], r["variant"]), {})[r["seed"]] = r
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v == "uniform", v.startswith("fixed"), v))
    lines = ["## How widths learn: VAD validation pilot", "",
             ("Generated by `python scripts/width_pilot.py`; frame-level EER (%) on the VALIDATION split, mean ± std "
              f"over seeds {', '.join(map(str, SEEDS))}; differences to *uniform* (every width shrunk by one factor to "
              f"the budget, trained from scratch) paired by seed, mean [{LEVEL:.0%} t interval]. "
              "*dynamic/shared*: the widths train with WidthSGD (one second-moment estimate for all widths); "
              "*dynamic/adam*: an Adam group per width; */restart*: weights re-initialised at the freeze; "
              "*/freeze=F*: widths learn until the fraction F of the steps (study: 0.05); all with the budget "
              "projection and proportional rounding; *fixed@V*: the sizes variant V chose, trained from scratch. "
              "Sizes per seed (CRNN conv1/conv2/hidden/bands, Transformer ff1/ff2/bands)."), "",
             "| model | budget | variant | EER (val) | minus uniform | sizes |", "|---|---|---|---|---|---|"]
    pooled: dict = {}
    points = sorted({(r["model"], r["target"]) for r in rows}, key=lambda p: (p[0], -p[1]))
    for model, target in points:
        base = {s: r["val_eer"] for s, r in cell.get((model, target, "uniform"), {}).items()}
        for variant in variants:
            runs = cell.get((model, target, variant))
            if not runs:
                continue
            eers = {s: r["val_eer"] for s, r in sorted(runs.items())}
            values = list(eers.values())
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            diff = ""
            if variant != "uniform" and base:
                pair = paired_difference(eers, base)
                pooled.setdefault((model, variant), []).append(pair)
                diff = describe(pair)
            sizes = "; ".join("/".join(str(v) for v in r["sizes"].values()) for _, r in sorted(runs.items()))
            lines.append(f"| {model} | {target:g} | {variant} | {statistics.mean(values):.2f}{spread} | {diff} | "
                         f"{sizes} |")
    lines += ["", "Pooled over the budgets each was run at (minus uniform):", ""]
    lines += [f"- {model} {variant}: {describe(pooled_difference(pairs))}" for (model, variant), pairs in pooled.items()]
    traced = [r for r in rows if r.get("controller")]
    if traced:
        lo, hi = min(r["controller"]["after_min"] for r in traced), max(r["controller"]["after_max"] for r in traced)
        freeze = [r["controller"]["at_freeze"] for r in traced]
        lines += ["", (f"Budget controller over the {len(traced)} dynamic runs traced: after the cost first reaches the "
                       f"target, cost / target stays in [{lo:.4f}, {hi:.4f}]; right before enforcement it is "
                       f"{min(freeze):.4f} to {max(freeze):.4f}.")]
    return "\n".join(lines) + "\n"


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
    key = lambda r: (r["variant"], r["model"], r["target"], r["seed"])  # noqa: E731
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in new})
    return sorted(merged.values(), key=lambda r: (r["model"], -r["target"], r["variant"], r["seed"]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(default_cache_dir() / "corpora" / "vad-full"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["dynamic/shared", "dynamic/adam"])
    parser.add_argument("--points", nargs="+", default=[f"{m}:{t:g}" for m, t in POINTS])
    parser.add_argument("--fixed", action="store_true", help="also train the sizes each variant chose from scratch")
    parser.add_argument("--fixed-only", action="store_true",
                        help="train from scratch the sizes the stored rows of --variants chose, nothing else")
    parser.add_argument("--no-uniform", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    store = OUT / "width_method.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    if not args.report_only:
        if not (Path(args.corpus) / "summary.json").exists():
            print(f"no VAD corpus at {args.corpus}: run `softwidth data build vad --size full`", file=sys.stderr)
            return 2
        for variant in args.variants:
            study_config(args.corpus, variant)  # refuse a bad name before training anything
        points = [(p.split(":")[0], float(p.split(":")[1])) for p in args.points]
        if args.fixed_only:
            new = [r for r in rows if r["variant"] in args.variants and (r["model"], r["target"]) in points]
            if not new:
                print(f"no stored rows of {args.variants} at {args.points}", file=sys.stderr)
                return 2
        else:
            new = run(plan(args.corpus, args.variants, points, not args.no_uniform), args.workers)
        if args.fixed or args.fixed_only:
            new += run([(args.corpus, f"fixed@{r['variant']}", r["model"], r["target"], r["seed"], r["sizes"])
                        for r in new if r["variant"].startswith("dynamic")], args.workers)
        rows = _merge(rows, new)
        OUT.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(rows, indent=2) + "\n")
    (OUT / "width_method.md").write_text(report(rows))
    print((OUT / "width_method.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
