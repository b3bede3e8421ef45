"""Sweeps: many trainings of one case study over trade-off weights, budget targets and kappa_min; a Pareto CSV.

A case study plugs in one function, ``run_point(point, out_dir) -> {"flops", "params", "quality", ...}``:
``point`` is a dict with ``weight`` (or ``None``), ``target`` (or ``None``), ``kappa_min`` (or ``None``),
``seed`` and any case-study options; ``out_dir`` is a folder of its own for the point's files; the result
holds the consolidated model's ``flops`` (FLOP/s of audio), ``params`` and ``quality`` (lower is better:
a loss, an error rate, an EER), plus anything JSON-able the case study wants to keep::

    sw.sweep.register_case_study("vad", run_vad_point)
    points = sw.sweep.grid(weights=(0.1, 0.3, 1.0), kappa_min=(0.05, 0.125), seeds=(0, 1), epochs=20)
    rows = sw.sweep.sweep("vad", points, "results/sweep_vad")                   # local process pool
    rows = sw.sweep.sweep("vad", points, "results/sweep_vad", backend="ray")    # a Ray cluster (Ray Tune)

``sweep`` writes ``out_dir/pareto.csv`` (one row per point, columns :data:`COLUMNS`, ``pareto`` = 1 on the
front of lowest FLOP/s and lowest quality), ``out_dir/pareto.png`` and ``out_dir/points/<key>.json`` (every
finished point; ``resume=True`` reuses them). The synthetic case study is registered as ``"synthetic"``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from softwidth.errors import SoftWidthError, is_number

__all__ = ["BACKENDS", "COLUMNS", "grid", "pareto_front", "register_case_study", "sweep"]

COLUMNS = ("case_study", "point", "seed", "weight", "target", "kappa_min", "flops", "params", "quality",
           "pareto", "error")
"""The fixed columns of ``pareto.csv``, in order."""
BACKENDS = ("local", "ray")

RunPoint = Callable[[dict, Path], dict]
_CASE_STUDIES: dict[str, RunPoint] = {}


def register_case_study(name: str, run_point: RunPoint) -> None:
    """Make ``run_point(point, out_dir) -> {"flops", "params", "quality", ...}`` sweepable as ``name``.

    For the local pool (``fork``) any callable works; Ray ships ``run_point`` to its workers by value
    (cloudpickle), so it must not hold unpicklable state.
    """
    if not isinstance(name, str) or not name:
        raise SoftWidthError(f"register_case_study: name must be a non-empty string, got {name!r}")
    if not callable(run_point):
        raise SoftWidthError(f"register_case_study: {name!r}: run_point must be callable")
    _CASE_STUDIES[name] = run_point


def grid(*, weights: Iterable[float] = (), targets: Iterable[float] = (), kappa_min: Iterable[float | None] = (None,),
         seeds: Iterable[int] = (0,), **options) -> list[dict]:
    """Every combination of (``weights`` or ``targets``) x ``kappa_min`` x ``seeds`` as point dicts.

    Each point has the keys ``weight``, ``target``, ``kappa_min``, ``seed`` (``None`` where unused) and the
    case-study ``options`` (e.g. ``epochs=5``). Raises :class:`SoftWidthError` for no weight and no target,
    a negative weight, a target outside (0, 1] or a kappa_min outside (0, 1].
    """
    weights, targets, kappas, seeds = list(weights), list(targets), list(kappa_min), list(seeds)
    if not weights and not targets:
        raise SoftWidthError("grid: give at least one weight or one target")
    for w in weights:
        if not is_number(w) or w < 0:
            raise SoftWidthError(f"grid: weights must be finite numbers >= 0, got {w!r}")
    for t in targets:
        if not is_number(t) or not 0 < t <= 1:
            raise SoftWidthError(f"grid: targets are fractions of the full cost in (0, 1], got {t!r}")
    for k in kappas:
        if k is not None and (not is_number(k) or not 0 < k <= 1):
            raise SoftWidthError(f"grid: kappa_min must be None or in (0, 1], got {k!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise SoftWidthError(f"grid: seeds must be a non-empty list of ints, got {seeds!r}")
    terms = [{"weight": float(w), "target": None} for w in weights] + [{"weight": None, "target": float(t)} for t in targets]
    return [{**term, "kappa_min": k, "seed": s, **options} for k in kappas for s in seeds for term in terms]


def sweep(case_study: str, points: Sequence[dict], out_dir: str | os.PathLike, *, backend: str = "local",
          workers: int = 2, resume: bool = False, progress: bool = True) -> list[dict]:
    """Run ``points`` of ``case_study`` and write ``pareto.csv``, ``pareto.png`` and ``points/`` under ``out_dir``.

    ``backend="local"`` runs ``workers`` processes (1: in this process); ``"ray"`` runs one Ray Tune trial
    per point on the cluster ``ray.init()`` connects to (a local one with ``workers`` CPUs if none is
    running; needs ``softwidth-studies[ray]``). A point that raises is kept with its ``error`` and no numbers
    (and run again with ``resume=True``).
    Returns the rows of ``pareto.csv`` as dicts, in the order of ``points``.
    """
    if case_study not in _CASE_STUDIES:
        raise SoftWidthError(f"sweep: unknown case study {case_study!r}; registered: {sorted(_CASE_STUDIES)}")
    if backend not in BACKENDS:
        raise SoftWidthError(f"sweep: backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SoftWidthError(f"sweep: workers must be an int >= 1, got {workers!r}")
    points = [dict(p) for p in points]
    if not points:
        raise SoftWidthError("sweep: no points to run")
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    keys = [_key(case_study, p) for p in points]
    results: dict[str, dict] = {}
    for key in keys:
        cached = _cached(out, key) if resume else None
        if cached is not None:
            results[key] = cached
    todo = [(k, p) for k, p in zip(keys, points) if k not in results]
    runner = _run_ray if backend == "ray" else _run_local
    for key, point, result in runner(case_study, todo, out, workers, progress):
        results[key] = result
        _store(out, key, case_study, point, result)
    rows = _rows(case_study, points, keys, results)
    _write_csv(out / "pareto.csv", rows)
    _plot(out / "pareto.png", rows, case_study)
    return rows


def pareto_front(rows: Sequence[dict]) -> list[bool]:
    """For each row, whether no other row has ``flops`` and ``quality`` both <= (one <) its own.

    Rows without finite ``flops`` and ``quality`` (failed points) are never on the front.
    """
    ok = [r.get("flops") is not None and r.get("quality") is not None
          and math.isfinite(r["flops"]) and math.isfinite(r["quality"]) for r in rows]
    front = []
    for i, r in enumerate(rows):
        if not ok[i]:
            front.append(False)
            continue
        dominated = any(ok[j] and rows[j]["flops"] <= r["flops"] and rows[j]["quality"] <= r["quality"]
                        and (rows[j]["flops"] < r["flops"] or rows[j]["quality"] < r["quality"])
                        for j in range(len(rows)) if j != i)
        front.append(not dominated)
    return front


# -- running points ------------------------------------------------------------------------------------------
def _call(run_point: RunPoint, case_study: str, point: dict, folder: str, threads: int | None) -> dict:
    """Run one point; an exception becomes ``{"error": ...}`` so one bad point does not end the sweep."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # one core per pooled worker: the machines have few
    try:
        result = run_point(dict(point), Path(folder))
    except Exception as err:  # noqa: BLE001 - recorded in the CSV, the sweep goes on
        return {"error": f"{type(err).__name__}: {err}"[:500]}
    return _checked(case_study, result)


def _checked(case_study: str, result) -> dict:
    if not isinstance(result, dict):
        return {"error": f"{case_study} run_point returned {type(result).__name__}, not a dict"}
    bad = [k for k in ("flops", "params", "quality") if not is_number(result.get(k))]
    if bad:
        return {"error": f"{case_study} run_point result lacks finite numbers for {bad}"}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as err:
        return {"error": f"{case_study} run_point result is not JSON-able: {err}"}
    return result


def _run_local(case_study: str, todo: list, out: Path, workers: int, progress: bool):
    run_point = _CASE_STUDIES[case_study]
    bar = tqdm(total=len(todo), desc=f"sweep {case_study}", unit="point", disable=not progress)
    if workers == 1 or len(todo) <= 1:
        for key, point in todo:
            yield key, point, _call(run_point, case_study, point, str(out / "points" / key), None)
            bar.update()
    else:
        import multiprocessing

        # fork: registered case studies (and lambdas) exist in the workers without being pickled
        context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
            futures = {pool.submit(_call_registered, case_study, point, str(out / "points" / key)): (key, point)
                       for key, point in todo}
            for future in as_completed(futures):
                key, point = futures[future]
                yield key, point, future.result()
                bar.update()
    bar.close()


def _call_registered(case_study: str, point: dict, folder: str) -> dict:
    return _call(_CASE_STUDIES[case_study], case_study, point, folder, 1)


def _run_ray(case_study: str, todo: list, out: Path, workers: int, progress: bool):
    try:
        import ray
        from ray import tune
    except ModuleNotFoundError:
        raise SoftWidthError("sweep: backend='ray' needs Ray Tune: pip install 'softwidth-studies[ray]'") from None
    if not todo:
        return
    run_point = _CASE_STUDIES[case_study]
    started = not ray.is_initialized()
    if started:  # no cluster to join: a local one (ray.init(address=...) before sweep() joins a cluster)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    folders = [str((out / "points" / key).resolve()) for key, _ in todo]
    points = [p for _, p in todo]

    def trainable(config: dict) -> dict:
        i = config["index"]
        return _call(run_point, case_study, points[i], folders[i], 1)

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"index": tune.grid_search(list(range(len(todo))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=workers),
        run_config=tune.RunConfig(name="sweep", storage_path=str((out / "ray").resolve()), verbose=1 if progress else 0),
    )
    try:
        grid_results = tuner.fit()
        by_index = {}
        for result in grid_results:
            i = result.config["index"]
            if result.error is not None:
                by_index[i] = {"error": f"{type(result.error).__name__}: {result.error}"[:500]}
            else:
                by_index[i] = _strip(result.metrics)
    finally:
        if started:
            ray.shutdown()
    for i, (key, point) in enumerate(todo):
        yield key, point, by_index.get(i, {"error": "Ray Tune returned no result for this point"})


_RAY_KEYS = ("time_this_iter_s", "done", "training_iteration", "trial_id", "date", "timestamp", "time_total_s",
             "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
             "checkpoint_dir_name", "experiment_tag", "should_checkpoint")


def _strip(metrics: dict) -> dict:
    """The run_point result out of Ray Tune's metrics (which add bookkeeping keys)."""
    return {k: v for k, v in metrics.items() if k not in _RAY_KEYS}


# -- files ---------------------------------------------------------------------------------------------------
def _key(case_study: str, point: dict) -> str:
    return hashlib.sha1(json.dumps({"case_study": case_study, "point": point}, sort_keys=True).encode()).hexdigest()[:16]


def _cached(out: Path, key: str) -> dict | None:
    try:
        result = json.loads((out / "points" / f"{key}.json").read_text())["result"]
    except (OSError, ValueError, KeyError):  # missing or half-written: run the point again
        return None
    return None if "error" in result else result  # a failed point is tried again


def _store(out: Path, key: str, case_study: str, point: dict, result: dict) -> None:
    path = out / "points" / f"{key}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"case_study": case_study, "point": point, "result": result}, indent=1))
    os.replace(tmp, path)


def _rows(case_study: str, points: list[dict], keys: list[str], results: dict[str, dict]) -> list[dict]:
    rows = []
    for key, point in zip(keys, points):
        result = results[key]
        rows.append({"case_study": case_study, "point": key, "seed": point.get("seed"), "weight": point.get("weight"),
                     "target": point.get("target"), "kappa_min": point.get("kappa_min"),
                     "flops": result.get("flops"), "params": result.get("params"), "quality": result.get("quality"),
                     "error": result.get("error", "")})
    for row, on_front in zip(rows, pareto_front(rows)):
        row["pareto"] = int(on_front)
    return [{c: row[c] for c in COLUMNS} for row in rows]


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    os.replace(tmp, path)


def _plot(path: Path, rows: list[dict], case_study: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if not r["error"]]
    front = sorted((r for r in done if r["pareto"]), key=lambda r: r["flops"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([r["flops"] / 1e6 for r in done], [r["quality"] for r in done], s=16, color="0.6", label="points")
    ax.step([r["flops"] / 1e6 for r in front], [r["quality"] for r in front], "o-", where="post", color="C0",
            label="Pareto front")
    if done and max(r["flops"] for r in done) > 20 * min(r["flops"] for r in done):
        ax.set_xscale("log")
    ax.set_xlabel("MFLOP/s of the consolidated model")
    ax.set_ylabel("quality (lower is better)")
    ax.set_title(f"sweep: {case_study} ({len(done)} points)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# -- the synthetic case study ----------------------------------------------------------------------------------
def _synthetic_point(point: dict, out_dir: Path) -> dict:
    """One dynamic run of the synthetic study (see :mod:`softwidth_studies.experiments.synthetic`).

    Point keys: ``weight`` or ``target``, ``kappa_min`` (floor of every width), ``seed`` and any
    :class:`~softwidth_studies.experiments.synthetic.SyntheticConfig` field (e.g. ``epochs``, ``train_size``).
    Quality: test MSE of the consolidated model (standardised targets: ~1 predicts nothing).
    """
    from dataclasses import fields

    import torch

    from softwidth.cost import params
    from .experiments.synthetic import (
        SyntheticConfig,
        make_batches,
        mse_loss,
        synthetic_data,
        build_student,
    )
    from softwidth.objective import BudgetController, CostPenalty, model_cost
    from softwidth.optim import width_modules
    from softwidth.schedule import Schedule
    from softwidth.train import FitConfig, evaluate, fit

    names = {f.name for f in fields(SyntheticConfig)}
    unknown = set(point) - names - {"weight", "target", "kappa_min", "seed"}
    if unknown:
        raise SoftWidthError(f"synthetic sweep: unknown point keys {sorted(unknown)}; use SyntheticConfig fields")
    config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in point.items() if k in names})
    (xtr, ytr), (xte, yte) = synthetic_data(config)
    seed = int(point.get("seed") or 0)
    torch.manual_seed(seed)
    model = build_student(config, init="max")
    if point.get("kappa_min") is not None:  # the floor of every width: kappa_min * max_size features
        for w in width_modules(model):
            w.min_size = max(1.0, float(point["kappa_min"]) * w.max_size)
    if point.get("target") is not None:
        term = BudgetController(model, target=float(point["target"]))
    else:
        term = CostPenalty(model, weight=float(point.get("weight") or 0.0))
    schedule = Schedule(anneal_start=config.anneal_start, freeze=config.freeze)
    result = fit(model, make_batches(xtr, ytr, config.batch_size, seed), loss_fn=mse_loss, cost_term=term,
                 config=FitConfig(epochs=config.epochs, schedule=schedule, width_travel=6.0, progress=False))
    model.eval()
    return {"flops": float(model_cost(model, "flops").detach()), "params": float(params(model).detach()),
            "quality": evaluate(result.consolidated, [(xte, yte)], mse_loss),
            "widths": {name: record["rounded"] for name, record in result.widths.items()}}


register_case_study("synthetic", _synthetic_point)
