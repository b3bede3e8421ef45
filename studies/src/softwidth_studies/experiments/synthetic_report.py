"""Metrics, tables and plots of the synthetic study (``results/synthetic/``), from the run records."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from .pareto import TOL, hypervolume, lower_envelope

__all__ = ["hypervolume", "lower_envelope", "write_report"]  # the first two: from .pareto

INVARIANCE_MAX = 0.10  # |final width from min init - from max init| / max width, every width and seed
GAP_MAX = 0.02  # |consolidated loss - the dynamic model's loss| / that loss, every run
HV_MIN = 0.98  # the dynamic front's hypervolume / the fixed-size sweep's, every seed
COMPUTE_MAX = 1 / 3  # the dynamic runs' training FLOPs / the sweep's, every seed


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _method_metrics(records: list[dict], config, method: str, sweep_pts: list, sweep_compute: float,
                    prune: list[dict]) -> dict:
    sweep_hv = hypervolume(sweep_pts)
    runs = [r for r in records if r.get("method") == method]
    weight_runs = [r for r in runs if r["kind"] == "weight" and r["init"] in ("min", "max")]
    maxima = dict(zip(("bottleneck", "hidden1", "hidden2"), config.max_widths))
    # init-invariance: per weight and seed, the largest |final(min) - final(max)| / max_size over widths
    invariance = {}
    for weight in config.weights:
        diffs, per_width = [], {n: [] for n in maxima}
        for seed in config.seeds:
            pair = {r["init"]: r for r in weight_runs if r["weight"] == weight and r["seed"] == seed}
            if len(pair) < 2:
                continue
            d = {n: abs(pair["min"]["widths"][n] - pair["max"]["widths"][n]) / maxima[n] for n in maxima}
            for n in maxima:
                per_width[n].append(d[n])
            diffs.append(max(d.values()))
        invariance[str(weight)] = {"max_rel_diff": _mean_std(diffs), "pass": all(x <= INVARIANCE_MAX + TOL for x in diffs),
                                   "per_width": {n: _mean_std(v) for n, v in per_width.items()}}
    # monotone trade-off: for every seed and init, cost never grows with the weight
    monotone = []
    for seed in config.seeds:
        for init in ("min", "max"):
            costs = [next(r["cost"] for r in weight_runs if r["weight"] == w and r["seed"] == seed
                          and r["init"] == init) for w in sorted(config.weights)]
            monotone.append({"seed": seed, "init": init, "costs": costs,
                             "pass": all(b <= a + TOL for a, b in zip(costs, costs[1:]))})
    mean_cost = {str(w): _mean_std([r["cost"] for r in weight_runs if r["weight"] == w]) for w in config.weights}
    # recovery of the bottleneck at the moderate weight
    moderate = [r for r in weight_runs if r["weight"] == config.moderate_weight]
    bottleneck = [r["rounded"]["bottleneck"] for r in moderate]
    recovery = {"d_star": config.d_star, "bottleneck": _mean_std(bottleneck), "values": bottleneck,
                "pass": all(config.d_star <= b <= 2 * config.d_star for b in bottleneck),
                "per_weight": {str(w): sorted(r["rounded"]["bottleneck"] for r in weight_runs if r["weight"] == w)
                               for w in config.weights}}
    # consolidation gap
    gaps = [abs(r["consolidated_loss"] - r["eval_loss"]) / r["eval_loss"] for r in weight_runs]
    train_gaps = [(r["train_mode_loss"] - r["consolidated_loss"]) / r["consolidated_loss"] for r in weight_runs]
    gap = {"eval_vs_consolidated": _mean_std(gaps), "train_mode_vs_consolidated": _mean_std(train_gaps),
           "pass": all(g <= GAP_MAX for g in gaps), "train_mode_pass": all(abs(g) <= GAP_MAX for g in train_gaps)}
    # budget targets
    target_rows = [r for r in runs if r["kind"] == "target"]
    targets = {}
    for target in config.targets:
        ratios = [r["cost"] / target for r in target_rows if r["target"] == target]
        targets[str(target)] = {"cost_over_target": _mean_std(ratios), "values": ratios,
                                "pass": all(0.97 - TOL <= x <= 1.0 + TOL for x in ratios)}
    # Pareto against the fixed-size sweep, per seed (init at max), and against pruning (first seed)
    pareto = []
    for seed in config.seeds:
        pts = [(r["cost"], r["consolidated_loss"]) for r in weight_runs if r["seed"] == seed and r["init"] == "max"]
        compute = sum(r["train_flops"] for r in weight_runs if r["seed"] == seed and r["init"] == "max")
        # the same comparison restricted to the FLOP/s range both fronts cover (no credit for cheaper points)
        low = max(min(c for c, _ in pts), min(c for c, _ in sweep_pts))
        common = hypervolume([p for p in pts if p[0] >= low]) / max(hypervolume([p for p in sweep_pts if p[0] >= low]),
                                                                      1e-12)
        pareto.append({"seed": seed, "hv_ratio": hypervolume(pts) / sweep_hv if sweep_hv else float("nan"),
                       "hv_ratio_common_range": common,
                       "compute_ratio": compute / sweep_compute if sweep_compute else float("nan")})
    hv = [p["hv_ratio"] for p in pareto]
    compute = [p["compute_ratio"] for p in pareto]
    first = [r for r in weight_runs if r["seed"] == config.seeds[0] and r["init"] == "max"]
    versus_prune = []
    for r in sorted(first, key=lambda r: r["cost"]):
        p = next((p for p in prune if abs(p["fraction"] - r["cost"]) < 1e-9), None)
        if p is not None:
            versus_prune.append({"weight": r["weight"], "dynamic_cost": r["cost"], "pruned_cost": p["cost"],
                                 "dynamic_loss": r["consolidated_loss"], "pruned_loss": p["consolidated_loss"],
                                 "dynamic_wins": r["consolidated_loss"] < p["consolidated_loss"]})
    return {
        "init_invariance": invariance, "init_invariance_pass": all(v["pass"] for v in invariance.values()),
        "monotone": monotone, "monotone_pass": all(m["pass"] for m in monotone), "mean_cost": mean_cost,
        "recovery": recovery, "consolidation_gap": gap, "targets": targets,
        "targets_pass": all(t["pass"] for t in targets.values()),
        "pareto": {"per_seed": pareto, "hv_ratio": _mean_std(hv), "compute_ratio": _mean_std(compute),
                   "hv_ratio_common_range": _mean_std([p["hv_ratio_common_range"] for p in pareto]),
                   "pass": _hv_pass(pareto) and _compute_pass(pareto)},
        "versus_pruning": versus_prune,
        "beats_pruning": bool(versus_prune) and all(v["dynamic_wins"] for v in versus_prune),
    }


def write_report(records: list[dict], config, out: Path) -> dict:
    """Write metrics.json, runs.csv, trajectories.csv, pareto.csv, summary.md and the plots; return metrics."""
    sweep = [r for r in records if r["kind"] == "fixed"]
    prune = [r for r in records if r["kind"] == "prune"]
    sweep_pts = [(r["cost"], r["consolidated_loss"]) for r in sweep]
    sweep_hv = hypervolume(sweep_pts)
    sweep_compute = sum(r["train_flops"] for r in sweep)
    metrics = {
        "sweep": {"runs": len(sweep), "hypervolume": sweep_hv, "train_flops": sweep_compute,
                  "envelope": lower_envelope(sweep_pts)},
        "methods": {m: _method_metrics(records, config, m, sweep_pts, sweep_compute, prune)
                    for m in ("default", "literal")},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_runs(records, out)
    (out / "summary.md").write_text(summary_table(metrics, config))
    from .synthetic_plots import plot_pareto, plot_trajectories

    plot_trajectories(records, config, out / "trajectories.png")
    plot_pareto(records, metrics, out / "pareto.png")
    return metrics


def _write_runs(records: list[dict], out: Path) -> None:
    cols = ["kind", "method", "seed", "init", "weight", "target", "fraction", "cost", "mflops_per_s", "params",
            "eval_loss", "consolidated_loss", "train_mode_loss", "train_flops",
            "bottleneck", "hidden1", "hidden2", "bottleneck_real", "hidden1_real", "hidden2_real"]
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            row = {**r, **r.get("rounded", {}), **{f"{k}_real": v for k, v in r.get("widths", {}).items()}}
            writer.writerow(row)
    with (out / "trajectories.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seed", "init", "weight", "target", "epoch", "width", "value", "cost"])
        for r in records:
            for h in r.get("history", []):
                for k, v in h.items():
                    if k.startswith("width:"):
                        writer.writerow([r["method"], r["seed"], r["init"], r.get("weight"), r.get("target"),
                                         h["epoch"], k[6:], v, h.get("cost")])


def _hv_pass(per_seed: list[dict]) -> bool:
    return all(p["hv_ratio"] >= HV_MIN for p in per_seed)


def _compute_pass(per_seed: list[dict]) -> bool:
    return all(p["compute_ratio"] <= COMPUTE_MAX + TOL for p in per_seed)


def _fmt(ms: dict, digits: int = 3) -> str:
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def summary_table(metrics: dict, config) -> str:
    """A markdown table of every property for both methods (quoted by docs/method.md); a row with a target
    says pass or fail in every cell."""
    lines = [f"Seeds: {len(config.seeds)}; weights {list(config.weights)}; targets {list(config.targets)}; "
             f"d* = {config.d_star}; {config.epochs} epochs per run. Mean ± std over seeds.", "",
             "| property | default (ramp + schedule) | literal (paper mix) |", "|---|---|---|"]

    def row(name: str, fn) -> None:
        lines.append(f"| {name} | {fn(metrics['methods']['default'])} | {fn(metrics['methods']['literal'])} |")

    def ok(flag: bool) -> str:
        return "pass" if flag else "**fail**"

    for w in config.weights:
        row(f"init-invariance, weight {w}: max \\|min-init - max-init\\| / max (<= {INVARIANCE_MAX})",  # \| in a cell
            lambda m, w=w: f"{_fmt(m['init_invariance'][str(w)]['max_rel_diff'])} "
                           f"({ok(m['init_invariance'][str(w)]['pass'])})")
    row("monotone trade-off (cost never grows with weight)", lambda m: ok(m["monotone_pass"]))
    row("mean cost per weight", lambda m: ", ".join(f"{v['mean']:.3f}" for v in m["mean_cost"].values()))
    row(f"recovery: bottleneck at weight {config.moderate_weight} in [d*, 2d*]",
        lambda m: f"{m['recovery']['values']} ({ok(m['recovery']['pass'])})")
    row("bottleneck (rounded) per weight, all seeds and inits",
        lambda m: "; ".join(f"{w}: {min(v)}-{max(v)}" for w, v in m["recovery"]["per_weight"].items()))
    row(f"consolidation gap vs eval-mode loss (<= {GAP_MAX})",
        lambda m: f"{_fmt(m['consolidation_gap']['eval_vs_consolidated'], 4)} ({ok(m['consolidation_gap']['pass'])})")
    row(f"gap vs train-mode (noisy) loss (within ±{GAP_MAX})",
        lambda m: f"{_fmt(m['consolidation_gap']['train_mode_vs_consolidated'], 3)} "
                  f"({ok(m['consolidation_gap']['train_mode_pass'])})")
    for t in config.targets:
        row(f"target {t}: cost / target in [0.97, 1]",
            lambda m, t=t: f"{_fmt(m['targets'][str(t)]['cost_over_target'])} ({ok(m['targets'][str(t)]['pass'])})")
    row(f"Pareto: hypervolume / sweep's (>= {HV_MIN} every seed)",
        lambda m: f"{_fmt(m['pareto']['hv_ratio'])} ({ok(_hv_pass(m['pareto']['per_seed']))})")
    row("Pareto: same ratio over the FLOP/s range both cover (no target)",
        lambda m: _fmt(m["pareto"]["hv_ratio_common_range"]))
    row("Pareto: training compute / sweep's (<= 1/3 every seed)",
        lambda m: f"{_fmt(m['pareto']['compute_ratio'])} ({ok(_compute_pass(m['pareto']['per_seed']))})")
    row("beats L1 pruning at equal FLOP/s (first seed)",
        lambda m: f"{sum(v['dynamic_wins'] for v in m['versus_pruning'])}/{len(m['versus_pruning'])} "
                  f"({ok(m['beats_pruning'])})" if m["versus_pruning"] else "not run (pruned to the default's costs)")
    return "\n".join(lines) + "\n"
