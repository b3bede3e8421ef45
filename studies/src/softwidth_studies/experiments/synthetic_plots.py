"""Plots of the synthetic study: width trajectories and the loss-vs-FLOP/s Pareto front."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .pareto import lower_envelope

__all__ = ["plot_pareto", "plot_trajectories"]

STYLE = {("default", "min"): ("tab:blue", "-"), ("default", "mid"): ("tab:green", "-"),
         ("default", "max"): ("tab:orange", "-"), ("literal", "min"): ("tab:blue", ":"),
         ("literal", "max"): ("tab:orange", ":")}


def plot_trajectories(records: list[dict], config, path: Path) -> None:
    """Width vs epoch at the moderate weight (first seed), from every initial width, both methods."""
    runs = [r for r in records if r["kind"] == "weight" and r["weight"] == config.moderate_weight
            and r["seed"] == config.seeds[0]]
    names = ("bottleneck", "hidden1", "hidden2")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    for ax, name, top in zip(axes, names, config.max_widths):
        for r in runs:
            color, line = STYLE[(r["method"], r["init"])]
            epochs = [h["epoch"] for h in r["history"]]
            values = [next(v for k, v in h.items() if k == f"width:{name}") for h in r["history"]]
            ax.plot([0] + epochs, [_init(r["init"], top)] + values, color=color, linestyle=line,
                    label=f"{r['method']}, init {r['init']}")
        if name == "bottleneck":
            ax.axhspan(config.d_star, 2 * config.d_star, color="grey", alpha=0.15, label="[d*, 2d*]")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, top + 1)
    axes[0].set_ylabel("width (features)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Width trajectories at weight {config.moderate_weight} (seed {config.seeds[0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _init(init: str, top: int) -> float:
    return {"min": 1.0, "mid": top / 2, "max": float(top)}[init]


def plot_pareto(records: list[dict], metrics: dict, path: Path) -> None:
    """Test loss of consolidated models vs relative FLOP/s: sweep, its envelope, dynamic, literal, pruning."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sweep = [(r["cost"], r["consolidated_loss"]) for r in records if r["kind"] == "fixed"]
    ax.scatter(*zip(*sweep), s=10, color="lightgrey", label="fixed-size sweep")
    env = lower_envelope(sweep)
    ax.step(*zip(*env), where="post", color="grey", label="sweep lower envelope")
    for method, marker, color in (("default", "o", "tab:red"), ("literal", "x", "tab:purple")):
        pts = [(r["cost"], r["consolidated_loss"]) for r in records
               if r["kind"] == "weight" and r.get("method") == method and r["init"] == "max"]
        ax.scatter(*zip(*pts), marker=marker, color=color, label=f"dynamic, {method}")
    prune = [(r["cost"], r["consolidated_loss"]) for r in records if r["kind"] == "prune"]
    if prune:
        ax.scatter(*zip(*prune), marker="s", color="tab:brown", label="L1 pruning + fine-tune")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOP/s relative to the full model")
    ax.set_ylabel("test loss (MSE, consolidated)")
    ax.legend(fontsize=7)
    ax.set_title("Synthetic task: loss vs FLOP/s")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
