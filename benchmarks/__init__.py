"""softwidth's benchmark suite (issue 9): ``python -m benchmarks [--quick] [--only NAME ...]``.

Each benchmark is a module with ``run(settings) -> dict``; ``__main__`` runs them on one thread, writes
``results/bench/<name>.json`` and regenerates ``docs/benchmarks.md``. ``consolidation_speed.py`` and
``vad_detect_memory.py`` are older stand-alone scripts (``python benchmarks/<script>.py``).
"""

from __future__ import annotations

BENCHMARKS = ("overhead", "speedup", "fidelity", "search", "vad_rtf")
