"""Shared by every benchmark: settings, the timer (warm-up, repeated blocks, min and median), the run's
environment record and the JSON writer."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils import benchmark

__all__ = ["Settings", "environment", "time_call", "time_calls", "write_result"]

SCHEMA = 1


@dataclass(frozen=True)
class Settings:
    """What every benchmark reads. ``quick``: tiny sizes and repeats (a smoke run, numbers not meaningful);
    ``min_run_time``: seconds of timed runs per measurement (after warm-up); ``corpus``: the built VAD corpus
    (its ``test`` split) for ``vad_rtf``; ``root``: the repository root (for the studies' results)."""

    quick: bool = False
    min_run_time: float = 1.0
    warmup: int = 3
    corpus: Path = Path.home() / ".cache" / "softwidth" / "corpora" / "vad-full"
    root: Path = Path(__file__).resolve().parent.parent


def time_call(fn: Callable[[], object], settings: Settings) -> dict:
    """Seconds per call of ``fn``: ``{"min_s", "median_s", "blocks", "calls"}``.

    ``settings.warmup`` untimed calls, then ``torch.utils.benchmark.Timer.blocked_autorange`` (blocks of calls
    sized so a block takes at least ~10 ms; blocks until ``min_run_time`` seconds). ``min_s`` and ``median_s``
    are over the per-call times of the blocks; the Timer runs on one thread.
    """
    for _ in range(settings.warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=settings.min_run_time)
    return {"min_s": min(m.times), "median_s": m.median, "blocks": len(m.times),
            "calls": len(m.times) * m.number_per_run}


def time_calls(fns: dict[str, Callable[[], object]], settings: Settings, rounds: int = 3) -> dict[str, dict]:
    """:func:`time_call` for several callables compared with each other, interleaved: ``rounds`` rounds, each
    timing every callable in turn (``settings.min_run_time`` seconds each), the blocks of all rounds pooled.

    A ratio of two timings then sees the same drift of a shared machine (other jobs, clock changes) on both
    sides instead of one side's minutes; ``min_s`` and ``median_s`` are over the pooled per-call block times.
    """
    for fn in fns.values():
        for _ in range(settings.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    calls = dict.fromkeys(fns, 0)
    for _ in range(1 if settings.quick else rounds):
        for name, fn in fns.items():
            timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
            m = timer.blocked_autorange(min_run_time=settings.min_run_time)
            times[name].extend(m.times)
            calls[name] += len(m.times) * m.number_per_run
    return {name: {"min_s": min(t), "median_s": statistics.median(t), "blocks": len(t), "calls": calls[name]}
            for name, t in times.items()}


def environment(settings: Settings) -> dict:
    """Date, machine, versions and thread count of this run."""
    cpu = platform.processor() or platform.machine()
    try:  # the model name says more than "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "quick": settings.quick}


def write_result(out_dir: Path, name: str, result: dict, settings: Settings) -> Path:
    """Write ``out_dir/<name>.json`` with the schema version and environment added; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"schema": SCHEMA, "name": name, "environment": environment(settings), **result}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
