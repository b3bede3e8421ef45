"""Scoring a VAD on a corpus split: frame scores, pooled metrics, and metrics per SNR range and noise type.

The decision threshold for F1 is chosen on the validation split (best F1 there) and applied to the test split;
EER and AUROC need no threshold.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import nn

from .data import SNR_BINS, VadSplit, snr_bin
from .metrics import best_f1_threshold, frame_metrics

__all__ = ["breakdown", "evaluate_scores", "model_scores"]


@torch.no_grad()
def model_scores(model: nn.Module, split: VadSplit, *, batch_size: int = 32) -> np.ndarray:
    """Speech probabilities ``(canvases, frames)`` of ``model`` (eval mode) over whole canvases."""
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        power = torch.from_numpy(split.power[start:start + batch_size].astype(np.float32))
        out.append(torch.sigmoid(model(power)).numpy())
    return np.concatenate(out)


def breakdown(scores: np.ndarray, split: VadSplit, threshold: float) -> dict:
    """``{"pooled": {...}, "snr": {range: {...}}, "noise": {type: {...}}}`` of :func:`frame_metrics` dicts.

    Groups with only one class of frames (e.g. no canvas in that SNR range) get ``{"frames": n}`` only.
    """
    groups: dict[str, dict[str, list[int]]] = {"snr": defaultdict(list), "noise": defaultdict(list)}
    for i, row in enumerate(split.rows):
        groups["snr"][snr_bin(row["snr_db"])].append(i)
        groups["noise"][row["noise_type"]].append(i)

    def metrics(idx) -> dict:
        s, y = scores[idx].ravel(), split.labels[idx].ravel()
        if y.size == 0 or y.all() or not y.any():
            return {"frames": int(y.size)}
        return frame_metrics(s, y, threshold)

    return {"pooled": metrics(np.arange(len(split))),
            "snr": {b: metrics(groups["snr"].get(b, [])) for b in SNR_BINS},
            "noise": {k: metrics(v) for k, v in sorted(groups["noise"].items())}}


def evaluate_scores(val_scores: np.ndarray, val: VadSplit, test_scores: np.ndarray, test: VadSplit) -> dict:
    """Threshold from validation, then the test breakdown; adds ``"threshold"`` and ``"val"`` (the pooled
    validation metrics, what a sweep or pilot chooses by)."""
    threshold = best_f1_threshold(val_scores.ravel(), val.labels.ravel())
    return {"threshold": threshold, "val": frame_metrics(val_scores.ravel(), val.labels.ravel(), threshold),
            **breakdown(test_scores, test, threshold)}
