"""The synthetic case study: a teacher with ``d_star`` informative directions, a student with 3 widths.

Data: ``x ~ N(0, I_32)``; the teacher sees only ``z = P^T x`` for a random orthonormal ``P`` (32 x d_star)
and outputs ``y = tanh(z A) B + z C`` (8 outputs, ``C`` with orthonormal rows) plus noise, standardised (so
predicting 0 scores a loss of ~1).
Student: ``Linear(32->32)`` with a linear *bottleneck* width ``b`` (the known answer: ``b = d_star``
suffices), then ``Linear(32->64) -> ReLU`` (width ``h1``), ``Linear(64->64) -> ReLU`` (width ``h2``) and a
fixed ``Linear(64->8)`` head. Each example is priced as one 10 ms frame, so cost is FLOP/s at 100 frames/s.

The recipe trains, for every seed, the default method (ramp mix + schedule) and the paper's literal variant
from init at min and at max over a grid of penalty weights, budget-target runs, a fixed-size sweep trained
from scratch, and the L1-pruning baseline; then checks the properties and writes ``results/synthetic/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from softwidth import __version__
from softwidth.consolidate import consolidate
from softwidth.cost import params
from softwidth.errors import SoftWidthError
from softwidth.layers import Linear
from softwidth.objective import BudgetController, CostPenalty, full_cost, model_cost
from softwidth.probe import profile
from softwidth.schedule import Schedule
from softwidth.train import FitConfig, evaluate, fit
from softwidth.width import Width
from .pruning import l1_prune
from .synthetic_report import write_report

__all__ = ["SyntheticConfig", "report_from_runs", "run_synthetic"]

WIDTHS = ("bottleneck", "hidden1", "hidden2")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything the synthetic study depends on; saved as ``config.json`` next to the results."""

    d_star: int = 6
    d_in: int = 32
    d_out: int = 8
    linear_gain: float = 1.0
    max_widths: tuple[int, int, int] = (32, 64, 64)
    train_size: int = 8000
    test_size: int = 4000
    batch_size: int = 128
    epochs: int = 40
    weights: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    moderate_weight: float = 1.0
    targets: tuple[float, ...] = (0.5, 0.25, 0.1)
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_bottleneck: tuple[int, ...] = (4, 6, 8, 12, 32)
    sweep_hidden: tuple[int, ...] = (8, 16, 32, 64)
    prune_finetune_epochs: int = 5
    anneal_start: float = Schedule.anneal_start
    freeze: float = Schedule.freeze
    frames_per_second: float = 100.0
    workers: int = 2

    @classmethod
    def quick(cls) -> SyntheticConfig:
        """A one-minute version: one seed, three weights, a coarse sweep."""
        return cls(train_size=4000, test_size=2000, epochs=16, weights=(0.3, 1.0, 3.0), targets=(0.5, 0.25),
                   seeds=(0,), sweep_bottleneck=(4, 8, 32), sweep_hidden=(16, 64), prune_finetune_epochs=3)


# -- data and models ------------------------------------------------------------------------------------
def make_data(config: SyntheticConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the split ("train" or "test"); the teacher is the same for every split and seed.

    ``y = tanh(z A) B + linear_gain * z C + noise`` with ``z = P^T x``; when ``d_out >= d_star`` the rows of
    ``C`` are orthonormal, so every informative direction reaches the output with the same gain and dropping
    any one of them costs the same: the answer ``d_star`` is sharp.
    """
    g = torch.Generator().manual_seed(1234)
    p = torch.linalg.qr(torch.randn(config.d_in, config.d_star, generator=g))[0]
    a = torch.randn(config.d_star, 16, generator=g) / config.d_star ** 0.5
    b = torch.randn(16, config.d_out, generator=g) / 4
    if config.d_out >= config.d_star:
        c = torch.linalg.qr(torch.randn(config.d_out, config.d_star, generator=g))[0].T
    else:
        c = torch.randn(config.d_star, config.d_out, generator=g) / config.d_star ** 0.5

    def teacher(x: torch.Tensor) -> torch.Tensor:
        z = x @ p
        return torch.tanh(z @ a) @ b + config.linear_gain * z @ c

    n, seed = (config.train_size, 1) if split == "train" else (config.test_size, 2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, config.d_in, generator=g)
    y = teacher(x) + 0.05 * torch.randn(n, config.d_out, generator=g)
    g = torch.Generator().manual_seed(1)  # standardise with statistics of the teacher itself
    scale = teacher(torch.randn(20000, config.d_in, generator=g)).std()
    return x, y / scale


def build_student(config: SyntheticConfig, *, init: str = "max", mix: str = "ramp") -> nn.Sequential:
    """The dynamic student; ``init`` is "min", "mid" or "max" for every width."""
    widths = []
    for name, m in zip(WIDTHS, config.max_widths):
        start = {"min": 1.0, "mid": m / 2, "max": float(m)}[init]
        widths.append(Width(m, init=start, mix=mix, name=name))
    b, h1, h2 = widths
    d, (mb, m1, m2) = config.d_in, config.max_widths
    model = nn.Sequential(
        Linear(nn.Linear(d, mb), out_width=b),
        Linear(nn.Linear(mb, m1), in_width=b, out_width=h1), nn.ReLU(),
        Linear(nn.Linear(m1, m2), in_width=h1, out_width=h2), nn.ReLU(),
        Linear(nn.Linear(m2, config.d_out), in_width=h2),
    )
    profile(model, torch.zeros(1, d), seconds=1.0 / config.frames_per_second)
    return model


def mse_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def make_batches(x, y, size: int, seed: int) -> list:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(x), size)]


# -- one run ---------------------------------------------------------------------------------------------
_DATA: dict = {}


def synthetic_data(config: SyntheticConfig):
    key = (config.train_size, config.test_size, config.d_star)
    if key not in _DATA:
        _DATA[key] = make_data(config, "train"), make_data(config, "test")
    return _DATA[key]


def _train_flops(model: nn.Module, config: SyntheticConfig, epochs: int) -> float:
    """Training compute: forward FLOPs per example x 3 (forward + backward) x examples x epochs."""
    per_example = float(model_cost(model, "flops").detach()) / config.frames_per_second
    return 3.0 * per_example * config.train_size * epochs


def run_one(task: dict) -> dict:
    """Run one task of the study (a dynamic, fixed-size or pruning run) and return its record."""
    torch.set_num_threads(1)
    config = SyntheticConfig(**task["config"])
    (xtr, ytr), (xte, yte) = synthetic_data(config)
    test = [(xte, yte)]
    torch.manual_seed(task["seed"])
    kind = task["kind"]
    if kind == "fixed":
        return _run_fixed(task, config, xtr, ytr, test)
    if kind == "prune":
        return _run_prune(task, config, xtr, ytr, test)
    literal = task["method"] == "literal"
    model = build_student(config, init=task["init"], mix="paper" if literal else "ramp")
    full = full_cost(model, "flops")
    term = (BudgetController(model, target=task["target"]) if kind == "target"
            else CostPenalty(model, weight=task["weight"]))
    schedule = Schedule.literal() if literal else Schedule(anneal_start=config.anneal_start, freeze=config.freeze)
    result = fit(model, make_batches(xtr, ytr, config.batch_size, task["seed"]), loss_fn=mse_loss, config=FitConfig(
        epochs=config.epochs, schedule=schedule, width_travel=6.0, progress=False), cost_term=term)
    if kind == "target" and literal:  # no freeze phase: round to the budget after training
        term.enforce()
        result.consolidated = consolidate(model.eval())
    model.train()
    with torch.no_grad():  # the loss being optimised: train mode, noise injected (mean of 5 draws)
        train_mode = sum(float(mse_loss(model, test[0])) for _ in range(5)) / 5
    model.eval()
    cost = float(model_cost(model, "flops").detach())
    return {
        **{k: task[k] for k in ("kind", "method", "init", "seed", "weight", "target") if k in task},
        "widths": {n: float(w.value.detach()) for n, w in _named_widths(model)},
        "rounded": {n: w.rounded for n, w in _named_widths(model)},
        "cost": cost / full, "mflops_per_s": cost / 1e6, "params": float(params(model).detach()),
        "eval_loss": evaluate(model, test, mse_loss),
        "consolidated_loss": evaluate(result.consolidated, test, mse_loss),
        "train_mode_loss": train_mode, "train_flops": _train_flops(_full_copy(config), config, config.epochs),
        "history": result.history,
    }


def _named_widths(model: nn.Module):
    seen = {}
    for m in model.modules():
        if isinstance(m, Width):
            seen.setdefault(m.name, m)
    return list(seen.items())


def _full_copy(config: SyntheticConfig) -> nn.Module:
    return build_student(config, init="max")


def _fixed_model(config: SyntheticConfig, sizes: tuple[int, int, int]) -> nn.Module:
    model = build_student(config, init="max")
    for (_, w), n in zip(_named_widths(model), sizes):
        with torch.no_grad():
            w.value.fill_(float(n))
    return model


def _run_fixed(task: dict, config: SyntheticConfig, xtr, ytr, test) -> dict:
    sizes = tuple(task["sizes"])
    dyn = _fixed_model(config, sizes)
    full = full_cost(dyn, "flops")
    cost = float(model_cost(dyn, "flops").detach())
    plain = consolidate(dyn.eval())
    for layer in plain.modules():  # train from scratch at this size
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    train_plain(plain, make_batches(xtr, ytr, config.batch_size, task["seed"]), config.epochs, 3e-3)
    return {"kind": "fixed", "seed": task["seed"], "rounded": dict(zip(WIDTHS, sizes)), "cost": cost / full,
            "mflops_per_s": cost / 1e6, "consolidated_loss": evaluate(plain, test, mse_loss),
            "train_flops": _train_flops(dyn, config, config.epochs)}


def train_plain(plain: nn.Module, batches: list, epochs: int, lr: float) -> None:
    opt = torch.optim.Adam(plain.parameters(), lr=lr)
    plain.train()
    for _ in range(epochs):
        for batch in batches:
            loss = mse_loss(plain, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    plain.eval()


def _run_prune(task: dict, config: SyntheticConfig, xtr, ytr, test) -> list[dict]:
    model = build_student(config, init="max")
    batches = make_batches(xtr, ytr, config.batch_size, task["seed"])
    plain = consolidate(model.eval())  # the full model, trained as a plain network
    train_plain(plain, batches, config.epochs, 3e-3)
    for index, layer in enumerate(plain):
        if isinstance(layer, nn.Linear):
            model[index].linear.load_state_dict(layer.state_dict())
    records = []
    full_flops = _train_flops(model, config, config.epochs)
    for fraction in task["fractions"]:
        plain = l1_prune(model, fraction)
        train_plain(plain, batches, config.prune_finetune_epochs, 1e-3)
        sizes = [m.out_features for m in plain.modules() if isinstance(m, nn.Linear)][:3]
        pruned_dyn = _fixed_model(config, tuple(sizes))
        cost = float(model_cost(pruned_dyn, "flops").detach()) / full_cost(pruned_dyn, "flops")
        records.append({"kind": "prune", "seed": task["seed"], "fraction": fraction,
                        "rounded": dict(zip(WIDTHS, sizes)), "cost": cost,
                        "consolidated_loss": evaluate(plain, test, mse_loss),
                        "train_flops": full_flops + _train_flops(pruned_dyn, config, config.prune_finetune_epochs)})
    return records


# -- the study -------------------------------------------------------------------------------------------
def plan(config: SyntheticConfig) -> list[dict]:
    """Every run of the study as a task dict (dynamic runs first, they take longest)."""
    base = {"config": asdict(config)}
    tasks = []
    for method in ("default", "literal"):
        for seed in config.seeds:
            for weight in config.weights:
                for init in ("min", "max"):
                    tasks.append({**base, "kind": "weight", "method": method, "seed": seed, "weight": weight,
                                  "init": init})
            for target in config.targets:
                tasks.append({**base, "kind": "target", "method": method, "seed": seed, "target": target,
                              "init": "max"})
    tasks.append({**base, "kind": "weight", "method": "default", "seed": config.seeds[0],
                  "weight": config.moderate_weight, "init": "mid"})
    for b in config.sweep_bottleneck:
        for h1 in config.sweep_hidden:
            for h2 in config.sweep_hidden:
                tasks.append({**base, "kind": "fixed", "seed": config.seeds[0], "sizes": [b, h1, h2]})
    return tasks


def run_synthetic(config: SyntheticConfig, out_dir: str | os.PathLike = "results/synthetic", *,
                  progress: bool = True, resume: bool = False) -> dict:
    """Run the whole study and write metrics, CSVs and plots under ``out_dir``; returns the metrics.

    Every finished run is stored as ``out_dir/runs/<key>.json``; with ``resume=True`` stored runs of the
    same task are reused, so an interrupted study continues where it stopped.
    """
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    base = {"config": asdict(config)}
    tasks = plan(config)
    records: list = [None] * len(tasks)
    todo = []
    for i, task in enumerate(tasks):
        cached = _cached(out, task) if resume else None
        if cached is None:
            todo.append(i)
        else:
            records[i] = cached
    with ProcessPoolExecutor(max_workers=max(1, config.workers)) as pool:
        futures = {pool.submit(run_one, tasks[i]): i for i in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="synthetic", unit="run",
                           disable=not progress):
            i = futures[future]
            records[i] = future.result()
            _store(out, tasks[i], records[i])
    # the pruning baseline at the default method's costs (first seed, init max)
    fractions = sorted({r["cost"] for r in records if r.get("kind") == "weight" and r.get("method") == "default"
                        and r["seed"] == config.seeds[0] and r["init"] == "max"})
    prune_task = {**base, "kind": "prune", "seed": config.seeds[0], "fractions": fractions}
    pruned = (_cached(out, prune_task) if resume else None) or run_one(prune_task)
    _store(out, prune_task, pruned)
    records.extend(pruned)
    environment = {"softwidth": __version__, "torch": torch.__version__, "python": platform.python_version(),
                   "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()}
    (out / "config.json").write_text(json.dumps({"config": asdict(config), "environment": environment},
                                                indent=2) + "\n")
    return write_report(records, config, out)


def report_from_runs(out_dir: str | os.PathLike) -> dict:
    """Rewrite the metrics, tables and plots of a finished study from its stored runs (no training)."""
    out = Path(out_dir)
    try:
        raw = json.loads((out / "config.json").read_text())["config"]
        config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SoftWidthError(f"no finished synthetic study in {out}: {err}") from None
    records: list[dict] = []
    for path in sorted((out / "runs").glob("*.json")):
        stored = json.loads(path.read_text())
        if stored["task"]["config"] != raw:  # a run of another configuration
            continue
        record = stored["record"]
        records.extend(record if isinstance(record, list) else [record])
    return write_report(records, config, out)


def _key(task: dict) -> str:
    return hashlib.sha1(json.dumps(task, sort_keys=True).encode()).hexdigest()[:16]


def _cached(out: Path, task: dict):
    path = out / "runs" / f"{_key(task)}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["record"]
    except (ValueError, KeyError):  # a half-written file from an interrupted run: redo the task
        return None


def _store(out: Path, task: dict, record) -> None:
    path = out / "runs" / f"{_key(task)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"task": task, "record": record}))
    os.replace(tmp, path)
