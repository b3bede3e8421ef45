"""Frame-level detection metrics: ROC, EER, AUROC and F1 from scores and 0/1 labels.

Scores are "higher = more speech". Tied scores are handled as one ROC step (a binary detector such as a WebRTC
VAD mode gives a three-point ROC), so AUROC equals the probability that a random speech frame scores above a
random non-speech frame, ties counting one half.
"""

from __future__ import annotations

import numpy as np

from softwidth.errors import SoftWidthError

__all__ = ["auroc", "best_f1_threshold", "eer", "f1_at", "frame_metrics", "roc"]


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise SoftWidthError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if not np.isfinite(s).all():
        raise SoftWidthError("scores must be finite")
    if y.all() or not y.any():
        raise SoftWidthError("labels need both classes (speech and non-speech frames)")
    return s, y


def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, from (0, 0) to (1, 1); threshold ``t`` means "speech if score >= t"."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auroc(scores, labels) -> float:
    """Area under the ROC curve (trapezoids: ties count one half)."""
    fpr, tpr, _ = roc(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def eer(scores, labels) -> float:
    """Equal error rate (fraction): where the miss rate ``1 - tpr`` meets the false-alarm rate ``fpr``,
    linearly interpolated between ROC points."""
    fpr, tpr, _ = roc(scores, labels)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1
    i = int(np.flatnonzero(diff <= 0)[0])
    if i == 0 or diff[i] == 0:
        return float(fpr[i])
    a = diff[i - 1] / (diff[i - 1] - diff[i])  # crossing between point i-1 and i
    return float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))


def f1_at(scores, labels, threshold: float) -> float:
    """F1 of the speech class when frames with ``score >= threshold`` are called speech."""
    s, y = _check(scores, labels)
    pred = s >= threshold
    tp = float((pred & y).sum())
    denom = float(pred.sum() + y.sum())
    return 2 * tp / denom if denom else 0.0


def best_f1_threshold(scores, labels) -> float:
    """The threshold that maximises F1 (chosen on a validation split, then applied to the test split)."""
    fpr, tpr, thresholds = roc(scores, labels)
    _, y = _check(scores, labels)
    pos, neg = y.sum(), (~y).sum()
    tp, fp = tpr * pos, fpr * neg
    f1 = np.where(tp > 0, 2 * tp / (tp + fp + pos), 0.0)
    return float(thresholds[1:][int(np.argmax(f1[1:]))])


def frame_metrics(scores, labels, threshold: float) -> dict:
    """``{"eer", "auroc", "f1", "frames", "speech_frames"}`` (EER and F1 as fractions)."""
    s, y = _check(scores, labels)
    return {"eer": eer(s, y), "auroc": auroc(s, y), "f1": f1_at(s, y, threshold), "frames": int(s.size),
            "speech_frames": int(y.sum())}
