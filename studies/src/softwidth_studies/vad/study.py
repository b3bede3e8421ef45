"""The VAD case study: dynamic CRNN and Transformer VADs against fixed-size, pruned and peer VADs.

:func:`plan` lists the runs of a :class:`VadStudyConfig`; :func:`run_one` trains and scores one run;
:func:`run_study` runs them in a process pool (phase 1: full-size baselines and dynamic runs; phase 2: the
fixed-size models trained from scratch at the sizes each dynamic run chose, and the L1-pruned baselines at the
same sizes), scores the peers, and writes ``results.json`` plus tables and plots (:mod:`softwidth_studies.vad.report`).

Run kinds (``task["kind"]``):
- ``baseline``: the full-size model (every width at its maximum), trained without a cost term.
- ``dynamic``: every width trainable, :class:`~softwidth.BudgetController` at ``target`` of the full model's
  FLOP/s (relative) or at an absolute FLOP/s (``absolute=True``).
- ``bands``: only the band count trainable (the paper's setting), budget ``target`` (relative).
- ``fixed``: the fixed-size model at a dynamic (or, with ``"of": "bands"``, a band-only) run's chosen sizes, trained
  from scratch for as many steps.
- ``prune``: the baseline of the same seed, L1-pruned to those sizes, fine-tuned ``finetune_steps``.
- ``fixed`` with ``"of": "uniform"``: the uniform shrink (every width of the full model times one factor, the
  largest within ``target``; :func:`uniform_sizes`), trained from scratch like the fixed-size models (phase 1).
- ``baseline`` with ``"steps_share": 0.5``: the full model trained for half the steps, from which
- ``torch_pruning``: Torch-Pruning's global structured pruning (importance ``task["importance"]``) prunes to
  ``target`` and fine-tunes the other half of the steps, so its training steps equal a dynamic run's (phase 2; only
  when the ``prune`` extra is installed, :mod:`softwidth_studies.vad.torch_pruning_peer`).

Each finished run is stored as ``out/runs/<key>.json`` (record) and ``out/runs/<key>.pt`` (the consolidated
model's ``state_dict``, loaded with ``weights_only=True``), so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from softwidth.consolidate import consolidate
from softwidth.cost import flops_per_second, params
from softwidth.errors import SoftWidthError
from ..experiments.runs import plan_phase2, run_all, run_key, save_results
from softwidth.objective import BudgetController
from softwidth.probe import profile
from softwidth.schedule import Schedule
from softwidth.train import FitConfig, fit
from .data import CropBatches, load_split
from .evaluate import evaluate_scores, model_scores
from .metrics import eer
from ..experiments.budget_sizes import uniform_sizes as _shrink
from .models import HEADS, MODELS, build_model

__all__ = ["FRAMES_PER_SECOND", "TP_IMPORTANCES", "VadStudyConfig", "allocation_space", "load_run_model", "model_cost",
           "plan", "plan_torch_pruning", "run_one", "run_study", "torch_pruning_available", "uniform_sizes",
           "validation_eer"]

TP_IMPORTANCES = ("taylor", "group_norm")
"""Torch-Pruning's importance criteria the study runs; each model's report uses the one of lower validation EER."""
TORCH_PRUNING_MODELS = ("crnn", "transformer")
"""The models :mod:`softwidth_studies.vad.torch_pruning_peer` prunes."""

FRAMES_PER_SECOND = 100
VAD_SCHEDULE = Schedule(warmup=0.0, anneal_start=0.015, freeze=0.05, ordering=0.0)
"""The study's width schedule: widths learn in the first 5 % of the steps, then the network trains at its final
size. Chosen on the validation split (``scripts/schedule_pilot.py vad``, 3 seeds, cosine rate; docs/results.md):
freezing at 30 % left the dynamic models 1 (CRNN at half the FLOP/s) and 3.3 (Transformer at a quarter) EER points
behind the same sizes trained from scratch; at 10 % and 5 % the gap closes, most at 5 %. The library default
(freeze at 85 %, ordering pressure) was worse still in an earlier pilot."""


@dataclass(frozen=True)
class VadStudyConfig:
    """What the study runs. ``steps``: optimizer steps per model kind (batches of ``batch_size`` random crops of
    ``crop_frames`` frames); ``targets``: relative FLOP/s budgets of the dynamic runs; ``band_targets``: of the
    band-only runs (every seed; phase 2 adds the fixed-size and pruned models at their sizes); ``schedule``:
    :data:`VAD_SCHEDULE`; ``absolute_targets``: one budget run in FLOP/s per model kind (seed ``seeds[0]``; the
    Transformer's attention alone costs more than 1 MFLOP/s at its smallest width); ``mel_shape_grad``: the mel
    bank's :class:`~softwidth.layers.LogMel` ``shape_grad`` in the width-learning runs (``False``: the band count
    learns through the gate only, chosen on the validation split, docs/method.md); ``width_optimizer``: the widths'
    optimizer in ``fit`` (:class:`~softwidth.FitConfig`; ``"shared"``, chosen on the validation split by
    ``scripts/width_pilot.py``); ``restart``: the dynamic runs' weights are re-initialised at the freeze
    (``FitConfig.restart``; chosen on the validation split with the optimizer, docs/method.md point 13)."""

    corpus: str = ""
    models: tuple[str, ...] = ("crnn", "transformer")
    sizes: dict = field(default_factory=lambda: {"crnn": {"conv1": 48, "conv2": 48, "hidden": 48},
                                                 "transformer": {"ff1": 128, "ff2": 128}})
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    targets: tuple[float, ...] = (0.5, 0.25, 0.125)
    band_targets: dict = field(default_factory=lambda: {"crnn": (0.75, 0.72), "transformer": (0.25,)})
    absolute_targets: dict = field(default_factory=lambda: {"crnn": 1e6})
    steps: dict = field(default_factory=lambda: {"crnn": 1200, "transformer": 700})
    epochs: int = 8
    batch_size: int = 32
    crop_frames: int = 200
    lr: float = 3e-3
    finetune_steps: int = 200
    kappa_min: float = 1 / 16
    schedule: Schedule = field(default_factory=lambda: VAD_SCHEDULE)
    lr_decay: str = "cosine"
    mel_shape_grad: bool = False
    width_optimizer: str = "shared"
    restart: bool = True
    workers: int = 2

    @classmethod
    def quick(cls, corpus: str = "") -> VadStudyConfig:
        """A two-minute version on the small corpus: one seed, one budget, short training."""
        return cls(corpus=corpus, seeds=(0,), targets=(0.25,), band_targets={"crnn": (), "transformer": ()},
                   steps={"crnn": 150, "transformer": 90}, epochs=3, finetune_steps=40)


def model_cost(kind: str, sizes: dict) -> dict:
    """Exact cost of the consolidated model of ``kind`` at ``sizes``: ``{"flops_per_s", "params"}``."""
    return dict(_cost(kind, tuple(sorted(sizes.items()))))


@lru_cache(maxsize=4096)
def _cost(kind: str, sizes: tuple) -> tuple:
    model = build_model(kind, dict(sizes)).eval()
    profile(model, torch.zeros(1, FRAMES_PER_SECOND, 201), seconds=1.0)
    return ("flops_per_s", float(flops_per_second(model).detach())), ("params", int(params(model)))


def allocation_space(kind: str, config: VadStudyConfig) -> tuple[dict, dict, dict]:
    """``(full sizes, floors, steps)`` of model ``kind``: the sizes its dynamic runs can reach (each width at least
    ``kappa_min`` of its full size, the Transformer's bands in multiples of its heads)."""
    full = {**MODELS[kind].defaults, **config.sizes[kind]}
    steps = {"bands": HEADS} if kind == "transformer" else {}
    floors = {n: max(steps.get(n, 1), math.ceil(config.kappa_min * s / steps.get(n, 1)) * steps.get(n, 1))
              for n, s in full.items()}
    return full, floors, steps


def uniform_sizes(kind: str, target: float, config: VadStudyConfig) -> dict:
    """The uniform shrink of model ``kind`` to ``target`` (a share of its full model's FLOP/s): every width times
    the largest common factor that fits (:func:`~softwidth_studies.experiments.budget_sizes.uniform_sizes`)."""
    full, floors, steps = allocation_space(kind, config)

    def cost(sizes: dict) -> float:
        return model_cost(kind, sizes)["flops_per_s"]

    return _shrink(full, cost, target * cost(full), floors=floors, steps=steps)


def _loss(model: nn.Module, batch) -> torch.Tensor:
    power, labels = batch
    return F.binary_cross_entropy_with_logits(model(power), labels)


MEL_PRICE = "sparse"  # how LogMel.cost prices the filter bank (its nonzeros); part of every run's key
TRAINING_FIELDS = ("corpus", "sizes", "steps", "epochs", "batch_size", "crop_frames", "lr", "finetune_steps",
                   "kappa_min", "schedule")


def _key(task: dict, config: VadStudyConfig) -> str:
    """A run's storage key: the task and every setting that changes how it trains (not seeds/targets lists)."""
    settings = {name: asdict(config)[name] for name in TRAINING_FIELDS}
    # every record stores its FLOP/s: runs stored before the mel bank was priced by its nonzeros (LogMel.cost)
    # carry the dense price, so none of them is reused
    settings["mel_price"] = MEL_PRICE
    if config.lr_decay != "constant":  # keys of runs trained before the field (constant rate) stay valid
        settings["lr_decay"] = config.lr_decay
    if task["kind"] in ("dynamic", "bands"):  # only these runs learn widths
        if not config.mel_shape_grad:
            settings["mel_shape_grad"] = False
        # price-aware width learning (shared-scale width steps, budget projection, proportional rounding, sparse
        # mel price): runs stored before it learned widths another way
        settings["width_method"] = 2
        settings["width_optimizer"] = config.width_optimizer
        if config.restart:
            settings["restart"] = True
    return run_key(task, settings)


def load_run_model(out: Path, task: dict, record: dict, config: VadStudyConfig) -> nn.Module:
    """The consolidated model of a stored run: from the run store (``out/runs/<key>.pt``, loaded with
    ``weights_only=True``), else from the ranked models kept with the report (``out/models/<key>/``, safetensors)."""
    plain = consolidate(build_model(record["model"], record["sizes"]).eval())
    key = _key(task, config)
    path = out / "runs" / f"{key}.pt"
    if path.exists():
        state = torch.load(path, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(out / "models" / key / "model.safetensors"))
    plain.load_state_dict(state)
    return plain.eval()


def _train(task: dict, config: VadStudyConfig, splits, out_dir: Path | None = None,
           restart=None) -> tuple[nn.Module, dict]:
    kind, seed = task["model"], task["seed"]
    torch.manual_seed(seed)
    sizes = {**config.sizes[kind], **task.get("sizes", {})}
    dynamic = {"dynamic": "all", "bands": ("bands",)}.get(task["kind"], ())
    model = build_model(kind, sizes, dynamic=dynamic, kappa_min=config.kappa_min)
    model.mel.shape_grad = config.mel_shape_grad
    profile(model, torch.zeros(1, FRAMES_PER_SECOND, 201), seconds=1.0)
    term = None
    if task["kind"] in ("dynamic", "bands"):
        absolute = task.get("absolute", False)
        term = BudgetController(model, target=task["target"], relative=not absolute)
    steps = max(1, int(config.steps[kind] * task.get("steps_share", 1.0)))
    batches = CropBatches(splits["train"], batch_size=config.batch_size, frames=config.crop_frames, seed=seed,
                          limit=max(1, steps // config.epochs))
    result = fit(model, batches, loss_fn=_loss, cost_term=term,
                 out_dir=out_dir, tensorboard=False,
                 config=FitConfig(epochs=config.epochs, lr=config.lr, schedule=config.schedule,
                                   lr_decay=config.lr_decay, progress=False, width_optimizer=config.width_optimizer,
                                   restart=(restart or config.restart) if term is not None else False,
                                   trace=out_dir is not None and term is not None))
    chosen = {name: int(w["rounded"]) for name, w in result.widths.items()}
    return result.consolidated, {**sizes, **chosen}


def _finetune(model: nn.Module, config: VadStudyConfig, splits, seed: int, steps: int | None = None) -> None:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr / 3)
    model.train()
    for power, labels in CropBatches(splits["train"], batch_size=config.batch_size, frames=config.crop_frames,
                                     seed=seed + 1000, limit=config.finetune_steps if steps is None else steps):
        optimizer.zero_grad(set_to_none=True)
        _loss(model, (power, labels)).backward()
        optimizer.step()
    model.eval()


def run_one(task: dict, config: VadStudyConfig, out: Path) -> dict:
    """Train (or prune and fine-tune) and score one run; stores its consolidated weights; returns its record."""
    torch.set_num_threads(1)
    splits = {s: load_split(config.corpus, s) for s in ("train", "val", "test")}
    start = time.perf_counter()
    extra: dict = {}
    if task["kind"] == "prune":
        from .pruning import prune

        base_task, base_record = task["base_task"], task["base_record"]
        full = load_run_model(out, base_task, base_record, config)
        plain, sizes = prune(full, task["sizes"]), dict(task["sizes"])
        _finetune(plain, config, splits, task["seed"])
    elif task["kind"] == "torch_pruning":
        plain, sizes, extra = _torch_prune(task, config, splits, out)
    else:
        plain, sizes = _train(task, config, splits)
    seconds = time.perf_counter() - start
    scores = {s: model_scores(plain, splits[s]) for s in ("val", "test")}
    record = {k: v for k, v in task.items() if k not in ("base_task", "base_record")}
    record.update({"sizes": sizes, **model_cost(task["model"], sizes), "train_seconds": seconds,
                   "metrics": evaluate_scores(scores["val"], splits["val"], scores["test"], splits["test"]), **extra})
    torch.save(plain.state_dict(), out / "runs" / f"{_key(task, config)}.pt")
    return record


def _torch_prune(task: dict, config: VadStudyConfig, splits, out: Path) -> tuple[nn.Module, dict, dict]:
    """Torch-Pruning's pruning of the half-trained baseline to ``task["target"]``, fine-tuned the other half."""
    from .torch_pruning_peer import tp_prune

    kind = task["model"]
    full = load_run_model(out, task["base_task"], task["base_record"], config)
    budget = task["target"] * model_cost(kind, task["base_record"]["sizes"])["flops_per_s"]
    batches = CropBatches(splits["train"], batch_size=config.batch_size, frames=config.crop_frames,
                          seed=task["seed"] + 2000, limit=8)
    plain, info = tp_prune(full, budget, batches, task["importance"],
                           lambda sizes: model_cost(kind, sizes)["flops_per_s"])
    steps = config.steps[kind] - int(config.steps[kind] * task["base_task"]["steps_share"])
    _finetune(plain, config, splits, task["seed"], steps)
    return plain, dict(info["sizes"]), {"torch_pruning": {k: v for k, v in info.items() if k != "sizes"}}


def validation_eer(task: dict, config: VadStudyConfig, out_dir: str | os.PathLike | None = None, *,
                   restart=None) -> tuple[dict, float]:
    """Train one run as :func:`run_one` does and score it on the validation split only, so that pilots choose the
    study's settings without reading the test split: ``(chosen sizes, frame-level EER in %)``. Nothing is stored,
    unless ``out_dir`` is given: then ``fit`` writes its log, checkpoints and (for width-learning runs) its width
    trace ``trace.csv`` there. ``restart``: a callable ``restart(net)`` that re-initialises a width-learning run's
    consolidated model at the freeze instead of ``config.restart``'s rule (``FitConfig.restart``)."""
    torch.set_num_threads(1)
    splits = {s: load_split(config.corpus, s) for s in ("train", "val")}
    plain, sizes = _train(task, config, splits, Path(out_dir) if out_dir is not None else None, restart)
    scores = model_scores(plain, splits["val"])
    return sizes, 100 * eer(scores.ravel(), splits["val"].labels.ravel())


def plan(config: VadStudyConfig) -> list[dict]:
    """Phase-1 tasks: baselines, dynamic budget runs and the uniform shrinks to the same budgets (every seed), band-only
    runs, the absolute-budget run; with the ``prune`` extra, the half-trained baselines Torch-Pruning starts from."""
    tasks = []
    for kind in config.models:
        for seed in config.seeds:
            tasks.append({"model": kind, "kind": "baseline", "seed": seed})
            for target in config.targets:
                tasks.append({"model": kind, "kind": "dynamic", "seed": seed, "target": target})
                tasks.append({"model": kind, "kind": "fixed", "seed": seed, "target": target,
                              "sizes": uniform_sizes(kind, target, config), "of": "uniform"})
            if kind in TORCH_PRUNING_MODELS and torch_pruning_available():
                tasks.append({"model": kind, "kind": "baseline", "seed": seed, "steps_share": 0.5})
        for target in config.band_targets.get(kind, ()):
            for seed in config.seeds:
                tasks.append({"model": kind, "kind": "bands", "seed": seed, "target": target})
        if kind in config.absolute_targets:
            tasks.append({"model": kind, "kind": "dynamic", "seed": config.seeds[0],
                          "target": config.absolute_targets[kind], "absolute": True})
    return tasks


def _check_budgets(tasks: list[dict], config: VadStudyConfig) -> None:
    """Raise :class:`SoftWidthError` for a budget no run can meet: below the cost of its model with every trainable
    width at its floor (e.g. a band-only target under the cost of the convolutions and GRU alone)."""
    seen = set()
    for task in tasks:
        point = (task["model"], task["kind"], task.get("target"), task.get("absolute", False))
        if task["kind"] not in ("dynamic", "bands") or point in seen:
            continue
        seen.add(point)
        dynamic = "all" if task["kind"] == "dynamic" else ("bands",)
        model = build_model(task["model"], config.sizes[task["model"]], dynamic=dynamic, kappa_min=config.kappa_min)
        profile(model, torch.zeros(1, FRAMES_PER_SECOND, 201), seconds=1.0)
        try:
            BudgetController(model, target=task["target"], relative=not point[3])
        except SoftWidthError as err:
            raise SoftWidthError(f"VAD study: {task['model']} {task['kind']} run at target {task['target']:g}: {err}"
                                 ) from None


def torch_pruning_available() -> bool:
    """Whether the Torch-Pruning peer can run (the ``prune`` extra: ``pip install "softwidth-studies[prune]"``)."""
    import importlib.util

    return (importlib.util.find_spec("torch_pruning") is not None
            and importlib.util.find_spec(f"{__package__}.torch_pruning_peer") is not None)


def plan_torch_pruning(records: list[tuple[dict, dict]]) -> list[dict]:
    """Phase-2 Torch-Pruning tasks: per model, seed, relative target and importance, the half-trained baseline
    (``"steps_share": 0.5``) of that seed pruned to the target."""
    halves = {(t["model"], t["seed"]): (t, r) for t, r in records
              if t["kind"] == "baseline" and t.get("steps_share") == 0.5}
    tasks = []
    for t, _ in records:
        if t["kind"] != "dynamic" or t.get("absolute") or (t["model"], t["seed"]) not in halves:
            continue
        base_task, base_record = halves[(t["model"], t["seed"])]
        for importance in TP_IMPORTANCES:
            tasks.append({"model": t["model"], "kind": "torch_pruning", "seed": t["seed"], "target": t["target"],
                          "importance": importance, "base_task": base_task,
                          "base_record": {"model": base_record["model"], "sizes": base_record["sizes"]}})
    return tasks


def run_study(config: VadStudyConfig, out_dir: str | os.PathLike = "results/vad", *, progress: bool = True,
              resume: bool = True, peers: bool = True) -> dict:
    """Run every phase, score the peers and write ``out_dir/results.json``, the report and every ranked model
    (``out_dir/models/<run key>/``, :func:`~softwidth_studies.vad.ranked.save_ranked_models`); returns the results."""
    if not config.corpus:
        raise SoftWidthError("VadStudyConfig.corpus is empty: build a corpus with `softwidth data build vad`")
    unknown = set(config.models) - set(MODELS)
    if unknown:
        raise SoftWidthError(f"unknown VAD models {sorted(unknown)}; choose from {sorted(MODELS)}")
    tasks = plan(config)
    _check_budgets(tasks, config)  # before hours of training, not when the run that cannot meet it starts
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for split in ("train", "val", "test"):  # spectra cached once, before the workers start
        load_split(config.corpus, split, progress=progress)
    common = {"key": _key, "workers": config.workers, "resume": resume, "progress": progress}
    first = run_all(tasks, run_one, config, out, desc="vad runs", **common)
    second = run_all(plan_phase2([(t, r) for t, r in first if not t.get("steps_share")]) + plan_torch_pruning(first),
                     run_one, config, out, desc="vad fixed+pruned", **common)
    runs = [r for _, r in first + second]
    peer_results = {}
    if peers:
        from .peers import score_peers

        peer_results = score_peers(config.corpus, progress=progress)
    from .timing import real_time_factors

    rtf = real_time_factors(out, first, config, peer_results, load_run_model)
    results = save_results(out, config, started, runs=runs, peers=peer_results, rtf=rtf)
    from .ranked import save_ranked_models
    from .report import write_report

    write_report(results, out)
    save_ranked_models(out, first + second, key=lambda task: _key(task, config),  # kept with the report
                       load=lambda task, record: load_run_model(out, task, record, config))
    return results


def config_from_results(results: dict) -> VadStudyConfig:
    raw = dict(results["config"])
    for name in ("models", "seeds", "targets"):
        raw[name] = tuple(raw[name])
    raw["band_targets"] = {k: tuple(v) for k, v in raw["band_targets"].items()}
    raw["schedule"] = Schedule(**raw["schedule"])
    raw.setdefault("lr_decay", "constant")  # results written before the field trained at a constant rate
    raw.setdefault("mel_shape_grad", True)  # and before this one with the gradient through the filter shapes
    raw.setdefault("width_optimizer", "adam")  # and before this one with an Adam group per width
    raw.setdefault("restart", False)  # and before this one kept the full-size weights after the freeze
    return replace(VadStudyConfig(), **raw)
