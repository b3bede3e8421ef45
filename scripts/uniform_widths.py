"""Do learned widths beat shrinking every width alike? ``python scripts/uniform_widths.py``.

Without softwidth, a VAD engineer with a FLOP/s budget would shrink every layer of the full-size model by the same
factor. For each relative budget of the VAD study (0.5, 0.25, 0.125 of each model's baseline FLOP/s) this script
takes that model: every width of the full-size model times one factor, rounded down (the Transformer's band count to
a multiple of its 4 heads, every width at least its minimum), the largest factor whose consolidated model fits the
budget (:func:`uniform_sizes`). It trains it from scratch for each seed exactly as the study trains its fixed-size
models (``softwidth_studies.vad.study.run_one``, kind ``fixed``: same steps, rate, crops and seed), scores it on the test
split like every study run, and compares, paired by seed (:mod:`softwidth_studies.experiments.paired`), with the study's
runs of the same budget read from ``results/vad_pilots/uniform_study.json`` (the results of the VAD study of
2026-12-03 it was run against; the study itself now trains the uniform shrink as a standing baseline, so this pilot
is kept as measured): the dynamic runs (every width trainable) and the
fixed-size models trained from scratch at the sizes those runs chose. The second comparison isolates the value of
the learned allocation of the budget across layers; the first is what a user of the library gets.

Writes ``results/vad_pilots/uniform.json`` (one record per uniform run, as the study stores them) and
``uniform.md``; trained runs are kept in ``results/vad_pilots/runs/`` (not committed) so an interrupted run
resumes. 18 runs, about 10 minutes on 2 cores. ``--corpus DIR`` (default: the full corpus in the user cache),
``--report-only`` (rewrite ``uniform.md`` from ``uniform.json`` and the study's results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from softwidth_studies.data.cache import default_cache_dir
from softwidth_studies.experiments.paired import LEVEL, describe, paired_difference, pooled_difference
from softwidth_studies.experiments.runs import run_all
from softwidth_studies.vad.data import load_split
from softwidth_studies.vad.models import HEADS, MODELS
from softwidth_studies.vad.study import MEL_PRICE, _key, config_from_results, model_cost, run_one

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "results" / "vad_pilots" / "uniform_study.json"  # the study it compared with (2026-12-03)
OUT = ROOT / "results" / "vad_pilots"


def uniform_sizes(kind: str, full: dict, budget: float) -> dict:
    """The largest uniform shrink of ``full`` (every width of model ``kind``) whose FLOP/s are at most ``budget``
    (FLOP/s of audio). Each width is ``floor(factor * full size)`` (bands of the Transformer: down to a multiple of
    4, the head count), at least 1 (4). Raises ``ValueError`` if even the smallest such model is over budget."""
    step = {"bands": HEADS} if kind == "transformer" else {}

    def shrink(factor: float) -> dict:
        return {name: max(step.get(name, 1), int(factor * size) // step.get(name, 1) * step.get(name, 1))
                for name, size in full.items()}

    def fits(factor: float) -> bool:
        return model_cost(kind, shrink(factor))["flops_per_s"] <= budget

    if not fits(0.0):
        raise ValueError(f"{kind}: the smallest uniform model is over the budget of {budget:g} FLOP/s")
    low, high = 0.0, 1.0  # fits(low) holds; the answer is in [low, high]
    if fits(high):
        return shrink(high)
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return shrink(low)


def tasks(study: dict) -> list[dict]:
    """One fixed-size task per model, relative budget and seed of the study, at the uniform sizes of that budget."""
    config = config_from_results(study)
    out = []
    for kind in config.models:
        full = {**MODELS[kind].defaults, **config.sizes[kind]}
        base = model_cost(kind, full)["flops_per_s"]
        for target in config.targets:
            sizes = uniform_sizes(kind, full, target * base)
            out += [{"model": kind, "kind": "fixed", "seed": seed, "target": target, "sizes": sizes, "of": "uniform"}
                    for seed in config.seeds]
    return out


def report(study: dict, uniform: list[dict], mel_price: str = MEL_PRICE) -> str:
    """Markdown: per model and budget the uniform model's size, FLOP/s ratio and EER, and the paired differences.

    ``mel_price`` is how the runs' FLOP/s priced the mel filter bank ("sparse": its nonzeros, today's ``LogMel.cost``;
    "dense": the full matrix, as before the sparse price); a dense-priced report says so."""
    def eer(r):
        return 100 * r["metrics"]["pooled"]["eer"]

    by = {}
    for r in study["runs"]:
        if r["kind"] in ("dynamic", "fixed", "baseline") and not r.get("absolute") and not r.get("of"):
            by.setdefault((r["model"], r["kind"], r.get("target")), {})[r["seed"]] = r
    lines = ["# Learned widths against shrinking every width alike (VAD study, test split)", "",
             ("Generated by `python scripts/uniform_widths.py` from `results/vad_pilots/uniform.json` and "
              "`results/vad_pilots/uniform_study.json` (the VAD study of 2026-12-03). *uniform*: every width of the full-size model times one factor, the "
              "largest within the budget, trained from scratch as the study's fixed-size models (same steps, rate "
              "and seeds). EER in points, frame level; differences paired by seed, mean "
              f"[{LEVEL:.0%} t interval] ('lower': the first model better, 'higher': worse, 'no difference': the "
              "interval contains 0)."), "",
             *([("**Priced with the dense mel bank.** These runs and the study they are compared with counted the mel "
                 "filter bank as a dense matrix, as softwidth did before it priced the bank's nonzeros; the sizes "
                 "and FLOP/s below are of that price and are kept as measured. The learned widths of today's method "
                 "are compared with a uniform shrink at today's price in `results/vad_pilots/width_method.md`."), ""]
               if mel_price == "dense" else []),
             "| model | budget | uniform sizes | FLOP/s ratio | uniform EER | dynamic - uniform | "
             "fixed at learned sizes - uniform |", "|---|---|---|---|---|---|---|"]
    pooled: dict = {}
    groups: dict = {}
    for r in uniform:
        groups.setdefault((r["model"], r["target"]), []).append(r)
    for (kind, target), runs in groups.items():
        base = next(iter(by[(kind, "baseline", None)].values()))["flops_per_s"]
        mine = {r["seed"]: eer(r) for r in runs}
        dynamic = {s: eer(r) for s, r in by.get((kind, "dynamic", target), {}).items()}
        fixed = {s: eer(r) for s, r in by.get((kind, "fixed", target), {}).items()}
        pairs = paired_difference(dynamic, mine), paired_difference(fixed, mine)
        pooled.setdefault(kind, ([], []))
        for bucket, pair in zip(pooled[kind], pairs):
            bucket.append(pair)
        values = list(mine.values())
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        sizes = ", ".join(f"{name}={size}" for name, size in runs[0]["sizes"].items())
        lines.append(f"| {kind} | {target:g} | {sizes} | {runs[0]['flops_per_s'] / base:.3f} | "
                     f"{statistics.mean(values):.2f}{spread} | {describe(pairs[0])} | {describe(pairs[1])} |")
    lines += ["", "Every budget pooled:", ""]
    for kind, (dyn, fix) in pooled.items():
        lines.append(f"- {kind}: dynamic - uniform {describe(pooled_difference(dyn))}; fixed at learned sizes - "
                     f"uniform {describe(pooled_difference(fix))}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(default_cache_dir() / "corpora" / "vad-full"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--study", type=Path, default=STUDY)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    study = json.loads(args.study.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    mel_price = MEL_PRICE
    if args.report_only:
        stored = json.loads((args.out / "uniform.json").read_text())
        uniform, mel_price = stored["runs"], stored.get("mel_price", "dense")
    else:
        config = config_from_results(study)
        config = replace(config, corpus=args.corpus)
        (args.out / "runs").mkdir(exist_ok=True)
        for split in ("train", "val", "test"):  # spectra cached once, before the workers start (as the study does)
            load_split(config.corpus, split, progress=True)
        done = run_all(tasks(study), run_one, config, args.out, desc="uniform", key=_key, workers=config.workers,
                       resume=True, progress=True)
        uniform = [record for _, record in done]
        (args.out / "uniform.json").write_text(json.dumps({"comparison": "uniform widths", "mel_price": MEL_PRICE,
                                                          "runs": uniform},
                                                          indent=2) + "\n")
    (args.out / "uniform.md").write_text(report(study, uniform, mel_price))
    print((args.out / "uniform.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
