"""The anti-spoofing case study: dynamic thin ResNet and LCNN countermeasures against fixed-size ones.

:func:`plan` lists the phase-1 runs of an :class:`AntispoofStudyConfig`; :func:`run_one` trains and scores one;
:func:`run_study` runs them in a process pool (:mod:`softwidth_studies.experiments.runs`; phase 1: full-size baselines,
all-stage dynamic budget runs, per-stage runs, the absolute-budget run; phase 2: fixed-size models trained from
scratch at the sizes each all-stage dynamic run chose, and the L1-pruned baselines at the same sizes) and writes ``results.json`` plus the report
(:mod:`softwidth_studies.antispoof.report`).

Run kinds (``task["kind"]``):
- ``baseline``: the full-size model, trained without a cost term.
- ``dynamic``: every stage width trainable, :class:`~softwidth.BudgetController` at ``target`` of the full
  model's FLOP/s (relative) or at ``target`` FLOP/s (``absolute=True``).
- ``stage``: only stage ``task["stage"]`` trainable, :class:`~softwidth.CostPenalty` of weight ``weight`` on the
  normalised FLOP/s (a relative budget is infeasible for one stage: its share of the cost may be below it).
- ``fixed``: the fixed-size model at a dynamic run's chosen sizes, trained from scratch for as many steps.
- ``prune``: the baseline of the same seed, L1-pruned to a dynamic run's sizes
  (:func:`softwidth_studies.antispoof.pruning.prune`), fine-tuned ``finetune_steps`` steps at a third of ``lr``.

Each finished run is ``out/runs/<key>.json`` (record) + ``out/runs/<key>.pt`` (consolidated ``state_dict``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from softwidth.consolidate import consolidate
from softwidth.cost import flops_per_second, params
from ..data.antispoof_corpus import CLIP_SECONDS
from ..data.features import FeatureConfig
from softwidth.errors import SoftWidthError
from ..experiments.budget_sizes import uniform_sizes as _shrink
from ..experiments.runs import plan_phase2, run_all, run_key, save_results
from softwidth.objective import BudgetController, CostPenalty
from softwidth.probe import profile
from softwidth.schedule import Schedule
from softwidth.train import FitConfig, fit
from .data import FEATURES, ClipBatches, load_split
from .evaluate import breakdown, model_scores
from .models import MODELS, STAGES, build_model

__all__ = ["AntispoofStudyConfig", "load_run_model", "model_cost", "plan", "plan_phase2", "run_one", "run_study",
           "uniform_sizes",
           "validation_eer"]

AS_SCHEDULE = Schedule(warmup=0.0, anneal_start=0.015, freeze=0.05, ordering=0.0)
"""Widths learn in the first 5 % of the steps, then the network trains at its final size (the VAD study's
schedule, :data:`softwidth_studies.vad.study.VAD_SCHEDULE`). Chosen on the validation split (``scripts/schedule_pilot.py
antispoof``, ResNet at a quarter of the FLOP/s, 3 seeds, cosine rate): frozen at 5 % 28.5 % EER, at 30 % 29.7 %,
the full model 29.5 %. A late schedule (full-size training with nested dropout to 70 %, widths learning to 80 %;
``--late 0.8``) scored better for the ResNet on validation but worse for the LCNN, left the ResNet 1.1 points behind
its full model on test, and took the full study past an hour (``results/antispoof_pilots/study_late80``,
docs/results.md): not adopted."""


@dataclass(frozen=True)
class AntispoofStudyConfig:
    """What the study runs. ``steps``: optimizer steps per model kind (batches of ``batch_size`` whole 4 s
    clips); ``targets``: relative FLOP/s budgets of the all-stage dynamic runs (every seed); ``stage_weight``:
    the FLOP/s weight of the per-stage runs (``stage_models``, seed ``seeds[0]``); ``absolute_targets``: one
    budget run in FLOP/s of audio per model kind (seed ``seeds[0]``); ``finetune_steps``: fine-tuning steps of
    each pruned baseline."""

    corpus: str = ""
    models: tuple[str, ...] = ("resnet", "lcnn")
    features: FeatureConfig = FEATURES
    sizes: dict = field(default_factory=lambda: {"resnet": {}, "lcnn": {}})
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    targets: tuple[float, ...] = (0.25,)
    stage_models: tuple[str, ...] = ("resnet",)
    stage_weight: float = 1.0
    absolute_targets: dict = field(default_factory=lambda: {"resnet": 3e6})
    steps: dict = field(default_factory=lambda: {"resnet": 1000, "lcnn": 1000})
    batch_size: int = 32
    lr: float = 1e-3
    finetune_steps: int = 200
    kappa_min: float = 1 / 8
    schedule: Schedule = field(default_factory=lambda: AS_SCHEDULE)
    lr_decay: str = "cosine"
    workers: int = 2

    @classmethod
    def quick(cls, corpus: str = "") -> AntispoofStudyConfig:
        """A three-minute version on the small corpus: one seed, short training, no absolute-budget run."""
        return cls(corpus=corpus, seeds=(0,), absolute_targets={}, steps={"resnet": 60, "lcnn": 60},
                   finetune_steps=20)


TRAINING_FIELDS = ("corpus", "features", "sizes", "steps", "batch_size", "lr", "kappa_min", "schedule")


def _key(task: dict, config: AntispoofStudyConfig) -> str:
    settings = {name: asdict(config)[name] for name in TRAINING_FIELDS}
    if task["kind"] == "prune":  # only pruned runs depend on it: the other runs' keys (stored results) stay valid
        settings["finetune_steps"] = config.finetune_steps
    if config.lr_decay != "constant":  # keys of runs trained before the field (constant rate) stay valid
        settings["lr_decay"] = config.lr_decay
    if task["kind"] in ("dynamic", "stage"):  # price-aware width learning (WidthSGD, projection, proportional rounding)
        settings["width_method"] = 2
    return run_key(task, settings)


def _example(config: AntispoofStudyConfig) -> torch.Tensor:
    """One 4 s clip of features: the probe input (costs are then per second of audio)."""
    frames = config.features.frames(int(CLIP_SECONDS * config.features.sample_rate))
    return torch.zeros(1, frames, config.features.dim)


def model_cost(kind: str, sizes: dict, config: AntispoofStudyConfig) -> dict:
    """Exact cost of the consolidated model of ``kind`` at ``sizes``: ``{"flops_per_s", "params"}``."""
    model = build_model(kind, sizes, n_features=config.features.dim).eval()
    profile(model, _example(config), seconds=CLIP_SECONDS)
    return {"flops_per_s": float(flops_per_second(model).detach()), "params": int(params(model))}


def load_run_model(out: Path, task: dict, record: dict, config: AntispoofStudyConfig) -> nn.Module:
    """The consolidated model of a stored run (weights loaded with ``weights_only=True``)."""
    plain = consolidate(build_model(record["model"], record["sizes"], n_features=config.features.dim).eval())
    plain.load_state_dict(torch.load(out / "runs" / f"{_key(task, config)}.pt", weights_only=True))
    return plain.eval()


def _loss(model: nn.Module, batch) -> torch.Tensor:
    x, labels = batch
    return F.binary_cross_entropy_with_logits(model(x), labels)


def _train(task: dict, config: AntispoofStudyConfig, train) -> tuple[nn.Module, dict]:
    kind, seed = task["model"], task["seed"]
    torch.manual_seed(seed)
    sizes = {**config.sizes.get(kind, {}), **task.get("sizes", {})}
    dynamic = {"dynamic": "all", "stage": task.get("stage", ())}.get(task["kind"], ())
    model = build_model(kind, sizes, dynamic=dynamic, kappa_min=config.kappa_min, n_features=config.features.dim)
    profile(model, _example(config), seconds=CLIP_SECONDS)
    term = None
    if task["kind"] == "dynamic":
        term = BudgetController(model, target=task["target"], relative=not task.get("absolute", False))
    elif task["kind"] == "stage":
        term = CostPenalty(model, weight=task["weight"])
    batches = ClipBatches(train, batch_size=config.batch_size, seed=seed)
    epochs = max(1, math.ceil(config.steps[kind] / len(batches)))
    batches.steps = min(len(batches), math.ceil(config.steps[kind] / epochs))
    result = fit(model, batches, loss_fn=_loss, cost_term=term,
                 config=FitConfig(epochs=epochs, lr=config.lr, schedule=config.schedule,
                                   lr_decay=config.lr_decay, progress=False))
    chosen = {name: int(w["rounded"]) for name, w in result.widths.items()}
    return result.consolidated, {**model.sizes, **chosen}


def _finetune(model: nn.Module, config: AntispoofStudyConfig, train, seed: int) -> None:
    """``config.finetune_steps`` Adam steps at ``lr / 3`` on the training clips (as many epochs as needed)."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr / 3)
    batches = ClipBatches(train, batch_size=config.batch_size, seed=seed + 1000)
    model.train()
    done = 0
    while done < config.finetune_steps:
        for batch in batches:
            if done == config.finetune_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            _loss(model, batch).backward()
            optimizer.step()
            done += 1
    model.eval()


def run_one(task: dict, config: AntispoofStudyConfig, out: Path) -> dict:
    """Train (or prune and fine-tune) and score one run; stores its consolidated weights; returns its record."""
    torch.set_num_threads(1)
    splits = {s: load_split(config.corpus, s, features=config.features) for s in ("train", "val", "test")}
    start = time.perf_counter()
    if task["kind"] == "prune":
        from .pruning import prune

        full = load_run_model(out, task["base_task"], task["base_record"], config)
        plain, sizes = prune(full, task["sizes"]), dict(task["sizes"])
        _finetune(plain, config, splits["train"], task["seed"])
    else:
        plain, sizes = _train(task, config, splits["train"])
    seconds = time.perf_counter() - start
    metrics = {s: breakdown(model_scores(plain, splits[s]), splits[s]) for s in ("val", "test")}
    record = {k: v for k, v in task.items() if k not in ("base_task", "base_record")}  # the task, without its base
    record.update({"sizes": sizes, **model_cost(task["model"], sizes, config), "train_seconds": seconds,
                   "metrics": metrics})
    torch.save(plain.state_dict(), out / "runs" / f"{_key(task, config)}.pt")
    return record


def validation_eer(task: dict, config: AntispoofStudyConfig) -> tuple[dict, float]:
    """Train one run as :func:`run_one` does and score it on the validation split only, so that pilots choose the
    study's settings without reading the test split: ``(chosen sizes, pooled EER over clips in %)``. Nothing is
    stored."""
    torch.set_num_threads(1)
    train, val = (load_split(config.corpus, s, features=config.features) for s in ("train", "val"))
    plain, sizes = _train(task, config, train)
    return sizes, 100 * breakdown(model_scores(plain, val), val)["pooled"]


def uniform_sizes(kind: str, target: float, config: AntispoofStudyConfig) -> dict:
    """The uniform shrink of model ``kind`` to ``target`` (a share of its full model's FLOP/s): every stage width
    times the largest common factor that fits, each at least ``kappa_min`` of its full size."""
    full = {**MODELS[kind].defaults, **config.sizes.get(kind, {})}
    floors = {n: max(1, math.ceil(config.kappa_min * v)) for n, v in full.items()}

    def cost(sizes: dict) -> float:
        return model_cost(kind, sizes, config)["flops_per_s"]

    return _shrink(full, cost, target * cost(full), floors=floors)


def plan(config: AntispoofStudyConfig) -> list[dict]:
    """Phase-1 tasks: baselines, all-stage budget runs and the uniform shrinks to the same budgets (every seed),
    per-stage runs, absolute-budget runs."""
    tasks = []
    for kind in config.models:
        for seed in config.seeds:
            tasks.append({"model": kind, "kind": "baseline", "seed": seed})
            tasks += [{"model": kind, "kind": "dynamic", "seed": seed, "target": t} for t in config.targets]
            tasks += [{"model": kind, "kind": "fixed", "seed": seed, "target": t, "of": "uniform",
                       "sizes": uniform_sizes(kind, t, config)} for t in config.targets]
        if kind in config.stage_models:
            tasks += [{"model": kind, "kind": "stage", "seed": config.seeds[0], "stage": s,
                       "weight": config.stage_weight} for s in STAGES]
        if kind in config.absolute_targets:
            tasks.append({"model": kind, "kind": "dynamic", "seed": config.seeds[0],
                          "target": config.absolute_targets[kind], "absolute": True})
    return tasks


def run_study(config: AntispoofStudyConfig, out_dir: str | os.PathLike = "results/antispoof", *,
              progress: bool = True, resume: bool = True) -> dict:
    """Run both phases and write ``out_dir/results.json`` and the report; returns the results."""
    if not config.corpus:
        raise SoftWidthError("AntispoofStudyConfig.corpus is empty: build a corpus with "
                             "`softwidth data build antispoof`")
    unknown = set(config.models) - set(MODELS)
    if unknown:
        raise SoftWidthError(f"unknown anti-spoofing models {sorted(unknown)}; choose from {sorted(MODELS)}")
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for split in ("train", "val", "test"):  # features cached once, before the workers start
        load_split(config.corpus, split, features=config.features, progress=progress)
    common = {"key": _key, "workers": config.workers, "resume": resume, "progress": progress}
    first = run_all(plan(config), run_one, config, out, desc="antispoof runs", **common)
    second = run_all(plan_phase2(first), run_one, config, out, desc="antispoof fixed+pruned", **common)
    full = {kind: model_cost(kind, {**MODELS[kind].defaults, **config.sizes.get(kind, {})}, config)
            for kind in config.models}
    results = save_results(out, config, started, runs=[r for _, r in first + second], full_cost=full)
    from .report import write_report

    write_report(results, out)
    return results


def config_from_results(results: dict) -> AntispoofStudyConfig:
    """The :class:`AntispoofStudyConfig` recorded in ``results.json``."""
    raw = dict(results["config"])
    for name in ("models", "seeds", "targets", "stage_models"):
        raw[name] = tuple(raw[name])
    raw["features"] = FeatureConfig(**raw["features"])
    raw["schedule"] = Schedule(**raw["schedule"])
    raw.setdefault("lr_decay", "constant")  # results written before the field trained at a constant rate
    known = {f.name for f in dataclasses.fields(AntispoofStudyConfig)}
    return replace(AntispoofStudyConfig(), **{k: v for k, v in raw.items() if k in known})
