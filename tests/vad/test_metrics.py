"""Tests of softwidth_studies.vad.metrics against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softwidth.errors import SoftWidthError
from softwidth_studies.vad.metrics import auroc, best_f1_threshold, eer, f1_at, roc


def brute_auroc(s, y):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60))
def test_auroc_is_the_pairwise_probability_with_ties_as_half(pairs):
    s = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=int)
    if y.all() or not y.any():
        with pytest.raises(SoftWidthError, match="both classes"):
            auroc(s, y)
        return
    assert auroc(s, y) == pytest.approx(brute_auroc(s, y), abs=1e-12)


def test_eer_extremes_and_a_binary_detector():
    y = np.r_[np.ones(50), np.zeros(50)]
    assert eer(np.r_[np.ones(50), np.zeros(50)], y) == 0.0
    assert eer(np.r_[np.zeros(50), np.ones(50)], y) == 1.0
    # binary detector: miss rate 0.2, false-alarm rate 0.1 -> the ROC segment to (1, 1) crosses fnr = fpr
    s = np.r_[np.ones(40), np.zeros(10), np.ones(5), np.zeros(45)]
    # fnr(t) and fpr(t) along the segment from (fpr .1, tpr .8) to (1, 1): fpr = .1 + .9a, fnr = .2 - .2a
    a = 0.1 / 1.1
    assert eer(s, y) == pytest.approx(0.1 + 0.9 * a)
    assert auroc(s, y) == pytest.approx((0.8 + 0.9) / 2)


def test_eer_of_random_scores_is_about_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20000)
    assert abs(eer(rng.random(20000), y) - 0.5) < 0.02


def test_roc_is_monotone_from_origin_to_one():
    rng = np.random.default_rng(1)
    fpr, tpr, thr = roc(rng.random(300), rng.integers(0, 2, 300))
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all() and (np.diff(thr) < 0).all()


def test_best_f1_threshold_maximises_f1():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    s = y + rng.normal(0, 0.8, 500)
    t = best_f1_threshold(s, y)
    best = f1_at(s, y, t)
    assert all(f1_at(s, y, u) <= best + 1e-12 for u in np.unique(s))


def test_bad_inputs_raise():
    with pytest.raises(SoftWidthError, match="differ in size"):
        eer([0.1, 0.2], [1])
    with pytest.raises(SoftWidthError, match="finite"):
        eer([np.nan, 0.2], [1, 0])
