"""4. Search cost: compute of the dynamic runs vs the fixed-size runs that give the same Pareto front.

Read from the finished studies (no training here):

- synthetic study (``results/synthetic/metrics.json``): training compute (FLOPs, forward x 3 x examples x
  epochs) of the default method's trade-off-weight runs of one seed vs the fixed-size sweep
  (the study's "Pareto: training compute / sweep's" row; target there <= 1/3);
- VAD study (``results/vad/results.json``): wall seconds (``train_seconds``) of the dynamic budget runs vs the
  fixed-size runs trained at the same sizes (same seeds, same steps), per model kind. Those fixed runs only
  reproduce the points the dynamic runs found; finding them without the dynamic runs needs a sweep over the
  size grid, so the cost of a fixed-size sweep is also given, **an estimate**: the number of size
  combinations x the mean fixed run's time (one seed), for the full integer grid and for a coarse grid (each
  width at 1/8, 1/4, 1/2 and all of its maximum).

The VAD runs ran two at a time on a shared 2-core machine, so their seconds are noisy (the first seed's runs were
slower than the others: see the per-seed sums).
"""

from __future__ import annotations

import json
import math

from ._common import Settings

# the VAD grid a sweep would have to cover: every width from its minimum (kappa_min 1/16 of the maximum) to its
# maximum (the bands of the Transformer in steps of its 4 heads)
GRID = {"crnn": {"bands": (5, 80, 1), "conv1": (3, 48, 1), "conv2": (3, 48, 1), "hidden": (3, 48, 1)},
        "transformer": {"bands": (8, 80, 4), "ff1": (8, 128, 1), "ff2": (8, 128, 1)}}


# a coarse sweep, as a practitioner would run it: each width at 1/8, 1/4, 1/2 and all of its maximum
COARSE_LEVELS = 4


def _grid_size(kind: str) -> int:
    return math.prod(len(range(lo, hi + 1, step)) for lo, hi, step in GRID[kind].values())


def run(settings: Settings) -> dict:
    rows, checks, notes = [], [], []
    metrics_path = settings.root / "results" / "synthetic" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    sweep = metrics["sweep"]
    for method, m in metrics["methods"].items():
        ratio = m["pareto"]["compute_ratio"]
        rows.append({"study": "synthetic", "what": f"{method}: trade-off runs of one seed vs sweep "
                     f"({sweep['runs']} fixed runs)", "dynamic": ratio["mean"] * sweep["train_flops"], "fixed": sweep["train_flops"],
                     "unit": "FLOPs", "ratio": ratio["mean"], "kind": "measured"})
        if method == "default":
            checks.append({"what": "synthetic: training compute / sweep's (default method)", "value": ratio["mean"],
                           "target": "<= 1/3", "pass": ratio["mean"] <= 1 / 3})
    results = json.loads((settings.root / "results" / "vad" / "results.json").read_text())
    runs = results["runs"]
    for kind in results["config"]["models"]:
        dyn = [r for r in runs if r["model"] == kind and r["kind"] == "dynamic" and not r.get("absolute")]
        fixed = [r for r in runs if r["model"] == kind and r["kind"] == "fixed"]
        d, f = sum(r["train_seconds"] for r in dyn), sum(r["train_seconds"] for r in fixed)
        rows.append({"study": f"vad {kind}", "what": f"{len(dyn)} dynamic runs vs {len(fixed)} fixed runs at the "
                     "same sizes", "dynamic": d, "fixed": f, "unit": "s", "ratio": d / f, "kind": "measured"})
        per_seed = {s: (sum(r["train_seconds"] for r in dyn if r["seed"] == s),
                        sum(r["train_seconds"] for r in fixed if r["seed"] == s)) for s in results["config"]["seeds"]}
        notes.append(f"vad {kind} per seed (dynamic s, fixed s): "
                     + ", ".join(f"seed {s}: {a:.0f}, {b:.0f}" for s, (a, b) in per_seed.items()))
        one_seed = [r for r in dyn if r["seed"] == results["config"]["seeds"][0]]
        mean_fixed = f / len(fixed)
        spent = sum(r["train_seconds"] for r in one_seed)
        for label, grid in (("full integer grid", _grid_size(kind)),
                            (f"coarse grid, {COARSE_LEVELS} levels per width", COARSE_LEVELS ** len(GRID[kind]))):
            rows.append({"study": f"vad {kind}", "what": f"ESTIMATE: fixed-size sweep of the {label} ({grid:.3g} "
                         f"combinations x {mean_fixed:.0f} s mean fixed run) vs the {len(one_seed)} dynamic runs of "
                         "one seed", "dynamic": spent, "fixed": grid * mean_fixed, "unit": "s",
                         "ratio": spent / (grid * mean_fixed), "kind": "estimate"})
    notes.append("grid: " + "; ".join(f"{k}: " + ", ".join(f"{n} {lo}..{hi} step {st}" for n, (lo, hi, st) in g.items())
                                      for k, g in GRID.items()))
    notes.append("ratio = dynamic / fixed (lower is cheaper for the dynamic method).")
    return {
        "title": "Search cost: dynamic runs vs fixed-size runs for the same Pareto front",
        "setup": "from results/synthetic/metrics.json and results/vad/results.json (no training in this benchmark)",
        "columns": [["study", "study"], ["what", "comparison"], ["dynamic", "dynamic"], ["fixed", "fixed-size"],
                    ["unit", "unit"], ["ratio", "dynamic / fixed"], ["kind", "kind"]],
        "rows": rows, "checks": checks, "notes": notes,
    }
