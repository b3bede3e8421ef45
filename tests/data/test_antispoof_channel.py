"""Tests of softwidth_studies.data.antispoof_channel: the shared channel makes a clean full-band clip and a
band-limited noisy one alike; trimming; the statistics and the EER against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from softwidth_studies.data.antispoof_channel import (
    Channel,
    bandwidth_hz,
    clip_statistics,
    draw_channel,
    equal_error_rate,
    logistic_regression,
    neutralise,
    trim,
)

SR = 16000


def speechlike(rng: np.random.Generator, seconds: float, f0: float = 140.0) -> np.ndarray:
    """Full-band harmonic syllables (0.15-0.3 s) with short gaps: a stand-in for speech."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, int(7800 / f0)))
    x = x + 0.3 * rng.standard_normal(n)
    env, i = np.zeros(n), 0
    while i < n:
        on, off = int(rng.uniform(0.15, 0.3) * SR), int(rng.uniform(0.05, 0.15) * SR)
        env[i: i + on] = np.hanning(on)[: n - i]
        i += on + off
    return (0.1 * x * env).astype(np.float32)


def band_limited_noisy(x: np.ndarray, rng: np.random.Generator, cutoff: float = 5000, snr_db: float = 30):
    y = sosfiltfilt(butter(8, cutoff, fs=SR, output="sos"), x)
    return (y + np.sqrt(np.mean(y**2)) / 10 ** (snr_db / 20) * rng.standard_normal(len(y))).astype(np.float32)


@pytest.mark.parametrize("cutoff", [3600.0, 4500.0])  # a GSM and a Vorbis channel
def test_neutralise_makes_clean_and_channel_coloured_clips_alike(cutoff):
    rng = np.random.default_rng(0)
    clean = speechlike(rng, 4.0)
    noisy = band_limited_noisy(clean, rng)
    before = clip_statistics(clean), clip_statistics(noisy)
    assert before[0]["bandwidth_hz"] == 8000 and before[0]["rolloff95_hz"] > 1.5 * before[1]["rolloff95_hz"]
    channel = Channel(cutoff, 100.0, 35.0, 1.0, 0.4, -26.0)
    a, b = (clip_statistics(neutralise(x, channel, np.random.default_rng(1))) for x in (clean, noisy))
    # Stated tolerances: level 0.1 dB of the target, bandwidth 250 Hz, roll-off 10 %, energy above 4 kHz 2 dB,
    # silence ratio 0.05.
    assert a["rms_dbfs"] == pytest.approx(-26.0, abs=0.1) and b["rms_dbfs"] == pytest.approx(-26.0, abs=0.1)
    assert abs(a["bandwidth_hz"] - b["bandwidth_hz"]) <= 250 and a["bandwidth_hz"] <= cutoff + 500
    for key in ("rolloff95_hz", "rolloff99_hz"):
        assert a[key] == pytest.approx(b[key], rel=0.1)
    assert abs(a["above_4k_db"] - b["above_4k_db"]) <= 2.0
    assert abs(a["silence_ratio"] - b["silence_ratio"]) <= 0.05


def test_neutralise_keeps_length_limits_peak_and_is_deterministic():
    x = speechlike(np.random.default_rng(2), 2.0)
    channel = Channel(6000.0, 80.0, 30.0, 0.5, 0.3, -6.0)  # loud target: the peak limiter must act
    y = neutralise(x, channel, np.random.default_rng(3))
    assert y.dtype == np.float32 and y.shape == x.shape and np.abs(y).max() <= 0.99 + 1e-6
    assert np.array_equal(y, neutralise(x, channel, np.random.default_rng(3)))
    assert not np.array_equal(y, neutralise(x, channel, np.random.default_rng(4)))  # another noise floor


def test_draw_channel_ranges_and_codec_choice():
    rng = np.random.default_rng(0)
    for cutoff, codec in ((3500.0, "gsm"), (6500.0, "vorbis")):
        c = draw_channel(rng, cutoff)
        assert c.cutoff_hz == cutoff and c.codec == codec
        assert 50 <= c.highpass_hz <= 150 and 25 <= c.snr_db <= 45 and -32 <= c.level_dbfs <= -22


def test_trim_drops_edges_and_shortens_pauses():
    rng = np.random.default_rng(0)
    burst = (0.2 * rng.standard_normal(SR // 2)).astype(np.float32)
    quiet = np.zeros(SR, np.float32)
    x = np.concatenate([quiet, burst, quiet, burst, quiet])  # 1 s silences around and between 0.5 s bursts
    y = trim(x)
    assert len(y) == pytest.approx(SR // 2 * 2 + int(0.25 * SR), abs=SR // 100)
    assert np.abs(y[: SR // 100]).max() > 0 and np.abs(y[-SR // 100:]).max() > 0
    assert len(trim(np.zeros(50, np.float32))) == 0


def test_bandwidth_and_statistics_of_known_signals():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(4 * SR)
    low = sosfiltfilt(butter(10, 3000, fs=SR, output="sos"), noise)
    low /= np.sqrt(np.mean(low**2))
    assert 3000 <= bandwidth_hz(low) <= 4000 and bandwidth_hz(noise) == 8000  # -50 dB point of the slope
    stats = clip_statistics(low * 0.1)
    assert stats["duration_s"] == 4.0 and stats["rms_dbfs"] == pytest.approx(-20.0, abs=0.3)
    assert stats["above_4k_db"] < -40 and stats["rolloff99_hz"] < 3200 and stats["silence_ratio"] == 0.0


def test_equal_error_rate_against_sklearn_roc():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = rng.standard_normal(400) + 1.2 * labels
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert equal_error_rate(scores, labels) == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=0.01)
    assert equal_error_rate(labels.astype(float), labels) == 0.0
    assert equal_error_rate(-labels.astype(float), labels) == 1.0
    assert np.isnan(equal_error_rate(scores, np.ones(400)))


def test_logistic_regression_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    y = (x @ [2.0, -1.0, 0.0] + 0.5 * rng.standard_normal(300) > 0).astype(float)
    w = logistic_regression(x, y, l2=1e-2)
    ref = linear_model.LogisticRegression(C=1 / 1e-2).fit(x, y)  # sklearn does not penalise the bias
    np.testing.assert_allclose(w[:-1], ref.coef_[0], rtol=0.05, atol=0.05)
