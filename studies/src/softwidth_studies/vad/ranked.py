"""Every model a VAD report ranks, saved as ``models/<run key>/`` (safetensors + JSON) so a figure can be rechecked.

The run store (``out/runs/``, ``torch.save`` state dicts loaded with ``weights_only=True``) is a working cache that is
not kept under version control; :func:`save_ranked_models` writes each ranked run's consolidated model in the
package's own format (:func:`~softwidth_studies.vad.store.save_vad`: ``model.safetensors`` + ``model.json`` with the
run's task, FLOP/s, parameters and validation and test EER), which :func:`~softwidth_studies.vad.store.load_vad`
reads back, and the run's record (``record.json``), from which a study resumed without its run store reuses the run
(:func:`~softwidth_studies.experiments.runs.cached` looks in the study's own ``models/``; the allocation sweep keeps
its ranked models in its own folder for rescoring, and its runs are found there only if they are also the study's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..experiments.runs import store as store_record
from .store import save_vad

__all__ = ["save_ranked_models", "val_test_eer"]


def val_test_eer(record: dict) -> tuple[float, float]:
    """``(validation EER, pooled test EER)`` of a run record, in percent."""
    metrics = record["metrics"]
    return 100 * metrics["val"]["eer"], 100 * metrics["pooled"]["eer"]


def save_ranked_models(out: str | Path, pairs: list[tuple[dict, dict]], *, key: Callable[[dict], str],
                       load: Callable[[dict, dict], nn.Module]) -> list[Path]:
    """Save the consolidated model of every ``(task, record)`` in ``pairs`` as ``out/models/<run key>/``.

    Args:
        out: the report's folder.
        pairs: the ranked runs, as :func:`~softwidth_studies.experiments.runs.run_all` returns them.
        key: ``key(task)``, the run's storage key (the study's, with its configuration).
        load: ``load(task, record)``, the run's consolidated model (e.g. the study's ``load_run_model``).

    Returns the folders written (one per distinct run key; a folder already holding that run is rewritten).
    """
    written: dict[str, Path] = {}
    for task, record in pairs:
        name = key(task)
        if name in written:
            continue
        val, test = val_test_eer(record)
        folder = save_vad(load(task, record), Path(out) / "models" / name, kind=record["model"],
                          sizes=record["sizes"], threshold=record["metrics"]["threshold"], task=_public(task),
                          flops_per_s=record["flops_per_s"], params=record["params"], val_eer=val, test_eer=test)
        store_record(Path(out), name, task, record, path=folder / "record.json")
        written[name] = folder
    return list(written.values())


def _public(task: dict) -> dict:
    """The task without the stored base run it starts from (its key names that run)."""
    return {k: v for k, v in task.items() if k not in ("base_task", "base_record")}
