"""``softwidth vad sweep``: how much better than a uniform shrink can any allocation of a FLOP/s budget be?

For one model of the VAD study (default the CRNN) at one relative budget (default 25 % of its full model's FLOP/s),
:func:`run_sweep` trains from scratch, as the study trains its fixed-size models (:func:`~.study.run_one`, kind
``fixed``), ``count`` allocations that lie on the budget (:func:`~softwidth_studies.experiments.budget_sizes.
allocation_design`: the uniform shrink and a scrambled Sobol design over the widths' shares), one seed each; then
retrains the ``best`` of them by validation EER and the uniform shrink with every seed, and runs the study's dynamic
runs at the same budget (and their sizes from scratch) for the learned allocation. Writes to ``out`` (default
``results/vad_sweep``): ``sweep.json`` (every allocation's sizes, FLOP/s, validation and test EER per seed, and the
summary), ``summary.md``, ``eer_vs_allocation.png`` and ``models/<run key>/`` (each ranked model, safetensors +
JSON, loadable with :func:`~.store.load_vad`). Runs are stored in ``store/runs`` (default the study's own
``results/vad/runs``), so runs the study also trains (uniform, dynamic, fixed at the learned sizes) train once, and
an interrupted sweep resumes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from softwidth.errors import SoftWidthError
from ..experiments.allocation_sweep import plot_sweep, stage_two, summarize, summary_markdown
from ..experiments.budget_sizes import allocation_design, sizes_on_budget
from ..experiments.runs import run_all
from .ranked import save_ranked_models, val_test_eer
from .study import VadStudyConfig, _key, allocation_space, load_run_model, model_cost, run_one

__all__ = ["SweepConfig", "run_sweep", "sweep_allocations"]


@dataclass(frozen=True)
class SweepConfig:
    """``model`` and relative ``target`` budget; ``count`` allocations in stage 1 (the uniform included), the
    ``best`` of them retrained with every one of ``seeds`` (the first seed is stage 1's); ``spread``: the largest
    ratio of two widths' shares in the design (:func:`allocation_design`); ``design_seed``: its scrambling."""

    model: str = "crnn"
    target: float = 0.25
    count: int = 24
    best: int = 4
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    spread: float = 8.0
    design_seed: int = 0


def sweep_allocations(study: VadStudyConfig, sweep: SweepConfig) -> tuple[list[dict], dict]:
    """The stage-1 allocations ``[{"id", "weights", "sizes"}]`` (distinct sizes, the uniform one first, id
    ``"uniform"``) and the full model's sizes. Every allocation's widths lie in the dynamic runs' range: at least
    ``kappa_min`` of the full size (the Transformer's bands a multiple of its heads)."""
    kind = sweep.model
    full, floors, steps = allocation_space(kind, study)

    def cost(sizes: dict) -> float:
        return model_cost(kind, sizes)["flops_per_s"]

    budget = sweep.target * cost(full)
    out, seen = [], set()
    for i, weights in enumerate(allocation_design(list(full), 4 * sweep.count, spread=sweep.spread,
                                                  seed=sweep.design_seed)):
        sizes = sizes_on_budget(full, cost, budget, weights, floors=floors, steps=steps)
        key = tuple(sorted(sizes.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append({"id": "uniform" if i == 0 else f"a{i:02d}", "weights": weights, "sizes": sizes,
                    "flops_per_s": cost(sizes), "budget_ratio": cost(sizes) / budget})
        if len(out) == sweep.count:
            break
    return out, full


def _fixed(kind: str, seed: int, target: float, sizes: dict, of: str) -> dict:
    task = {"model": kind, "kind": "fixed", "seed": seed, "target": target, "sizes": sizes}
    return {**task, "of": of} if of else task  # "of": "" is a fixed model at a dynamic run's sizes, as the study's


def run_sweep(study: VadStudyConfig, sweep: SweepConfig = SweepConfig(), out_dir: str | os.PathLike = "results/vad_sweep",
              store_dir: str | os.PathLike = "results/vad", *, progress: bool = True) -> dict:
    """Run both stages and the learned runs, write the outputs (module docstring); returns ``sweep.json``'s dict."""
    if sweep.model not in study.models or sweep.target not in study.targets:
        raise SoftWidthError(f"sweep: model {sweep.model!r} and target {sweep.target} must be among the study's "
                             f"models {study.models} and targets {study.targets}")
    if not 1 <= sweep.best < sweep.count:
        raise SoftWidthError(f"sweep: need 1 <= best < count, got best={sweep.best}, count={sweep.count}")
    out, store = Path(out_dir), Path(store_dir)
    (store / "runs").mkdir(parents=True, exist_ok=True)
    study = replace(study, seeds=sweep.seeds)
    allocations, full = sweep_allocations(study, sweep)
    kind, target, first = sweep.model, sweep.target, sweep.seeds[0]
    common = {"key": _key, "workers": study.workers, "progress": progress}
    dynamic = run_all([{"model": kind, "kind": "dynamic", "seed": s, "target": target} for s in sweep.seeds],
                      run_one, study, store, desc="dynamic", **common)
    stage1 = run_all([_fixed(kind, first, target, a["sizes"], "uniform" if a["id"] == "uniform" else "sweep")
                      for a in allocations], run_one, study, store, desc="stage 1", **common)
    chosen = stage_two({a["id"]: val_test_eer(r)[0] for a, (_, r) in zip(allocations, stage1)}, "uniform", sweep.best)
    by_id = {a["id"]: a for a in allocations}
    tasks2 = [_fixed(kind, s, target, by_id[name]["sizes"], "uniform" if name == "uniform" else "sweep")
              for name in chosen for s in sweep.seeds[1:]]
    tasks2 += [_fixed(kind, t["seed"], target, r["sizes"], "") for t, r in dynamic]
    stage2 = run_all(tasks2, run_one, study, store, desc="stage 2 + learned sizes", **common)
    for a in allocations:
        a["val"], a["test"], a["keys"] = {}, {}, {}
    for task, record in stage1 + stage2[: len(chosen) * (len(sweep.seeds) - 1)]:
        name = next(a["id"] for a in allocations if a["sizes"] == task["sizes"])
        by_id[name]["val"][task["seed"]], by_id[name]["test"][task["seed"]] = val_test_eer(record)
        by_id[name]["keys"][task["seed"]] = _key(task, study)
    learned = {"val": {}, "test": {}, "fixed_val": {}, "fixed_test": {}, "sizes": {}, "keys": {}}
    for (task, record), (ftask, frecord) in zip(dynamic, stage2[len(chosen) * (len(sweep.seeds) - 1):]):
        s = task["seed"]
        learned["val"][s], learned["test"][s] = val_test_eer(record)
        learned["fixed_val"][s], learned["fixed_test"][s] = val_test_eer(frecord)
        learned["sizes"][s] = record["sizes"]
        learned["keys"][s] = {"dynamic": _key(task, study), "fixed": _key(ftask, study)}
    summary = summarize(allocations, uniform="uniform", learned=learned, chosen=chosen)
    out.mkdir(parents=True, exist_ok=True)
    ranked = [(t, r) for t, r in stage1 + stage2] + list(dynamic)
    save_ranked_models(out, ranked, key=lambda task: _key(task, study),
                       load=lambda task, record: load_run_model(store, task, record, study))
    budget = (f"{kind} at {target:g} of its full model's FLOP/s ({sweep.target * model_cost(kind, full)['flops_per_s']:,.0f}"
              f" FLOP/s; full sizes {full}).")
    result = {"model": kind, "target": target, "full_sizes": full, "sweep": asdict(sweep),
              "allocations": allocations, "learned": learned, "summary": summary}
    (out / "sweep.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_markdown(f"Allocation sweep: {kind} VAD at {target:.0%} of the FLOP/s",
                                                     summary, allocations, learned, command="softwidth vad sweep",
                                                     budget=budget))
    plot_sweep(out / "eer_vs_allocation.png", allocations, learned, uniform="uniform", full=full,
               title=f"{kind} VAD, {target:.0%} of the FLOP/s: validation EER of every allocation")
    return result
