"""Scoring a countermeasure on a corpus split: bona fide scores per clip and EER pooled, per attack, seen/unseen.

Every EER is bona fide clips against a set of spoof clips (fractions; "higher score = bona fide"): ``pooled``
against all spoofs, ``attacks[system]`` against one system's, ``seen`` / ``unseen`` against the systems that do /
do not occur in training (the corpus's ``unseen`` column).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..vad.metrics import eer
from .data import AntispoofSplit

__all__ = ["breakdown", "model_scores"]


@torch.no_grad()
def model_scores(model: nn.Module, split: AntispoofSplit, *, batch_size: int = 64) -> np.ndarray:
    """Bona fide probabilities ``(clips,)`` of ``model`` (eval mode)."""
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        x = torch.from_numpy(split.features[start:start + batch_size].astype(np.float32))
        out.append(torch.sigmoid(model(x)).numpy())
    return np.concatenate(out)


def breakdown(scores: np.ndarray, split: AntispoofSplit) -> dict:
    """``{"pooled", "seen", "unseen", "attacks": {system: eer}, "clips"}``; a group without spoofs is ``None``."""
    bona = split.labels == 1
    systems = np.array([r["system"] for r in split.rows])
    unseen = np.array([r["unseen"] == "True" for r in split.rows])

    def against(spoof: np.ndarray) -> float | None:
        if not spoof.any() or not bona.any():
            return None
        keep = bona | spoof
        return eer(scores[keep], bona[keep])

    spoof = ~bona
    return {"pooled": against(spoof), "seen": against(spoof & ~unseen), "unseen": against(spoof & unseen),
            "attacks": {s: against(systems == s) for s in split.systems}, "clips": len(split)}
