"""Resumable study runs: a storage key per run, a JSON record per finished run, a process pool over the rest.

A study lists its runs as JSON-able task dicts; :func:`run_all` runs those without a stored record in a process
pool (``worker(task, config, out) -> record``, a top-level function so it pickles) and stores each record as
``out/runs/<key>.json`` as soon as it finishes, so an interrupted study resumes where it stopped. The worker
writes the run's weights to ``out/runs/<key>.pt``; a record counts as done only when both files exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["METHOD_VERSION", "cached", "environment", "plan_phase2", "run_all", "run_key", "save_results", "store"]

METHOD_VERSION = 1
"""Part of every run key from version 2 on (version 1 keys are the plain hash of task and settings, as the stored
studies were made). Bump it when a change to the library changes what a stored run would train, so a study never
reuses runs of older code."""


def environment() -> dict:
    """Where a study ran: torch and Python versions, machine type, CPU count, for its ``results.json``."""
    import platform

    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}


def save_results(out: Path, config, started: float, **fields) -> dict:
    """Write ``out/results.json``: ``config`` (a dataclass), ``fields``, the date, the wall time since ``started``
    (a ``time.perf_counter()`` value) and :func:`environment`; returns the dict written."""
    import time
    from dataclasses import asdict

    results = {"config": asdict(config), **fields, "date": time.strftime("%Y-%m-%d", time.gmtime()),
               "wall_seconds": time.perf_counter() - started, "environment": environment()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def plan_phase2(records: list[tuple[dict, dict]]) -> list[dict]:
    """A case study's phase-2 tasks from its phase-1 ``(task, record)`` pairs: a fixed-size model trained from scratch,
    and the baseline of the same seed L1-pruned, at the sizes of every relative dynamic run (``"kind": "dynamic"``,
    not ``"absolute"``) and of every band-only run (``"kind": "bands"``, the VAD study; those tasks carry
    ``"of": "bands"``). A pruned task carries its baseline's task and sizes (``base_task``, ``base_record``)."""
    baselines = {(t["model"], t["seed"]): (t, r) for t, r in records if t["kind"] == "baseline"}
    tasks = []
    for t, r in records:
        if t["kind"] not in ("dynamic", "bands") or t.get("absolute"):
            continue
        point = {"model": t["model"], "seed": t["seed"], "target": t["target"], "sizes": r["sizes"]}
        if t["kind"] != "dynamic":  # only the new field: the keys of stored runs at dynamic sizes stay valid
            point["of"] = t["kind"]
        tasks.append({**point, "kind": "fixed"})
        if (t["model"], t["seed"]) in baselines:
            base_task, base_record = baselines[(t["model"], t["seed"])]
            tasks.append({**point, "kind": "prune", "base_task": base_task,
                          "base_record": {"model": base_record["model"], "sizes": base_record["sizes"]}})
    return tasks


def run_key(task: dict, settings: dict) -> str:
    """A run's storage key: a hash of the task, every setting that changes how it trains and
    :data:`METHOD_VERSION`."""
    payload = [task, settings] if METHOD_VERSION == 1 else [task, settings, METHOD_VERSION]
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cached(out: Path, key: str) -> dict | None:
    """The stored record of run ``key``, or ``None`` if it is missing, unreadable or has no weights.

    Looked up in the run store (``out/runs/<key>.json`` with ``<key>.pt``), then among the ranked models kept with
    a report (``out/models/<key>/record.json`` with ``model.safetensors``), so a study whose run store is gone (a
    fresh checkout: ``runs/`` is not versioned) still reuses every run its committed report ranks."""
    for path, weights in ((out / "runs" / f"{key}.json", out / "runs" / f"{key}.pt"),
                          (out / "models" / key / "record.json", out / "models" / key / "model.safetensors")):
        if not path.exists() or not weights.exists():
            continue
        try:
            return json.loads(path.read_text())["record"]
        except (ValueError, KeyError):
            continue
    return None


def store(out: Path, key: str, task: dict, record: dict, path: Path | None = None) -> None:
    """Write ``{"task", "record"}`` to ``path`` (default ``out/runs/<key>.json``) atomically."""
    path = out / "runs" / f"{key}.json" if path is None else Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"task": task, "record": record}))
    os.replace(tmp, path)


def run_all(tasks: list[dict], worker: Callable, config, out: Path, *, key: Callable[[dict, object], str],
            workers: int, resume: bool = True, progress: bool = True, desc: str = "runs") -> list[tuple[dict, dict]]:
    """Run every task not already stored (all if not ``resume``); returns ``[(task, record)]`` in task order."""
    done: dict[int, dict] = {}
    todo = []
    for i, task in enumerate(tasks):
        found = cached(out, key(task, config)) if resume else None
        if found is None:
            todo.append(i)
        else:
            done[i] = found
    if progress and done:  # say what a resumed study took from its store
        tqdm.write(f"{desc}: {len(done)} of {len(tasks)} runs reused from {out / 'runs'} (same keys), "
                   f"{len(todo)} to train")
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(worker, tasks[i], config, out): i for i in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="run", disable=not progress):
            i = futures[future]
            done[i] = future.result()
            store(out, key(tasks[i], config), tasks[i], done[i])
    return [(tasks[i], done[i]) for i in range(len(tasks))]
