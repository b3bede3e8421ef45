"""Signal pieces of the VAD corpus: energy labels of clean speech, mixing at an SNR, procedural noise.

Labels (:func:`frame_labels`) come from each clean clip alone, 10 ms frames (160 samples at 16 kHz):

1. frame energies E (dB, mean square over the frame);
2. the clip's noise floor F = 10th percentile of E; threshold T = F + 12 dB, held between max(E) - 50 dB and
   max(E) - 18 dB, so that digital silence cannot pull T down into the dither and a clip without pauses
   cannot push T up into the speech; frames above T (and above -80 dBFS) are speech;
3. pauses shorter than 100 ms are bridged, bursts shorter than 30 ms dropped;
4. each segment starts 3 frames (30 ms) early and ends with a hangover of 10 frames (100 ms).

The constants are :data:`LABEL_RULE`, checked by frame agreement with silero-vad on the clean canvases
(:func:`softwidth_studies.data.vad_corpus.label_agreement_with_silero`): 0.934 on the tiny build (7 canvases), 0.942 on
small (26), 0.958 on full (312), seed 0. The labels are a little more generous than silero's (on full, 92 % of
our speech frames are silero speech and we cover 95 % of its speech frames): the hangover keeps word ends.
Other settings of the grid (threshold 8-16 dB over the floor, hangover 5-20 frames, bridging 10-20 frames)
moved the agreement by under 1.5 points.
"""

from __future__ import annotations

import numpy as np

from softwidth.errors import SoftWidthError

__all__ = ["FRAME", "LABEL_RULE", "PROCEDURAL", "SAMPLE_RATE", "active_power", "fade", "frame_labels",
           "mix_at_snr", "procedural_noise"]

SAMPLE_RATE = 16000  # Hz
FRAME = 160  # samples per label frame (10 ms)
LABEL_RULE = {"floor_percentile": 10, "threshold_above_floor_db": 12.0, "min_below_peak_db": 18.0,
              "max_below_peak_db": 50.0, "min_energy_db": -80.0, "bridge_frames": 10, "min_speech_frames": 3,
              "onset_frames": 3, "hangover_frames": 10}
PROCEDURAL = ("white", "pink", "brown", "hum", "clicks", "babble")  # babble is made by the corpus builder


def _frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    frames = np.asarray(x[: n * FRAME], dtype=np.float64).reshape(n, FRAME)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-10)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def frame_labels(audio: np.ndarray) -> np.ndarray:
    """Speech labels of one clean clip by the energy rule of the module docstring (:data:`LABEL_RULE`).

    Args:
        audio: ``(samples,)`` float at 16 kHz, one clip of clean speech (its own noise floor is fine).

    Returns:
        ``(samples // 160,)`` uint8, 1 for the 10 ms frames that hold speech.
    """
    r = LABEL_RULE
    e = _frame_db(audio)
    if len(e) == 0:
        return np.zeros(0, np.uint8)
    peak = float(np.max(e))
    thr = np.clip(np.percentile(e, r["floor_percentile"]) + r["threshold_above_floor_db"],
                  peak - r["max_below_peak_db"], peak - r["min_below_peak_db"])
    speech = (e > thr) & (e > r["min_energy_db"])
    starts, ends = _runs(speech)
    for a, b in zip(ends[:-1], starts[1:]):  # bridge short pauses
        if b - a < r["bridge_frames"]:
            speech[a:b] = True
    out = np.zeros(len(e), np.uint8)
    for a, b in zip(*_runs(speech)):
        if b - a >= r["min_speech_frames"]:
            out[max(0, a - r["onset_frames"]): b + r["hangover_frames"]] = 1
    return out


def active_power(speech: np.ndarray, labels: np.ndarray) -> float:
    """Mean power of ``speech`` (samples,) over the frames where ``labels`` (frames,) is 1; 0.0 if none."""
    mask = np.repeat(np.asarray(labels, bool), FRAME)
    x = np.asarray(speech, np.float64)[: len(mask)][mask[: len(speech)]]
    return float(np.mean(x**2)) if len(x) else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, *, speech_power: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` so that ``10 log10(speech_power / mean(noise**2)) == snr_db`` and add it.

    Args:
        speech, noise: ``(samples,)`` float arrays of equal length; noise must not be all zeros.
        snr_db: the wanted SNR in dB.
        speech_power: the reference power (mean square), e.g. :func:`active_power` of the speech.

    Returns:
        ``(mix, scaled_noise)``, both ``(samples,)`` float64.
    """
    n = np.asarray(noise, np.float64)
    p_noise = float(np.mean(n**2))
    if p_noise <= 0.0 or speech_power <= 0.0:
        raise SoftWidthError("mix_at_snr: speech_power and the noise power must be positive")
    scaled = n * np.sqrt(speech_power / (p_noise * 10.0 ** (snr_db / 10.0)))
    return np.asarray(speech, np.float64) + scaled, scaled


def procedural_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` float64 noise of unit RMS at 16 kHz: ``white``, ``pink`` (1/f power), ``brown`` (1/f^2,
    flat below 20 Hz), ``hum`` (50 or 60 Hz +- 0.5 % and its harmonics to 2 kHz, random spectral tilt) or
    ``clicks`` (2-20 decaying 1-5 ms bursts per second, 20 dB of amplitude spread, over a faint floor)."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
        f = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0)
        x = np.fft.irfft(spec * f ** (-0.5 if kind == "pink" else -1.0), n)
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0]) * (1.0 + rng.uniform(-0.005, 0.005))
        k = np.arange(1, int(2000 // f0) + 1)
        amps = rng.uniform(0.2, 1.0, len(k)) / k ** rng.uniform(0.5, 1.5)
        phases = rng.uniform(0, 2 * np.pi, len(k))
        t = np.arange(n) / SAMPLE_RATE
        x = amps @ np.sin(2 * np.pi * f0 * np.outer(k, t) + phases[:, None]) + 0.01 * rng.standard_normal(n)
    elif kind == "clicks":
        x = 1e-3 * rng.standard_normal(n)
        for _ in range(rng.poisson(rng.uniform(2, 20) * n / SAMPLE_RATE)):
            length = int(rng.integers(16, 81))
            pos = int(rng.integers(0, max(1, n - length)))
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
            x[pos: pos + length] += 10.0 ** rng.uniform(-1, 0) * burst[: n - pos]
    else:
        raise SoftWidthError(f"procedural_noise: kind must be one of {PROCEDURAL[:-1]}, got {kind!r}")
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def fade(x: np.ndarray, samples: int = FRAME) -> np.ndarray:
    """A copy of ``x`` with raised-cosine fades over ``samples`` at both ends (no clicks at clip edges)."""
    y = np.array(x, np.float64)
    m = min(samples, len(y) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    y[:m] *= ramp
    y[len(y) - m:] *= ramp[::-1]
    return y
