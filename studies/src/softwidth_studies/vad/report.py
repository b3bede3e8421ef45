"""Tables, claim checks and plots of the VAD study, from ``results.json`` alone (no training).

Costs: ``flops_per_s`` is the consolidated model's FLOP/s of audio from the power spectrum on (mel bank, log and
network; moduleprofiler convention, element-wise operations included), as in the paper's cost formulas. The
STFT every model shares is reported separately as :data:`STFT_FLOPS_PER_S` (a 400-point real FFT per 10 ms frame
estimated at ``2.5 N log2 N`` FLOPs, plus the window and ``|.|^2``), and added where we compare with Silero VAD,
whose own STFT is a convolution inside its counted FLOP/s.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..experiments.paired import LEVEL, describe, paired_difference, pooled_difference
from .data import SNR_BINS
from .models import N_FFT, N_FREQ

__all__ = ["STFT_FLOPS_PER_S", "summarise", "write_report"]

STFT_FLOPS_PER_S = 100 * (2.5 * N_FFT * math.log2(N_FFT) + N_FFT + 3 * N_FREQ)
CLAIMS = {"crnn": (0.55, 0.3), "transformer": (0.30, 0.5)}  # (max FLOP/s ratio, max EER increase in points)
VARIANTS = ("dynamic", "fixed", "prune", "fixed (uniform)", "torch_pruning (taylor)", "torch_pruning (group_norm)",
            "bands", "fixed (bands)", "prune (bands)")
"""Row labels in table order: the dynamic runs (every width), the fixed-size and pruned models at their sizes, the
uniform shrink to the same budget, Torch-Pruning's pruning to it (per importance criterion), the band-only runs (the
paper's setting) and the fixed-size and pruned models at theirs."""
BASELINES = {"uniform": "fixed (uniform)", "torch_pruning": "torch_pruning"}
"""The standing baselines every dynamic run is compared with, paired by seed: ``vs_<name>`` and ``vs_<name>_pooled``
in the checks (learned minus baseline, EER points). For Torch-Pruning, the importance criterion of lower mean
validation EER over its runs (chosen on validation; ``torch_pruning_importance``)."""
LEARNED = {"dynamic": ("fixed", "prune"), "bands": ("fixed (bands)", "prune (bands)")}
"""The two kinds of width-learning run, each with the labels of its from-scratch and pruned comparisons."""


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def _variant(run: dict) -> str:
    """A run's row label: its kind, plus the kind of run whose sizes it took (``"of"``) if that is not ``dynamic``."""
    if run["kind"] == "torch_pruning":
        return f"torch_pruning ({run['importance']})"
    return f"{run['kind']} ({run['of']})" if run.get("of") else run["kind"]


def _eer(run: dict) -> float:
    return 100 * run["metrics"]["pooled"]["eer"]


def summarise(results: dict) -> dict:
    """Per model: baseline and each (variant, target) group with mean/std of EER (points), AUROC, FLOP/s, params,
    the FLOP/s ratio to the baseline, the claim checks and the peer comparison."""
    runs = results["runs"]
    out: dict = {"models": {}, "peers": {}, "checks": {}}
    for kind in sorted({r["model"] for r in runs}):
        mine = [r for r in runs if r["model"] == kind]
        base = [r for r in mine if r["kind"] == "baseline" and not r.get("steps_share")]
        base_eer = _stats([_eer(r) for r in base])
        base_flops = float(np.mean([r["flops_per_s"] for r in base]))
        groups: dict = defaultdict(list)
        missed = [r for r in mine if not r.get("torch_pruning", {}).get("reached", True)]
        for r in mine:  # a Torch-Pruning run that missed its budget is not compared at that budget
            if _variant(r) in VARIANTS and not r.get("absolute") and r not in missed:
                groups[(_variant(r), r["target"])].append(r)
        rows = []
        for (variant, target), rs in sorted(groups.items(), key=lambda kv: (VARIANTS.index(kv[0][0]), -kv[0][1])):
            eer = _stats([_eer(r) for r in rs])
            flops = float(np.mean([r["flops_per_s"] for r in rs]))
            rows.append({"variant": variant, "target": target, "eer": eer,
                         "auroc": _stats([r["metrics"]["pooled"]["auroc"] for r in rs]),
                         "f1": _stats([r["metrics"]["pooled"]["f1"] for r in rs]),
                         "flops_per_s": flops, "flops_ratio": flops / base_flops,
                         "params": float(np.mean([r["params"] for r in rs])),
                         "bands": [r["sizes"]["bands"] for r in rs], "sizes": [r["sizes"] for r in rs],
                         "eer_increase": eer["mean"] - base_eer["mean"],
                         "snr": {b: _stats([100 * r["metrics"]["snr"][b]["eer"] for r in rs
                                            if "eer" in r["metrics"]["snr"][b]]) if any(
                             "eer" in r["metrics"]["snr"][b] for r in rs) else None for b in SNR_BINS}})
        absolute = [r for r in mine if r.get("absolute")]
        out["models"][kind] = {
            "baseline": {"eer": base_eer, "auroc": _stats([r["metrics"]["pooled"]["auroc"] for r in base]),
                         "f1": _stats([r["metrics"]["pooled"]["f1"] for r in base]),
                         "flops_per_s": base_flops, "params": float(np.mean([r["params"] for r in base])),
                         "snr": {b: _stats([100 * r["metrics"]["snr"][b]["eer"] for r in base
                                            if "eer" in r["metrics"]["snr"][b]]) if any(
                             "eer" in r["metrics"]["snr"][b] for r in base) else None for b in SNR_BINS}},
            "rows": rows,
            "absolute": [{"target": r["target"], "flops_per_s": r["flops_per_s"],
                          "ratio_to_target": r["flops_per_s"] / r["target"], "eer": _eer(r), "sizes": r["sizes"]}
                         for r in absolute]}
        max_ratio, max_increase = CLAIMS.get(kind, (1.0, 0.0))
        passing = [row for row in rows if row["variant"] in LEARNED and row["flops_ratio"] <= max_ratio
                   and row["eer_increase"] <= max_increase]
        by_label = {(row["variant"], row["target"]): row for row in rows}
        wins = {(row["variant"], row["target"]): row["eer"]["mean"] < scratch["eer"]["mean"]
                for row in rows if row["variant"] in LEARNED
                and (scratch := by_label.get((LEARNED[row["variant"]][0], row["target"]))) is not None}
        dynamic_wins = [won for (variant, _), won in wins.items() if variant == "dynamic"]
        per_seed = {key: {r["seed"]: _eer(r) for r in rs} for key, rs in groups.items()}
        paired = {(variant, target): pair for (variant, target) in wins
                  if (pair := paired_difference(per_seed[variant, target],
                                                per_seed[LEARNED[variant][0], target])) is not None}
        out["checks"][kind] = {
            "claim": f"<= {max_ratio:.0%} of the baseline's FLOP/s within +{max_increase} EER points",
            "met_by": [f"{row['variant']} {row['target']:g}" for row in passing],
            "met": bool(passing),
            "beats_fixed": {f"{variant} {target:g}": won for (variant, target), won in wins.items()},
            "dynamic_beats_fixed_everywhere": bool(dynamic_wins) and all(dynamic_wins),
            "vs_fixed": {f"{variant} {target:g}": pair for (variant, target), pair in paired.items()},
            "vs_fixed_pooled": {learned: pooled for learned in LEARNED
                                if (pooled := pooled_difference(p for (v, _), p in paired.items() if v == learned))},
            "absolute_within_3pct": [abs(a["ratio_to_target"] - 1) <= 0.03 for a in out["models"][kind]["absolute"]],
            **_versus_baselines(groups, per_seed),
            "torch_pruning_over_budget": len(missed),
        }
    peers = {k: v for k, v in results.get("peers", {}).items() if "skipped" not in v}
    out["peers"] = {k: {"eer": 100 * v["pooled"]["eer"], "auroc": v["pooled"]["auroc"], "f1": v["pooled"]["f1"],
                        "rtf": v.get("rtf"), "flops_per_s": v.get("flops_per_s")} for k, v in peers.items()}
    out["skipped_peers"] = {k: v["skipped"] for k, v in results.get("peers", {}).items() if "skipped" in v}
    out["checks"]["peers"] = _peer_checks(runs, out["peers"])
    return out


def _val_eer(run: dict) -> float:
    return 100 * run["metrics"]["val"]["eer"]


def _versus_baselines(groups: dict, per_seed: dict) -> dict:
    """``vs_<baseline>`` per target and ``vs_<baseline>_pooled`` over the targets (:data:`BASELINES`): the dynamic
    run minus the baseline, paired by seed, in test EER points; ``vs_uniform_val`` (and ``_pooled``): the same
    against the uniform shrink on the validation split; plus ``torch_pruning_importance``."""
    tp = {label: [r for (variant, _), rs in groups.items() if variant == label for r in rs]
          for label in {v for v, _ in groups if v.startswith("torch_pruning")}}
    with_val = {label: rs for label, rs in tp.items() if rs and all("val" in r["metrics"] for r in rs)}
    chosen = min(with_val, key=lambda label: np.mean([_val_eer(r) for r in with_val[label]]), default=None)
    out: dict = {"torch_pruning_importance": chosen[len("torch_pruning ("):-1] if chosen else None}
    per_seed_val = {key: {r["seed"]: _val_eer(r) for r in rs} for key, rs in groups.items()
                    if all("val" in r["metrics"] for r in rs)}
    for name, label in BASELINES.items():
        label = chosen if name == "torch_pruning" else label
        out.update(_versus(f"vs_{name}", per_seed, label))
    out.update(_versus("vs_uniform_val", per_seed_val, BASELINES["uniform"]))  # how the method is chosen
    return out


def _versus(name: str, per_seed: dict, label: str | None) -> dict:
    """``{name: {target: pair}, name_pooled: pooled}``: the dynamic runs minus the ``label`` runs, paired by seed."""
    pairs = {target: pair for (variant, target) in per_seed if variant == "dynamic"
             and label is not None and (variant_b := per_seed.get((label, target))) is not None
             and (pair := paired_difference(per_seed["dynamic", target], variant_b)) is not None}
    pooled = pooled_difference(pairs.values())
    return {name: {f"{target:g}": pair for target, pair in pairs.items()},
            f"{name}_pooled": None if pooled is None else {k: pooled[k] for k in ("mean", "low", "high", "n",
                                                                                   "verdict")}}


def _peer_checks(runs: list[dict], peers: dict) -> dict:
    def best(limit: float, total: bool) -> dict | None:
        ok = [r for r in runs if r["flops_per_s"] + (STFT_FLOPS_PER_S if total else 0.0) <= limit]
        if not ok:
            return None
        r = max(ok, key=lambda r: r["metrics"]["pooled"]["auroc"])
        return {"model": r["model"], "kind": r["kind"], "seed": r["seed"], "target": r.get("target"),
                "flops_per_s": r["flops_per_s"], "auroc": r["metrics"]["pooled"]["auroc"], "eer": _eer(r),
                "sizes": r["sizes"]}

    checks: dict = {}
    webrtc = {k: v for k, v in peers.items() if k.startswith("webrtc")}
    under = best(1e6, total=False)
    if webrtc and under:
        name, top = max(webrtc.items(), key=lambda kv: kv[1]["auroc"])
        checks["best_under_1mflops"] = under
        checks["webrtc_best"] = {"name": name, "auroc": top["auroc"]}
        checks["beats_webrtc"] = under["auroc"] > top["auroc"]
    silero = peers.get("silero")
    if silero and silero.get("flops_per_s"):
        tenth = best(silero["flops_per_s"] / 10, total=True)
        checks["silero"] = {"auroc": silero["auroc"], "flops_per_s": silero["flops_per_s"]}
        checks["best_at_tenth_of_silero"] = tenth
        if tenth:
            checks["matches_silero_at_tenth"] = tenth["auroc"] >= silero["auroc"]
        overall = max(runs, key=lambda r: r["metrics"]["pooled"]["auroc"])
        checks["best_overall"] = {"model": overall["model"], "kind": overall["kind"],
                                  "auroc": overall["metrics"]["pooled"]["auroc"],
                                  "flops_fraction_of_silero": (overall["flops_per_s"] + STFT_FLOPS_PER_S)
                                  / silero["flops_per_s"]}
    return checks


PAPER_MODELS = {"crnn": "CRNNVAD", "transformer": "TrVAD"}


def paper_rows(csv_path: str | Path) -> dict:
    """The paper's figure-6 VAD points as ratios: ``{kind: [{"kappa", "bands", "flops_ratio", "eer_increase"}]}``."""
    import csv

    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["task"] == "vad"]
    out: dict = {}
    for kind, name in PAPER_MODELS.items():
        mine = [r for r in rows if r["model"] == name]
        base = next(r for r in mine if r["variant"] == "baseline")
        out[kind] = [{"kappa": float(r["kappa_min_or_budget"]), "bands": int(r["bands_or_stages"]),
                      "flops_ratio": float(r["flops_per_s"]) / float(base["flops_per_s"]),
                      "eer_increase": float(r["eer_percent"]) - float(base["eer_percent"])}
                     for r in mine if r["variant"] == "dynamic"]
    return out


def paper_markdown(summary: dict, paper: dict) -> str:
    """Side-by-side table of FLOP/s kept vs EER lost: the paper's dynamic runs and ours."""
    lines = ["## Against the paper (ratios to each study's own full-size baseline)", "",
             ("The two sides are lists, not pairs: the paper's points are its kappa_min settings (bands only), ours "
              "are FLOP/s budgets, band-only runs first."), "",
             ("| model | paper: kappa_min -> bands | paper FLOP/s ratio | paper ΔEER | ours: widths learned, "
              "target -> bands | our FLOP/s ratio | our ΔEER (mean ± std) |"), "|---|---|---|---|---|---|---|"]
    for kind, points in paper.items():
        rows = summary["models"].get(kind, {}).get("rows", [])
        ours = [r for r in rows if r["variant"] == "bands"] + [r for r in rows if r["variant"] == "dynamic"]
        for i in range(max(len(points), len(ours))):
            p = points[i] if i < len(points) else None
            o = ours[i] if i < len(ours) else None
            left = (f"{p['kappa']:g} -> {p['bands']} | {p['flops_ratio']:.3f} | {p['eer_increase']:+.2f}" if p
                    else "- | - | -")
            right = (f"{'bands only' if o['variant'] == 'bands' else 'every width'}, {o['target']:g} -> "
                     f"{'/'.join(map(str, o['bands']))} | {o['flops_ratio']:.3f} | "
                     f"{o['eer_increase']:+.2f} ± {o['eer']['std']:.2f}" if o else "- | - | -")
            lines.append(f"| {kind} | {left} | {right} |")
    return "\n".join(lines) + "\n"


def _fmt(stats: dict | None, digits: int = 2) -> str:
    if not stats:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}" if stats["n"] > 1 else f"{stats['mean']:.{digits}f}"


def _versus_markdown(checks: dict) -> list[str]:
    """The dynamic runs against the standing baselines (uniform shrink, Torch-Pruning), paired by seed."""
    lines = [(f"Dynamic run minus the standing baselines at the same budget, paired by seed (EER points, mean "
              f"[{LEVEL:.0%} t interval]; 'lower': the dynamic run better):"), ""]
    for name, label in (("uniform", "uniform shrink (test)"), ("torch_pruning", "Torch-Pruning (test)"),
                        ("uniform_val", "uniform shrink (validation)")):
        if not checks.get(f"vs_{name}"):
            lines.append(f"- {label}: no runs" + (" (the `prune` extra is not installed, or this model is not wired "
                                                   "to Torch-Pruning)" if name == "torch_pruning" else ""))
            continue
        which = (f", importance {checks['torch_pruning_importance']} (chosen on validation)"
                 if name == "torch_pruning" else "")
        lines += [f"- {label} {target}{which}: {describe(pair)}" for target, pair in checks[f"vs_{name}"].items()]
        pooled = checks[f"vs_{name}_pooled"]
        lines.append(f"- {label}, every budget pooled: {describe({**pooled, 'differences': []})}")
    if checks.get("torch_pruning_over_budget"):
        lines.append(f"- {checks['torch_pruning_over_budget']} Torch-Pruning run(s) ended above their budget and "
                     "are left out of the tables and comparisons")
    return lines + [""]


def markdown(summary: dict, results: dict) -> str:
    lines = ["# VAD case study", "",
             ("Generated by `softwidth vad train` from `results.json`; EER in percentage points (frame level, test "
             "split), mean ± std over seeds. MFLOP/s: consolidated model from the power spectrum on (the STFT, "
             f"{STFT_FLOPS_PER_S / 1e6:.2f} MFLOP/s estimated, is shared by all and excluded, as in the paper)."), ""]
    for kind, m in summary["models"].items():
        b = m["baseline"]
        lines += [f"## {kind}", "",
                  "| variant | target | bands | MFLOP/s | FLOP/s ratio | params | EER | ΔEER | AUROC | F1 |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  (f"| baseline | - | {results['config']['sizes'].get(kind, {}).get('bands', 80)} | "
                  f"{b['flops_per_s'] / 1e6:.3f} | 1.000 | {b['params']:.0f} | {_fmt(b['eer'])} | - | "
                  f"{_fmt(b['auroc'], 4)} | {_fmt(b['f1'], 3)} |")]
        for row in m["rows"]:
            lines.append(f"| {row['variant']} | {row['target']:g} | {', '.join(map(str, row['bands']))} | "
                         f"{row['flops_per_s'] / 1e6:.3f} | {row['flops_ratio']:.3f} | {row['params']:.0f} | "
                         f"{_fmt(row['eer'])} | {row['eer_increase']:+.2f} | {_fmt(row['auroc'], 4)} | "
                         f"{_fmt(row['f1'], 3)} |")
        for a in m["absolute"]:
            lines.append(f"\nBudget run at {a['target'] / 1e6:g} MFLOP/s: {a['flops_per_s'] / 1e6:.4f} MFLOP/s "
                         f"({a['ratio_to_target']:.4f} of the target), EER {a['eer']:.2f}, sizes {a['sizes']}.")
        c = summary["checks"][kind]
        met = f"met by {', '.join(c['met_by'])}" if c["met"] else "NOT met"
        lines += ["", (f"Claim ({c['claim']}): {met}; beats the fixed-size model trained from scratch at the same "
                  f"sizes: {c['beats_fixed']}."), ""]
        if c.get("vs_fixed"):
            lines += [(f"Width-learning run minus the same sizes trained from scratch, paired by seed (EER points, "
                       f"mean [{LEVEL:.0%} t interval]; 'no difference': the interval contains 0, the seeds cannot "
                       "tell them apart; 'higher': the whole interval above 0, the width-learning run worse):"), ""]
            lines += [f"- {label}: {describe(pair)}" for label, pair in c["vs_fixed"].items()]
            lines += [f"- {learned}, every budget pooled: {describe(pair)}"
                      for learned, pair in c["vs_fixed_pooled"].items()]
            lines.append("")
        lines += _versus_markdown(c)
        lines += ["EER by SNR range (points):", "", "| variant | target | " + " | ".join(SNR_BINS) + " |",
                  "|---|---|" + "---|" * len(SNR_BINS),
                  "| baseline | - | " + " | ".join(_fmt(b["snr"][s]) for s in SNR_BINS) + " |"]
        for row in m["rows"]:
            lines.append(f"| {row['variant']} | {row['target']:g} | " + " | ".join(_fmt(row["snr"][s]) for s in SNR_BINS)
                         + " |")
        lines.append("")
    lines += ["## Peers (same test split)", "", "| VAD | MFLOP/s | EER | AUROC | F1 | RTF |", "|---|---|---|---|---|---|"]
    for name, p in summary["peers"].items():
        fl = f"{p['flops_per_s'] / 1e6:.1f} (incl. its STFT)" if p.get("flops_per_s") else "-"
        lines.append(f"| {name} | {fl} | {p['eer']:.2f} | {p['auroc']:.4f} | {p['f1']:.3f} | "
                     f"{p['rtf']:.4f} |" if p.get("rtf") is not None else f"| {name} | {fl} | {p['eer']:.2f} | "
                     f"{p['auroc']:.4f} | {p['f1']:.3f} | - |")
    for name, why in summary["skipped_peers"].items():
        lines.append(f"\n{name}: skipped ({why})")
    lines += ["", "Peer checks: `" + json.dumps(summary["checks"]["peers"]) + "`", ""]
    rtf = results.get("rtf", {})
    if rtf.get("ours"):
        lines += ["## Real-time factors (one thread, same run)", "", ("| model | kind | target | MFLOP/s | batch RTF | "
                  "stream RTF |"), "|---|---|---|---|---|---|"]
        for r in rtf["ours"]:
            stream = f"{r['stream_rtf']:.4f}" if "stream_rtf" in r else "-"
            target = "-" if r["target"] is None else f"{r['target']:g}"
            lines.append(f"| {r['model']} | {r['kind']} | {target} | {r['flops_per_s'] / 1e6:.3f} | "
                         f"{r['batch_rtf']:.5f} | {stream} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(summary: dict, results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(summary["models"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        m = summary["models"][kind]
        b = m["baseline"]
        ax.errorbar([b["flops_per_s"] / 1e6], [b["eer"]["mean"]], yerr=[b["eer"]["std"]], fmt="ks", label="baseline")
        for variant, style in (("dynamic", "o-"), ("fixed", "^--"), ("prune", "v:"), ("fixed (uniform)", "s--"),
                               ("torch_pruning (taylor)", "x:"), ("torch_pruning (group_norm)", "+:"),
                               ("bands", "d-."), ("fixed (bands)", "<--"), ("prune (bands)", ">:")):
            rows = sorted((r for r in m["rows"] if r["variant"] == variant), key=lambda r: r["flops_per_s"])
            if not rows:
                continue
            x = [r["flops_per_s"] / 1e6 for r in rows]
            y = [r["eer"]["mean"] for r in rows]
            ax.errorbar(x, y, yerr=[r["eer"]["std"] for r in rows], fmt=style, capsize=3, label=variant)
            if variant in LEARNED:
                for xi, yi, r in zip(x, y, rows):
                    ax.annotate("/".join(map(str, r["bands"])), (xi, yi), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("MFLOP/s (consolidated, from the power spectrum)")
        ax.set_ylabel("EER (%)")
        ax.set_title(f"{kind}: EER vs cost (band counts on markers)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "eer_vs_mflops.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        m = summary["models"][kind]
        bins = [s for s in SNR_BINS if m["baseline"]["snr"][s]]
        series = [("baseline", m["baseline"]["snr"])] + [
            (f"{r['variant']} {r['target']:g}", r["snr"]) for r in m["rows"] if r["variant"] in LEARNED]
        width = 0.8 / len(series)
        for i, (label, snr) in enumerate(series):
            ax.bar(np.arange(len(bins)) + i * width, [snr[s]["mean"] if snr[s] else np.nan for s in bins], width,
                   label=label)
        ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, [f"{s} dB" if s != "clean" else s for s in bins])
        ax.set_ylabel("EER (%)")
        ax.set_title(f"{kind}: EER per SNR range")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "eer_per_snr.png", dpi=120)
    plt.close(fig)


PAPER_CSV = Path(__file__).resolve().parents[3] / "results" / "paper" / "paper_results.csv"


def _pooled(pooled: dict | None) -> str:
    """``+0.12 [-0.30, +0.54] points`` (a pooled paired difference), or ``not run``."""
    if not pooled:
        return "not run"
    if pooled.get("low") is None:
        return f"{pooled['mean']:+.2f} points ({pooled['n']} pair, no interval)"
    return f"{pooled['mean']:+.2f} [{pooled['low']:+.2f}, {pooled['high']:+.2f}] points ({pooled['verdict']})"


def headline(summary: dict, results: dict) -> str:
    """A few lines for the README: the best dynamic point per model against its claim, and the peers."""
    env = results.get("environment", {})
    lines = [(f"VAD study of {results.get('date', '?')} ({env.get('cpus', '?')} CPU cores, torch {env.get('torch', '?')}; "
             f"EER mean ± std over seeds, frame level, our test split):"), ""]
    for kind, m in summary["models"].items():
        b = m["baseline"]
        delta = {(r["variant"], r["target"]): r["eer"]["mean"] - b["eer"]["mean"] for r in m["rows"]}
        parts = []
        for learned, (scratch, pruned) in LEARNED.items():
            rows = [r for r in m["rows"] if r["variant"] == learned]
            if not rows:
                continue
            name = "dynamic (every width)" if learned == "dynamic" else "band count only (the paper's setting)"
            parts.append(f"{name} at " + "; at ".join(
                f"{r['flops_ratio']:.1%} of the FLOP/s: {r['eer_increase']:+.2f} points (fixed-size from scratch "
                f"{delta.get((scratch, r['target']), float('nan')):+.2f}, L1-pruned "
                f"{delta.get((pruned, r['target']), float('nan')):+.2f})" for r in rows))
        versus = [f"{label} {_pooled(summary['checks'][kind].get(f'vs_{name}_pooled'))}"
                  for name, label in (("uniform", "uniform shrink"), ("torch_pruning", "Torch-Pruning"))]
        lines.append(f"- {kind}: baseline {b['flops_per_s'] / 1e6:.1f} MFLOP/s, EER {_fmt(b['eer'])} %; "
                     + "; ".join(parts) + "; dynamic minus the standing baselines, every budget pooled and paired by "
                     "seed: " + ", ".join(versus) + ".")
    peers = summary["checks"].get("peers", {})
    if peers.get("best_under_1mflops"):
        u = peers["best_under_1mflops"]
        lines.append(f"- best model under 1 MFLOP/s ({u['model']} {u['kind']}, {u['flops_per_s'] / 1e6:.2f} MFLOP/s): "
                     f"AUROC {u['auroc']:.4f} vs WebRTC's best {peers['webrtc_best']['auroc']:.4f} "
                     f"({peers['webrtc_best']['name']}).")
    if peers.get("silero"):
        lines.append(f"- Silero VAD: AUROC {peers['silero']['auroc']:.4f} at {peers['silero']['flops_per_s'] / 1e6:.1f} "
                     f"MFLOP/s; our best overall AUROC {peers['best_overall']['auroc']:.4f} at "
                     f"{peers['best_overall']['flops_fraction_of_silero']:.2f} of Silero's FLOP/s (STFT included).")
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: str | Path, *, paper_csv: str | Path | None = PAPER_CSV) -> dict:
    """Write ``summary.json``, ``summary.md`` and the two figures to ``out``; returns the summary.

    ``paper_csv``: the paper's figures (``results/paper/paper_results.csv`` of a source checkout); the comparison
    table is left out if the file is not there (an installed package has no results folder).
    """
    out = Path(out)
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary, results)
    if paper_csv is not None and Path(paper_csv).exists():
        text += "\n" + paper_markdown(summary, paper_rows(paper_csv))
    (out / "summary.md").write_text(text)
    (out / "headline.md").write_text(headline(summary, results))
    plot(summary, results, out)
    return summary
