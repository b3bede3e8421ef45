"""Tables, checks and the figure of the anti-spoofing study, from ``results.json``.

``write_report(results, out)`` writes ``summary.json`` (per-group mean/spread and the issue's checks),
``summary.md`` and ``eer_vs_cost.png`` (pooled test EER against MFLOP/s of audio and parameters, like the
paper's figure 9). Rows are per model and run label: ``baseline``, ``dynamic <target>``, ``fixed <target>`` (from
scratch at the dynamic run's sizes), ``prune <target>`` (the baseline L1-pruned to those sizes and fine-tuned),
``stage <B_s>`` and the absolute-budget ``dynamic <x> MFLOP/s``. EERs are percentages of the test split; FLOP/s follow the moduleprofiler convention.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..experiments.paired import LEVEL, describe, paired_difference, pooled_difference

__all__ = ["headline", "summarise", "write_report"]


def _stats(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # sample std over seeds, as the VAD report
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def _label(run: dict) -> str:
    if run["kind"] == "stage":
        return f"stage {run['stage']}"
    if run["kind"] == "dynamic" and run.get("absolute"):
        return f"dynamic {run['target'] / 1e6:g} MFLOP/s"
    if run.get("of") == "uniform":  # the uniform shrink to the budget, a standing baseline
        return f"uniform {run['target']:g}"
    return f"{run['kind']} {run['target']:g}" if "target" in run else run["kind"]


def summarise(results: dict) -> dict:
    """Group runs by model and label; mean/std of EERs and costs over seeds; the issue's checks."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in results["runs"]:
        groups[run["model"], _label(run)].append(run)
    table = []
    for (model, label), runs in groups.items():
        test = [r["metrics"]["test"] for r in runs]
        full = results["full_cost"][model]
        table.append({"model": model, "run": label, "seeds": sorted(r["seed"] for r in runs),
                      "eer": _stats([100 * t["pooled"] for t in test]),
                      "eer_seen": _stats([100 * t["seen"] if t["seen"] is not None else None for t in test]),
                      "eer_unseen": _stats([100 * t["unseen"] if t["unseen"] is not None else None for t in test]),
                      "attacks": {a: _stats([100 * t["attacks"][a] for t in test if t["attacks"].get(a) is not None])
                                  for a in sorted({a for t in test for a in t["attacks"]})},
                      "mflops": _stats([r["flops_per_s"] / 1e6 for r in runs]),
                      "flops_ratio": _stats([r["flops_per_s"] / full["flops_per_s"] for r in runs]),
                      "params": _stats([float(r["params"]) for r in runs]),
                      "params_ratio": _stats([r["params"] / full["params"] for r in runs]),
                      "sizes": [r["sizes"] for r in runs]})
    per_seed = {key: {r["seed"]: 100 * r["metrics"]["test"]["pooled"] for r in runs} for key, runs in groups.items()}
    paired = _paired(per_seed)
    return {"table": table, "checks": _checks(results, table), "paired": paired, "baselines": _baselines(paired)}


def _baselines(paired: dict) -> dict:
    """Per model, the dynamic runs minus the standing baselines pooled over the relative budgets (EER points):
    ``vs_uniform_pooled`` and ``vs_torch_pruning_pooled`` (``None``: Torch-Pruning is not wired to the
    countermeasures yet), as the VAD summary's checks name them."""
    out = {}
    for model, rows in paired.items():
        pooled = pooled_difference(pairs["uniform"] for pairs in rows.values() if "uniform" in pairs)
        out[model] = {"vs_uniform_pooled": None if pooled is None else {
            k: pooled[k] for k in ("mean", "low", "high", "n", "verdict")}, "vs_torch_pruning_pooled": None}
    return out


def _paired(per_seed: dict[tuple[str, str], dict[int, float]]) -> dict:
    """Each relative-budget dynamic row minus the full model, the same sizes from scratch and pruned, paired by
    seed: ``{model: {"dynamic 0.25": {"full": pair, "fixed": pair, "prune": pair}}}`` (EER points)."""
    out: dict = defaultdict(dict)
    for (model, label), seeds in per_seed.items():
        if not label.startswith("dynamic ") or "MFLOP" in label:
            continue
        target = label.removeprefix("dynamic ")
        others = {"full": (model, "baseline"), "fixed": (model, f"fixed {target}"), "prune": (model, f"prune {target}"),
                  "uniform": (model, f"uniform {target}")}
        pairs = {name: pair for name, key in others.items()
                 if key in per_seed and (pair := paired_difference(seeds, per_seed[key])) is not None}
        if pairs:
            out[model][label] = pairs
    return dict(out)


def _same_size(rows: dict, model: str, run: str) -> dict[str, dict]:
    """The fixed-size and L1-pruned rows at the sizes of the dynamic ``run`` (``"dynamic <target>"``), by kind."""
    target = run.removeprefix("dynamic ")
    return {v: rows[model, f"{v} {target}"] for v in ("fixed", "prune") if (model, f"{v} {target}") in rows}


def _checks(results: dict, table: list[dict]) -> dict:
    rows = {(t["model"], t["run"]): t for t in table}
    checks: dict = {}
    for model in results["full_cost"]:
        base = rows.get((model, "baseline"))
        for t in table:
            if t["model"] != model or not t["run"].startswith("dynamic ") or "MFLOP" in t["run"] or base is None:
                continue
            ok = t["flops_ratio"]["mean"] <= 0.25 + 1e-9 and t["eer"]["mean"] <= base["eer"]["mean"]
            checks[f"{model} {t['run']}: <= 25 % FLOP/s and EER <= full model's"] = {
                "flops_ratio": t["flops_ratio"]["mean"], "eer": t["eer"]["mean"], "full_eer": base["eer"]["mean"],
                "passed": bool(ok)}
        for t in table:  # trained widths against the two baselines of the same sizes: from scratch and pruned
            if t["model"] != model or not t["run"].startswith("dynamic ") or "MFLOP" in t["run"]:
                continue
            others = {v: row["eer"]["mean"] for v, row in _same_size(rows, model, t["run"]).items()}
            if others:
                checks[f"{model} {t['run']}: EER <= {' and '.join(others)} at the same sizes"] = {
                    "eer": t["eer"]["mean"], **{f"{v}_eer": e for v, e in others.items()},
                    "passed": bool(all(t["eer"]["mean"] <= e for e in others.values()))}
        stages = [rows.get((model, f"stage {s}")) for s in ("B0", "B1", "B2", "B3")]
        if all(stages):
            savings = [{"flops_saved": 1 - s["flops_ratio"]["mean"], "params_saved": 1 - s["params_ratio"]["mean"]}
                       for s in stages]
            early = savings[0]["flops_saved"] > savings[0]["params_saved"]
            late = savings[3]["params_saved"] > savings[3]["flops_saved"]
            checks[f"{model} per stage: early stages save FLOP/s, late stages parameters (paper)"] = {
                "savings": dict(zip(("B0", "B1", "B2", "B3"), savings)), "passed": bool(early and late)}
    for run in results["runs"]:
        if run["kind"] == "dynamic":
            full = results["full_cost"][run["model"]]["flops_per_s"]
            target = run["target"] if run.get("absolute") else run["target"] * full
            error = run["flops_per_s"] / target - 1
            checks[f"{run['model']} {_label(run)} seed {run['seed']}: within 3 % of its budget"] = {
                "flops_per_s": run["flops_per_s"], "target": target, "relative_error": error,
                "passed": bool(abs(error) <= 0.03)}
    return checks


def _fmt(stats: dict | None, digits: int = 2) -> str:
    if stats is None:
        return "-"
    spread = f" ± {stats['std']:.{digits}f}" if stats["n"] > 1 else ""
    return f"{stats['mean']:.{digits}f}{spread}"


def markdown(summary: dict, results: dict) -> str:
    lines = [f"# Anti-spoofing study ({results['date']}, corpus {results['config']['corpus']})", "",
             "Test-split EER (%), mean ± std over seeds; MFLOP/s of audio (moduleprofiler convention).", "",
             "| model | run | seeds | EER | seen | unseen | MFLOP/s | FLOP/s ratio | params | params ratio | sizes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in summary["table"]:
        sizes = "; ".join("/".join(str(s[k]) for k in sorted(s)) for s in t["sizes"])
        lines.append(f"| {t['model']} | {t['run']} | {len(t['seeds'])} | {_fmt(t['eer'])} | {_fmt(t['eer_seen'])} | "
                     f"{_fmt(t['eer_unseen'])} | {_fmt(t['mflops'])} | {_fmt(t['flops_ratio'], 3)} | "
                     f"{_fmt(t['params'], 0)} | {_fmt(t['params_ratio'], 3)} | {sizes} |")
    attacks = sorted({a for t in summary["table"] for a in t["attacks"]})
    lines += ["", "## EER per attack (%)", "", "| model | run | " + " | ".join(attacks) + " |",
              "|---|---|" + "---|" * len(attacks)]
    for t in summary["table"]:
        lines.append(f"| {t['model']} | {t['run']} | " + " | ".join(_fmt(t["attacks"].get(a), 1) for a in attacks)
                     + " |")
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'}: {name}" for name, c in summary["checks"].items()]
    if summary.get("paired"):
        lines += ["", "## Paired by seed", "", (f"Dynamic run minus the other model of the same seed (EER points, mean "
                  f"[{LEVEL:.0%} t interval]; 'no difference': the interval contains 0, the seeds cannot tell them "
                  "apart; 'higher': the whole interval above 0, the dynamic run worse):"), ""]
        uniform = any("uniform" in pairs for runs in summary["paired"].values() for pairs in runs.values())
        keys = ("full", "fixed", "prune") + (("uniform",) if uniform else ())
        lines += ["| model | run | minus full model | minus fixed (same sizes) | minus pruned (same sizes) |"
                  + (" minus uniform shrink (same budget) |" if uniform else ""), "|---|---|" + "---|" * len(keys)]
        for model, runs in summary["paired"].items():
            for label, pairs in runs.items():
                lines.append(f"| {model} | {label} | " + " | ".join(describe(pairs.get(k)) for k in keys) + " |")
        for model, versus in summary.get("baselines", {}).items():
            if versus["vs_uniform_pooled"]:
                pooled = versus["vs_uniform_pooled"]
                lines.append(f"\n{model}, dynamic minus the uniform shrink, every budget pooled: "
                             f"{describe({**pooled, 'differences': []})}; Torch-Pruning: not wired to this model yet.")
    return "\n".join(lines) + "\n"


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for t in summary["table"]:
        marker = {"resnet": "o", "lcnn": "s"}.get(t["model"], "^")
        for ax, cost, scale in ((axes[0], "mflops", 1.0), (axes[1], "params", 1e-3)):
            ax.errorbar(t[cost]["mean"] * scale, t["eer"]["mean"], yerr=t["eer"]["std"], xerr=t[cost]["std"] * scale,
                        fmt=marker, capsize=3, label=f"{t['model']} {t['run']}")
    axes[0].set(xlabel="MFLOP/s of audio", ylabel="pooled test EER (%)", xscale="log")
    axes[1].set(xlabel="parameters (thousands)", xscale="log")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Anti-spoofing: EER against complexity (cf. the paper's figure 9)")
    fig.tight_layout()
    fig.savefig(out / "eer_vs_cost.png", dpi=120)
    plt.close(fig)


PAPER_CSV = Path(__file__).resolve().parents[3] / "results" / "paper" / "paper_results.csv"


def paper_markdown(summary: dict, csv_path: str | Path) -> str:
    """The paper's figure-9 ResNet34 points and our thin ResNet's, each as ratios to its own full model."""
    import csv

    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["task"] == "antispoof"]
    base = next(r for r in rows if r["variant"] == "baseline")

    def ratio(value: str, full: str) -> str:
        return f"{float(value) / float(full):.3f}" if value else "-"

    lines = ["## Against the paper (ratios to each study's own full model)", "",
             "Paper (figure 9: ResNet34 on ASVspoof 2019 LA eval, one run per point):", "",
             "| dynamic stages | kappa_min | FLOP/s ratio | params ratio | ΔEER (points) |", "|---|---|---|---|---|"]
    for r in rows:
        if r["variant"] == "dynamic":
            lines.append(f"| {r['bands_or_stages']} | {r['kappa_min_or_budget']} | "
                         f"{ratio(r['flops_per_s'], base['flops_per_s'])} | {ratio(r['params'], base['params'])} | "
                         f"{float(r['eer_percent']) - float(base['eer_percent']):+.2f} |")
    ours = [t for t in summary["table"] if t["model"] == "resnet"]
    baseline = next((t for t in ours if t["run"] == "baseline"), None)
    lines += ["", "Ours (thin ResNet on the offline corpus, mean over the run's seeds):", "",
              "| run | seeds | FLOP/s ratio | params ratio | ΔEER (points) |", "|---|---|---|---|---|"]
    for t in ours:
        if t["run"] == "baseline" or baseline is None:
            continue
        lines.append(f"| {t['run']} | {len(t['seeds'])} | {t['flops_ratio']['mean']:.3f} | "
                     f"{t['params_ratio']['mean']:.3f} | {t['eer']['mean'] - baseline['eer']['mean']:+.2f} |")
    return "\n".join(lines) + "\n"


def headline(summary: dict, results: dict) -> str:
    """A few lines for the README: each model's all-stage dynamic runs against its full model and the same-size
    baselines (pooled test EER, mean ± std over seeds), and whether the budgets landed."""
    env = results.get("environment", {})
    rows = {(t["model"], t["run"]): t for t in summary["table"]}
    lines = [f"Anti-spoofing study of {results.get('date', '?')} ({env.get('cpus', '?')} CPU cores, torch "
             f"{env.get('torch', '?')}; pooled test EER in %, mean ± std over seeds; unseen attacks separately):", ""]
    for model in results["full_cost"]:
        base = rows.get((model, "baseline"))
        if base is None:
            continue
        parts = []
        for t in summary["table"]:
            if t["model"] != model or not t["run"].startswith("dynamic ") or "MFLOP" in t["run"]:
                continue
            others = ", ".join(f"{v} {_fmt(row['eer'])}" for v, row in _same_size(rows, model, t["run"]).items())
            parts.append(f"dynamic at {t['flops_ratio']['mean']:.1%} of the FLOP/s and {t['params_ratio']['mean']:.1%} "
                         f"of the parameters: {_fmt(t['eer'])} (unseen {_fmt(t['eer_unseen'])})"
                         + (f"; same sizes {others}" if others else ""))
        lines.append(f"- {model}: full model {base['mflops']['mean']:.1f} MFLOP/s, EER {_fmt(base['eer'])} (unseen "
                     f"{_fmt(base['eer_unseen'])}); " + "; ".join(parts) + ".")
    budgets = [c for name, c in summary["checks"].items() if name.endswith("within 3 % of its budget")]
    if budgets:
        worst = max(abs(c["relative_error"]) for c in budgets)
        lines.append(f"- budgets: {sum(c['passed'] for c in budgets)} of {len(budgets)} dynamic runs within 3 % of "
                     f"their FLOP/s target (largest miss {worst:.2%}).")
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: str | Path, *, paper_csv: str | Path | None = PAPER_CSV) -> dict:
    """Write ``summary.json``, ``summary.md``, ``headline.md`` and ``eer_vs_cost.png`` to ``out``; returns the
    summary.

    ``paper_csv``: the paper's figures (``results/paper/paper_results.csv`` of a source checkout); the comparison
    with the paper is left out when the file is not there.
    """
    out = Path(out)
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary, results)
    if paper_csv is not None and Path(paper_csv).exists():
        text += "\n" + paper_markdown(summary, paper_csv)
    (out / "summary.md").write_text(text)
    (out / "headline.md").write_text(headline(summary, results))
    plot(summary, out)
    return summary
