"""A known-answer allocation task: a FLOP/s budget whose best split across two widths is far from uniform.

Data: ``x = (x_A, x_B)`` with ``x_A ~ N(0, I_160)`` and ``x_B ~ N(0, I_16)``; branch ``j`` of the teacher sees
only ``z_j = P_j^T x_j`` (``d*_j`` random orthonormal directions: ``d* = (4, 12)``) and the output is
``y = sum_j tanh(z_j A_j) B_j + z_j C_j`` (16 outputs, each ``C_j`` with orthonormal rows, so every one of the
16 informative directions reaches the output with the same gain) plus noise, standardised as in
:mod:`softwidth_studies.experiments.synthetic`.
Student: two parallel branches, ``Linear(d_in_j -> 32)`` with a linear bottleneck width ``K_j`` (max 32), then
a fixed ``Linear(32 -> 32) -> ReLU -> Linear(32 -> 16)``; the outputs are summed. A feature of branch A costs
``2 (160 + 32)`` FLOPs, one of B ``2 (16 + 32)``: A's features are 4x dearer.

The budget is ``slack`` (1.10) x the cost of ``(d*_A, d*_B)``: at it the right allocation keeps about ``d*`` in
each branch, while the uniform shrink (both widths scaled from 32 by one common factor to the same budget) has
6 features in each branch and drops half of B's directions. (Not 1.15: the fixed layers cost 12 % of the full
model, so the slack on the widths' own cost is larger than ``slack``, and at 1.15 the budget surface holds
``(4, 19)``, B outside its box; at 1.10 every allocation on the surface that keeps ``d*_A`` is inside it.)
The report checks each learned width against ``[d*_j, 1.5 d*_j]``, and an oracle sweep of sizes on the budget
surface trained from scratch (best by the validation split) says which allocation is best.
``softwidth allocation`` (or ``python -m softwidth_studies.experiments.allocation``) writes
``results/allocation/{results.json,summary.md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from softwidth import __version__
from softwidth.consolidate import consolidate
from softwidth.layers import Linear
from softwidth.objective import BudgetController, full_cost, model_cost
from softwidth.probe import profile
from softwidth.train import FitConfig, evaluate, fit
from softwidth.width import Width
from .synthetic import make_batches, mse_loss, train_plain

__all__ = ["AllocationConfig", "budget_surface", "collect", "in_box", "main", "make_data", "relative_cost",
           "run_allocation",
           "run_report", "target", "train_fixed", "summary", "uniform_baseline",
           "uniform_sizes"]

WIDTHS = ("A", "B")


@dataclass(frozen=True)
class AllocationConfig:
    """Everything the allocation task depends on; saved in ``results.json``."""

    d_star: tuple[int, int] = (4, 12)
    d_in: tuple[int, int] = (160, 16)
    max_width: int = 32
    hidden: int = 32
    d_out: int = 16
    slack: float = 1.10
    train_size: int = 8000
    val_size: int = 2000
    test_size: int = 4000
    batch_size: int = 128
    epochs: int = 40
    width_travel: float = 6.0
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_a: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    frames_per_second: float = 100.0
    workers: int = 2


# -- data and models ------------------------------------------------------------------------------------
def make_data(config: AllocationConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the split ("train", "val" or "test"); the teacher is the same for every split and seed."""
    g = torch.Generator().manual_seed(4321)
    parts = []
    for d_in, d_star in zip(config.d_in, config.d_star):
        p = torch.linalg.qr(torch.randn(d_in, d_star, generator=g))[0]
        a = torch.randn(d_star, 16, generator=g) / d_star ** 0.5
        b = torch.randn(16, config.d_out, generator=g) / 4
        c = torch.linalg.qr(torch.randn(config.d_out, d_star, generator=g))[0].T
        parts.append((p, a, b, c))
    split_at = config.d_in[0]

    def teacher(x: torch.Tensor) -> torch.Tensor:
        out = 0.0
        for xj, (p, a, b, c) in zip((x[:, :split_at], x[:, split_at:]), parts):
            z = xj @ p
            out = out + torch.tanh(z @ a) @ b + z @ c
        return out

    n, seed = {"train": (config.train_size, 1), "val": (config.val_size, 3), "test": (config.test_size, 2)}[split]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, sum(config.d_in), generator=g)
    y = teacher(x) + 0.05 * torch.randn(n, config.d_out, generator=g)
    g = torch.Generator().manual_seed(5)  # standardise with statistics of the teacher itself
    scale = teacher(torch.randn(20000, sum(config.d_in), generator=g)).std()
    return x, y / scale


class TwoBranch(nn.Module):
    """Branch A reads the first ``d_in[0]`` inputs, branch B the rest; their outputs are summed."""

    def __init__(self, branch_a: nn.Module, branch_b: nn.Module, split: int) -> None:
        super().__init__()
        self.a, self.b, self.split = branch_a, branch_b, split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x[..., :self.split]) + self.b(x[..., self.split:])


def build_student(config: AllocationConfig, *, init: str | tuple[float, float] = "max") -> TwoBranch:
    """The dynamic student; ``init`` is "min" or "max" for both widths, or the two starting values."""
    m, h = config.max_width, config.hidden
    starts = init if isinstance(init, tuple) else (({"min": 1.0, "max": float(m)})[init],) * 2
    branches = []
    for name, d_in, start in zip(WIDTHS, config.d_in, starts):
        w = Width(m, init=float(start), name=name)
        branches.append(nn.Sequential(Linear(nn.Linear(d_in, m), out_width=w), Linear(nn.Linear(m, h), in_width=w),
                                      nn.ReLU(), nn.Linear(h, config.d_out)))
    model = TwoBranch(*branches, split=config.d_in[0])
    profile(model, torch.zeros(1, sum(config.d_in)), seconds=1.0 / config.frames_per_second)
    return model


def _width_list(model: nn.Module) -> list[Width]:
    seen: dict[str, Width] = {}
    for module in model.modules():
        if isinstance(module, Width):
            seen.setdefault(module.name, module)
    return [seen[n] for n in WIDTHS]


# -- sizing helpers -------------------------------------------------------------------------------------
_COST_MODEL: dict = {}


def relative_cost(config: AllocationConfig, sizes: tuple[float, float]) -> float:
    """FLOP/s at ``sizes`` (widths A, B) as a fraction of the full model's (both widths at ``max_width``)."""
    key = asdict(config)["d_in"], config.max_width, config.hidden, config.d_out
    if key not in _COST_MODEL:
        _COST_MODEL[key] = build_student(config, init="max")
    model = _COST_MODEL[key]
    with torch.no_grad():
        for w, n in zip(_width_list(model), sizes):
            w.value.fill_(float(n))
    return float(model_cost(model, "flops").detach()) / full_cost(model, "flops")


def target(config: AllocationConfig) -> float:
    """The budget (relative to the full model): ``slack`` x the cost of ``(d*_A, d*_B)``."""
    return config.slack * relative_cost(config, config.d_star)


def uniform_sizes(config: AllocationConfig) -> dict:
    """The uniform shrink: both widths ``s * max_width`` with the common factor ``s`` whose cost is the budget,
    rounded down to the largest common integer size that fits; ``{"scale", "sizes"}``."""
    goal, m = target(config), config.max_width
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if relative_cost(config, (mid * m, mid * m)) <= goal else (low, mid)
    n = math.floor(low * m + 1e-9)
    return {"scale": low, "sizes": [n, n]}


def budget_surface(config: AllocationConfig) -> list[tuple[int, int]]:
    """For every ``a`` of ``sweep_a``, the allocation ``(a, b)`` with the largest ``b`` whose cost fits the budget."""
    goal, points = target(config), []
    for a in config.sweep_a:
        fitting = [b for b in range(1, config.max_width + 1) if relative_cost(config, (a, b)) <= goal]
        if fitting:
            points.append((a, max(fitting)))
    return points


def in_box(sizes, d_star) -> list[bool]:
    """Per width: is it within ``[d*_j, 1.5 d*_j]``?"""
    return [d <= float(n) <= 1.5 * d for n, d in zip(sizes, d_star)]


# -- runs -----------------------------------------------------------------------------------------------
_DATA: dict = {}


def _data(config: AllocationConfig):
    key = (config.train_size, config.val_size, config.test_size)
    if key not in _DATA:
        _DATA[key] = tuple(make_data(config, s) for s in ("train", "val", "test"))
    return _DATA[key]


def run_allocation(seed: int, init: str, config: AllocationConfig = AllocationConfig(), *,
                   trace: bool = False) -> dict:
    """Train the dynamic student from ``init`` ("min" or "max") with ``fit`` and a ``BudgetController`` at the
    budget; returns the final widths, whether each lies in its box, the losses and cost / target."""
    torch.set_num_threads(1)
    (xtr, ytr), val, test = _data(config)
    torch.manual_seed(seed)
    model = build_student(config, init=init)
    goal = target(config)
    term = BudgetController(model, target=goal)
    start = time.perf_counter()
    result = fit(model, make_batches(xtr, ytr, config.batch_size, seed), loss_fn=mse_loss, cost_term=term,
                 config=FitConfig(epochs=config.epochs, width_travel=config.width_travel, progress=False, trace=trace))
    widths = {n: result.widths[n] for n in WIDTHS}
    rounded = [widths[n]["rounded"] for n in WIDTHS]
    record = {"kind": "dynamic", "seed": seed, "init": init,
              "widths": {n: widths[n]["value"] for n in WIDTHS}, "rounded": dict(zip(WIDTHS, rounded)),
              "in_box": dict(zip(WIDTHS, in_box(rounded, config.d_star))),
              "cost_to_target": relative_cost(config, rounded) / goal,
              "val_loss": evaluate(result.consolidated, [val], mse_loss),
              "test_loss": evaluate(result.consolidated, [test], mse_loss), "seconds": time.perf_counter() - start}
    if trace:
        record["trace"] = result.trace
    return record


def train_fixed(sizes, seed: int, config: AllocationConfig = AllocationConfig()) -> dict:
    """The student at fixed ``sizes`` trained from scratch (same data, epochs and optimizer as the synthetic study's
    fixed-size sweep); returns the validation and test losses."""
    torch.set_num_threads(1)
    (xtr, ytr), val, test = _data(config)
    torch.manual_seed(seed)
    plain = consolidate(build_student(config, init=tuple(float(n) for n in sizes)).eval())
    for layer in plain.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    train_plain(plain, make_batches(xtr, ytr, config.batch_size, seed), config.epochs, 3e-3)
    return {"kind": "fixed", "seed": seed, "sizes": [int(n) for n in sizes],
            "cost_to_target": relative_cost(config, sizes) / target(config),
            "val_loss": evaluate(plain, [val], mse_loss), "test_loss": evaluate(plain, [test], mse_loss)}


def uniform_baseline(seed: int, config: AllocationConfig = AllocationConfig()) -> dict:
    """The uniform shrink's sizes trained from scratch at the same budget; ``test_loss`` among the keys."""
    uniform = uniform_sizes(config)
    return {**train_fixed(uniform["sizes"], seed, config), "kind": "uniform", "scale": uniform["scale"]}


def _job(job: tuple) -> dict:
    kind, seed, arg, config = job
    if kind == "dynamic":
        return run_allocation(seed, arg, config)
    if kind == "uniform":
        return uniform_baseline(seed, config)
    return train_fixed(arg, seed, config)


# -- the report -----------------------------------------------------------------------------------------
def run_report(config: AllocationConfig = AllocationConfig(),
               out_dir: str | os.PathLike = "results/allocation") -> dict:
    """Every seed x init, the uniform shrink and the oracle sweep; writes ``results.json`` and ``summary.md``."""
    start = time.perf_counter()
    jobs = [("dynamic", s, i, config) for s in config.seeds for i in ("max", "min")]
    jobs += [("uniform", s, None, config) for s in config.seeds]
    jobs += [("fixed", s, sizes, config) for s in config.seeds for sizes in budget_surface(config)]
    with ProcessPoolExecutor(max_workers=max(1, config.workers)) as pool:
        records = list(pool.map(_job, jobs))
    results = collect(records, config, seconds=time.perf_counter() - start)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "summary.md").write_text(summary(results))
    return results


def collect(records: list[dict], config: AllocationConfig, *, seconds: float = 0.0) -> dict:
    """The results dict of :func:`run_report` from its run records (dynamic, uniform and fixed runs)."""
    results = {"config": asdict(config), "target": target(config),
               "cost_of_d_star": relative_cost(config, config.d_star), "uniform": uniform_sizes(config),
               "runs": records, "oracle": _oracle(records), "seconds": seconds,
               "environment": {"softwidth": __version__, "torch": torch.__version__,
                               "python": platform.python_version(), "cpus": os.cpu_count()}}
    results["all_in_box"] = all(all(r["in_box"].values()) for r in records if r["kind"] == "dynamic")
    return results


def _oracle(records: list[dict]) -> dict:
    """Per allocation of the sweep: mean validation and test loss over seeds; the best by validation loss."""
    rows: dict[tuple, list] = {}
    for r in records:
        if r["kind"] == "fixed":
            rows.setdefault(tuple(r["sizes"]), []).append(r)
    table = [{"sizes": list(k), "cost_to_target": v[0]["cost_to_target"],
              "val_loss": statistics.mean(x["val_loss"] for x in v),
              "test_loss": statistics.mean(x["test_loss"] for x in v)} for k, v in sorted(rows.items())]
    best = min(table, key=lambda row: row["val_loss"]) if table else None
    return {"table": table, "best_by_val": best}


def summary(results: dict) -> str:
    """The markdown report of :func:`run_report`'s results."""
    c, runs = results["config"], results["runs"]
    d_a, d_b = c["d_star"]
    uniform = {r["seed"]: r for r in runs if r["kind"] == "uniform"}
    lines = ["# Known-answer allocation task", "",
             (f"Two branches with d* = ({d_a}, {d_b}) informative directions (max {c['max_width']} each); "
              f"a feature of A costs 4x one of B. Budget: {c['slack']} x cost(d*) = {results['target']:.4f} of the "
              f"full model's FLOP/s (cost(d*) = {results['cost_of_d_star']:.4f}). Uniform shrink: both widths x "
              f"{results['uniform']['scale']:.3f} -> {results['uniform']['sizes']}. {c['epochs']} epochs, "
              f"{c['train_size']} training examples; losses are MSE of the consolidated model on standardised "
              "targets (0 predicts ~1). Box: K_j in [d*_j, 1.5 d*_j]."), "",
             "| seed | init | final widths (value) | rounded | in box (A, B) | test loss | cost / target | "
             "uniform sizes | uniform cost / target | uniform test loss |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in runs if r["kind"] == "dynamic"), key=lambda r: (r["seed"], r["init"])):
        u = uniform[r["seed"]]
        w, n = r["widths"], r["rounded"]
        lines.append(f"| {r['seed']} | {r['init']} | {w['A']:.2f}, {w['B']:.2f} | {n['A']}, {n['B']} | "
                     f"{'yes' if r['in_box']['A'] else '**no**'}, {'yes' if r['in_box']['B'] else '**no**'} | "
                     f"{r['test_loss']:.4f} | {r['cost_to_target']:.3f} | {u['sizes'][0]}, {u['sizes'][1]} | "
                     f"{u['cost_to_target']:.3f} | {u['test_loss']:.4f} |")
    best = results["oracle"]["best_by_val"]
    lines += ["", f"Every width in its box: {'yes' if results['all_in_box'] else '**no**'}."
              + (f" The oracle's best allocation (by validation loss): {best['sizes'][0]}, {best['sizes'][1]}, "
                 f"in box: {'yes' if all(in_box(best['sizes'], c['d_star'])) else '**no**'}." if best else ""), "",
              "## Oracle: fixed sizes on the budget surface, trained from scratch (mean over seeds)", "",
              "| sizes (A, B) | cost / target | val loss | test loss |", "|---|---|---|---|"]
    for row in results["oracle"]["table"]:
        mark = " (best by val)" if best and row["sizes"] == best["sizes"] else ""
        lines.append(f"| {row['sizes'][0]}, {row['sizes'][1]}{mark} | {row['cost_to_target']:.3f} | "
                     f"{row['val_loss']:.4f} | {row['test_loss']:.4f} |")
    lines += ["", f"Wall time {results['seconds']:.0f} s on {c['workers']} workers.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """``python -m softwidth_studies.experiments.allocation [--out DIR] [--workers N] [--epochs N] [--report-only]``."""
    parser = argparse.ArgumentParser(prog="python -m softwidth_studies.experiments.allocation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/allocation"))
    parser.add_argument("--workers", type=int, default=AllocationConfig.workers)
    parser.add_argument("--epochs", type=int, default=AllocationConfig.epochs)
    parser.add_argument("--report-only", action="store_true", help="rewrite summary.md from results.json")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "summary.md").write_text(summary(results))
    else:
        results = run_report(AllocationConfig(workers=args.workers, epochs=args.epochs), args.out)
    print((args.out / "summary.md").read_text())
    return results


if __name__ == "__main__":
    main()
