"""The channel every anti-spoofing clip goes through, and the statistics a channel shortcut would use.

Bona fide recordings here are Vorbis/GSM coded, band-limited and noisy; TTS output is clean full-band PCM
with digital silence. :func:`trim` and :func:`neutralise` are applied to both classes alike so a detector
cannot tell them apart by the channel; :func:`clip_statistics` and :func:`equal_error_rate` measure
whether it still could (the check of :func:`~softwidth_studies.data.antispoof_corpus.shortcut_eer`).
All audio is ``(samples,)`` mono at 16 kHz.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfiltfilt, welch

from .tts import SAMPLE_RATE

__all__ = ["STAT_NAMES", "Channel", "bandwidth_hz", "clip_statistics", "draw_channel", "equal_error_rate",
           "logistic_regression", "neutralise", "trim"]

_FRAME = SAMPLE_RATE // 100  # 10 ms frames for trimming


@dataclass(frozen=True)
class Channel:
    """What :func:`neutralise` does to one clip: noise floor ``snr_db`` (dB below the clip's RMS) of colour
    ``noise_slope`` (power ~ 1/f^slope: 0 white, 1 pink, 2 brown), band ``highpass_hz``-``cutoff_hz``,
    codec (GSM 06.10 at 8 kHz when ``cutoff_hz < 4000``, else Ogg Vorbis at ``vorbis_level`` in [0, 1],
    soundfile's compression level) and final level ``level_dbfs`` (RMS, dB re full scale)."""

    cutoff_hz: float
    highpass_hz: float
    snr_db: float
    noise_slope: float
    vorbis_level: float
    level_dbfs: float

    @property
    def codec(self) -> str:
        return "gsm" if self.cutoff_hz < 4000 else "vorbis"


def draw_channel(rng: np.random.Generator, cutoff_hz: float) -> Channel:
    """A random channel with the given low-pass cutoff (Hz); every other setting is drawn from ``rng``."""
    return Channel(float(cutoff_hz), float(rng.uniform(50, 150)), float(rng.uniform(25, 45)),
                   float(rng.uniform(0, 2)), float(rng.uniform(0.2, 0.7)), float(rng.uniform(-32, -22)))


def _coloured_noise(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    return np.fft.irfft(spectrum / freqs ** (slope / 2), n)


def _codec(x: np.ndarray, channel: Channel) -> np.ndarray:
    buffer = io.BytesIO()
    if channel.codec == "gsm":
        narrow = resample_poly(x, 1, 2).astype(np.float32)
        sf.write(buffer, np.clip(narrow, -1, 1), SAMPLE_RATE // 2, format="RAW", subtype="GSM610")
        buffer.seek(0)
        decoded = sf.read(buffer, dtype="float32", format="RAW", subtype="GSM610", samplerate=SAMPLE_RATE // 2,
                          channels=1)[0]
        decoded = resample_poly(decoded, 2, 1)
    else:
        sf.write(buffer, np.clip(x, -1, 1).astype(np.float32), SAMPLE_RATE, format="OGG", subtype="VORBIS",
                 compression_level=channel.vorbis_level)
        buffer.seek(0)
        decoded = sf.read(buffer, dtype="float32")[0]
    out = np.zeros(len(x))
    out[: min(len(x), len(decoded))] = decoded[: len(x)]
    return out


def neutralise(audio: np.ndarray, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """Put one clip through ``channel``: add the noise floor, band-limit (zero-phase Butterworth, order 8
    each way), codec round trip, set the level. ``(samples,)`` at 16 kHz in, float32 of the same length
    out, peak at most 0.99 (a rare loud clip is turned down rather than clipped)."""
    x = np.asarray(audio, dtype=np.float64)
    rms = math.sqrt(float(np.mean(x**2))) or 1e-4
    noise = _coloured_noise(len(x), channel.noise_slope, rng)
    x = x + noise * (rms / 10 ** (channel.snr_db / 20) / (np.sqrt(np.mean(noise**2)) + 1e-12))
    x = sosfiltfilt(butter(8, [channel.highpass_hz, channel.cutoff_hz], "bandpass", fs=SAMPLE_RATE, output="sos"), x)
    x = _codec(x / (np.abs(x).max() + 1e-9) * 0.5, channel)  # codecs want headroom, the level is set below
    x *= 10 ** (channel.level_dbfs / 20) / (math.sqrt(float(np.mean(x**2))) + 1e-12)
    peak = float(np.abs(x).max())
    return (x * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)


def bandwidth_hz(audio: np.ndarray, drop_db: float = 50.0) -> float:
    """The highest frequency (Hz) where the long-term spectrum is within ``drop_db`` of its peak."""
    freqs, power = welch(np.asarray(audio, dtype=np.float64), SAMPLE_RATE, nperseg=512)
    level = 10 * np.log10(power + 1e-20)
    return float(freqs[np.nonzero(level > level.max() - drop_db)[0].max()])


def trim(audio: np.ndarray, *, floor_db: float = 40.0, max_pause: float = 0.25) -> np.ndarray:
    """Drop leading and trailing 10 ms frames more than ``floor_db`` below the loudest frame and shorten
    inner pauses (runs of such frames) to ``max_pause`` seconds. ``(samples,)`` in and out (16 kHz)."""
    n = len(audio) // _FRAME
    if n == 0:
        return audio[:0]
    energy = 10 * np.log10(np.mean(audio[: n * _FRAME].reshape(n, _FRAME).astype(np.float64) ** 2, axis=1) + 1e-12)
    active = energy > energy.max() - floor_db
    keep, run, limit = np.zeros(n, bool), 0, int(max_pause * 100)
    first, last = np.argmax(active), n - np.argmax(active[::-1])
    for i in range(first, last):
        run = 0 if active[i] else run + 1
        keep[i] = run <= limit
    return audio[: n * _FRAME].reshape(n, _FRAME)[keep].reshape(-1)


STAT_NAMES = ("duration_s", "rms_dbfs", "silence_ratio", "rolloff95_hz", "rolloff99_hz", "above_4k_db",
              "bandwidth_hz")


def clip_statistics(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """The channel statistics a shortcut would use: duration (s), level (RMS, dBFS), silence ratio (share of
    20 ms frames more than 35 dB below the loudest), spectral roll-off at 95 and 99 % of the energy (Hz),
    energy above 4 kHz relative to the total (dB) and :func:`bandwidth_hz`. ``(samples,)`` mono."""
    x = np.asarray(audio, dtype=np.float64)
    frame = sample_rate // 50
    n = max(len(x) // frame, 1)
    energy = 10 * np.log10(np.mean(np.resize(x, n * frame).reshape(n, frame) ** 2, axis=1) + 1e-12)
    freqs, power = welch(x, sample_rate, nperseg=512)
    cumulative = np.cumsum(power) / (power.sum() + 1e-20)
    return {"duration_s": len(x) / sample_rate, "rms_dbfs": 10 * math.log10(float(np.mean(x**2)) + 1e-12),
            "silence_ratio": float(np.mean(energy < energy.max() - 35)),
            "rolloff95_hz": float(freqs[np.searchsorted(cumulative, 0.95)]),
            "rolloff99_hz": float(freqs[np.searchsorted(cumulative, 0.99)]),
            "above_4k_db": 10 * math.log10(float(power[freqs >= 4000].sum() / (power.sum() + 1e-20)) + 1e-12),
            "bandwidth_hz": bandwidth_hz(x) if sample_rate == SAMPLE_RATE else float("nan")}


def logistic_regression(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression, by Newton's method."""
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        hessian = (a * (p * (1 - p))[:, None]).T @ a + l2 * np.eye(a.shape[1])
        w -= np.linalg.solve(hessian, a.T @ (p - y) + l2 * w)
    return w


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER of ``scores`` (higher means spoof) against ``labels`` (1 spoof, 0 bona fide), in [0, 1]."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    if labels.min() == labels.max():
        return float("nan")
    thresholds = np.unique(scores)
    far = np.array([np.mean(scores[labels == 0] >= t) for t in thresholds])  # bona fide called spoof
    frr = np.array([np.mean(scores[labels == 1] < t) for t in thresholds])  # spoofs let through
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)
