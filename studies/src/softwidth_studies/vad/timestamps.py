"""Speech timestamps in the shape Silero VAD users know: ``load``, ``get_speech_timestamps``, ``VADIterator``.

::

    model = load()                                              # the shipped streaming CRNN (safetensors)
    get_speech_timestamps(audio, model)                         # [{"start": 14400, "end": 48320}, ...] samples
    get_speech_timestamps(audio, model, return_seconds=True)    # [{"start": 0.9, "end": 3.02}, ...] seconds

The model gives one speech probability per 10 ms frame (:func:`speech_probabilities`; frame ``t`` covers
samples ``[160 t, 160 t + 160)`` at 16 kHz). :func:`timestamps_from_probabilities` turns them into segments
with Silero's rules (the pure part, tested on hand-made probabilities):

1. Hysteresis: a segment starts at a frame with ``prob >= threshold``. A pause starts at a frame with
   ``prob < neg_threshold`` and is cancelled by a frame ``>= threshold``; frames in between continue whatever
   is going on. At a frame under ``neg_threshold``, a pause that has lasted ``min_silence_duration_ms`` ends
   the segment where the pause began.
2. A segment longer than ``max_speech_duration_s`` (once padded and moved back by the onset delay, rule 4; the
   samples after the last frame count) is split at the start of its last pause longer than 98 ms, the next
   segment starting where speech resumed; without such a pause it is cut hard, the next segment starting at
   once (or, if the cut falls in a shorter pause, where speech resumes).
3. Segments shorter than ``min_speech_duration_ms`` are dropped.
4. The model is causal: it reports onsets and offsets late by delays measured on validation data and stored
   with it (``model.json``: ``start_shift``, ``end_shift``, seconds, >= 0). Detected boundaries move back by
   them (hard cuts and the end of the audio are not detections and stay). The segments stay in order: a start
   never moves before the previous start, a segment moved back into the previous one meets it halfway, and one
   left empty (or inside the previous one) is dropped.
5. Each segment is padded by ``speech_pad_ms`` on both sides, clipped to the audio; where two segments are
   closer than two pads they share the gap between them (they never overlap).

So the segments are sorted, disjoint and non-empty, ``0 <= start < end <= num_samples``, and none is longer than
``max_speech_duration_s`` (tested on random probabilities, options and delays).

On the same probabilities the segments equal silero-vad's ``get_speech_timestamps_from_probs`` (tested, with
``use_max_poss_sil_at_max_speech=False``), except: frames are 10 ms (not 32 ms); a pause ends a segment once it
has lasted ``min_silence_duration_ms`` (Silero needs one window more) and a segment of exactly
``min_speech_duration_ms`` is kept; a segment ending in a pause when the audio ends ends where the pause began
(Silero: at the end of the audio); a hard cut in speech starts the next segment at once (Silero: one window
later); the maximum is reached at a 10 ms frame (Silero: at a 32 ms window, so the split is compared where
``max_speech_duration_s`` less two pads is a multiple of 160 ms); pieces of a split shorter than
``min_speech_duration_ms`` are dropped (Silero keeps the one before a split); the delays (rule 4); seconds are
rounded to the millisecond; a ``VADIterator`` call may return several events (chunks of any length).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from softwidth.errors import SoftWidthError, is_number
from .models import HOP, SAMPLE_RATE
from .store import DEFAULT_MODEL, load_vad
from .stream import StreamingVAD

__all__ = ["TimestampOptions", "VADIterator", "get_speech_timestamps", "load", "speech_probabilities",
           "timestamps_from_probabilities"]

FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 100 probabilities per second of audio
_SPLIT_PAUSE = 98 * SAMPLE_RATE // 1000  # samples: an over-long segment is split at a pause longer than this
_BLOCK = 10 * SAMPLE_RATE  # samples pushed at once: bounds the memory of speech_probabilities
_SHORTEST = 200  # samples: the first frame's window needs more (StreamingVAD)


def load(name_or_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """The VAD model named ``"default"`` (or ``None``: the streaming CRNN shipped with the package) or saved in a
    directory by :func:`~softwidth_studies.vad.store.save_vad`, consolidated and in eval mode (safetensors, no
    pickle); ``Path("default")`` too is the shipped model (give a folder of that name by its absolute path). Its
    ``model.json`` is attached as ``model.vad_info``: ``threshold`` (chosen on validation data) and the delays
    ``start_shift``/``end_shift`` (s) that :func:`get_speech_timestamps` uses."""
    if name_or_dir is None or (isinstance(name_or_dir, (str, os.PathLike)) and os.fspath(name_or_dir) == "default"):
        path = DEFAULT_MODEL  # also Path("default"), what the CLI's --model default gives
    elif isinstance(name_or_dir, (str, os.PathLike)):
        path = Path(name_or_dir)
        if not path.is_dir():
            raise SoftWidthError(f"no VAD model named {str(name_or_dir)!r}: give 'default' (the shipped model) or "
                                 f"a directory written by softwidth_studies.vad.store.save_vad")
    else:
        raise SoftWidthError(f"load: expects 'default', None or a model directory, got {type(name_or_dir).__name__}")
    model, meta = load_vad(path)
    model.vad_info = meta  # a plain attribute: the module's type and state_dict stay as loaded
    return model


@dataclass(frozen=True)
class TimestampOptions:
    """How frame probabilities become speech segments: the options of :func:`get_speech_timestamps`.

    ``threshold`` and ``neg_threshold`` are probabilities (``neg_threshold=None``: ``threshold - 0.15``, at
    least 0.01 and at most ``threshold``); durations are in milliseconds, ``max_speech_duration_s`` in seconds
    (``inf``: no limit). Raises :class:`SoftWidthError` for values out of range.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: float = 250.0
    min_silence_duration_ms: float = 100.0
    speech_pad_ms: float = 30.0
    max_speech_duration_s: float = math.inf

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, rule: str) -> None:
            if not ok:
                raise SoftWidthError(f"{name}={getattr(self, name)!r}: must be {rule}")

        check("threshold", is_number(self.threshold) and 0 <= self.threshold <= 1, "a probability in [0, 1]")
        check("neg_threshold", self.neg_threshold is None or (
            is_number(self.neg_threshold) and 0 <= self.neg_threshold <= self.threshold),
            f"None or a probability in [0, threshold={self.threshold}]")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            value = getattr(self, name)
            check(name, is_number(value) and value >= 0, "a finite number of milliseconds >= 0")
        limit = self.max_speech_duration_s
        check("max_speech_duration_s", isinstance(limit, (int, float)) and not isinstance(limit, bool)
              and limit > (2 * self.speech_pad_ms + 1000 / FRAMES_PER_SECOND) / 1000,
              f"a number of seconds (or inf) longer than two pads of speech_pad_ms={self.speech_pad_ms} and one "
              f"10 ms frame")

    @property
    def off_threshold(self) -> float:
        """The probability under which a pause starts: ``neg_threshold``, or its default."""
        if self.neg_threshold is not None:
            return self.neg_threshold
        return min(self.threshold, max(self.threshold - 0.15, 0.01))


def speech_probabilities(audio, model: nn.Module, *, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech probability of each 10 ms frame of ``audio`` (1-D float samples in [-1, 1] at 16 kHz, NumPy or
    torch): ``(samples // 160,)`` float32, the model's raw causal output (not shifted by its delays).

    Runs the streaming CRNN (:class:`~softwidth_studies.vad.stream.StreamingVAD`) over 10 s blocks, so memory
    does not grow with the audio; the numbers equal the batch model's. Raises :class:`SoftWidthError` for a
    rate other than 16 kHz, audio that is not 1-D float, holds NaN/inf, or has 200 samples or fewer.
    """
    return _probabilities(_samples(audio, sampling_rate), model)


def get_speech_timestamps(audio, model: nn.Module, *, threshold: float | None = None,
                          neg_threshold: float | None = None, min_speech_duration_ms: float = 250,
                          min_silence_duration_ms: float = 100, speech_pad_ms: float = 30,
                          max_speech_duration_s: float = math.inf, return_seconds: bool = False,
                          sampling_rate: int = SAMPLE_RATE) -> list[dict]:
    """Speech segments ``[{"start": ..., "end": ...}, ...]`` of ``audio`` (1-D float samples at 16 kHz), in
    samples (ints) or, with ``return_seconds``, in seconds (rounded to 1 ms); ``end`` is exclusive.

    ``threshold=None`` uses the model's own (``model.vad_info["threshold"]``, chosen on validation data; 0.5
    for a model without ``vad_info``); the model's onset and offset delays (``vad_info``) are subtracted. The
    rules and the other options are those of :func:`timestamps_from_probabilities` (the module docstring).
    """
    info = getattr(model, "vad_info", None) or {}
    options = TimestampOptions(
        threshold=info.get("threshold", 0.5) if threshold is None else threshold, neg_threshold=neg_threshold,
        min_speech_duration_ms=min_speech_duration_ms, min_silence_duration_ms=min_silence_duration_ms,
        speech_pad_ms=speech_pad_ms, max_speech_duration_s=max_speech_duration_s)
    x = _samples(audio, sampling_rate)
    found = timestamps_from_probabilities(_probabilities(x, model), options, num_samples=x.size,
                                          delays=_delays(info))
    if return_seconds:
        return [{k: round(v / SAMPLE_RATE, 3) for k, v in s.items()} for s in found]
    return found


def timestamps_from_probabilities(probs, options: TimestampOptions = TimestampOptions(), *,
                                  num_samples: int | None = None, delays: tuple[float, float] = (0.0, 0.0)
                                  ) -> list[dict]:
    """Speech segments ``[{"start": s, "end": e}, ...]`` (samples at 16 kHz, ``e`` exclusive) from 10 ms frame
    probabilities ``(frames,)``, by the rules of the module docstring.

    Args:
        probs: speech probability per frame; frame ``t`` covers samples ``[160 t, 160 t + 160)``.
        options: thresholds and durations (:class:`TimestampOptions`).
        num_samples: the audio's length in samples, ``160 * frames`` (the default) to ``160 * frames + 159``
            (:func:`speech_probabilities` gives ``samples // 160`` frames): where a segment still open at the end
            stops, and the clip of the padding.
        delays: ``(onset, offset)`` delays of the model in seconds (>= 0), subtracted from detected starts and
            ends.

    Raises :class:`SoftWidthError` for probabilities that are not 1-D and finite, a ``num_samples`` out of that
    range (or not an int), negative delays, or a ``max_speech_duration_s`` shorter than two pads, the onset
    delay and one frame (``timestamps_from_probabilities([], options, delays=delays)`` checks the options alone).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or not np.isfinite(p).all():
        raise SoftWidthError(f"probs must be a 1-D array of finite probabilities, got shape {p.shape}")
    frames_end = HOP * p.size  # the end of the last frame: speech_probabilities gives samples // 160 frames
    n = frames_end if num_samples is None else num_samples
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not frames_end <= n < frames_end + HOP:
        raise SoftWidthError(f"num_samples={num_samples!r}: must be the audio's length in samples, an int in "
                             f"[160 * frames, 160 * frames + 159] = [{frames_end}, {frames_end + HOP - 1}] "
                             f"({p.size} frames: speech_probabilities gives samples // 160)")
    if (not isinstance(delays, (tuple, list)) or len(delays) != 2 or not all(is_number(d) for d in delays)
            or min(delays) < 0):
        raise SoftWidthError(f"delays must be (onset_s, offset_s), two finite numbers of seconds >= 0 (a causal "
                             f"model reports late), got {delays!r}")
    shift = [round(d * SAMPLE_RATE) for d in delays]
    pad = round(options.speech_pad_ms * SAMPLE_RATE / 1000)
    # the longest unpadded segment: room for two pads and the onset delay (a detected start moves back, an end
    # that is a hard cut or the end of the audio stays; a detected end only moves back)
    longest = options.max_speech_duration_s * SAMPLE_RATE - 2 * pad - shift[0]
    if longest < HOP:
        shortest = (2 * pad + shift[0] + HOP) / SAMPLE_RATE
        raise SoftWidthError(f"max_speech_duration_s={options.max_speech_duration_s:g}: must be at least "
                             f"{shortest:g} s, two pads of speech_pad_ms={options.speech_pad_ms:g}, the model's "
                             f"onset delay of {delays[0]:g} s and one 10 ms frame; raise it")
    min_speech = options.min_speech_duration_ms * SAMPLE_RATE / 1000

    state = _Hysteresis(options.threshold, options.off_threshold, options.min_silence_duration_ms)
    found = []  # (start, end, start detected, end detected): samples
    for prob in p:
        closed = state.step(prob)
        if closed is not None:
            found.append(closed)
        elif state.start is not None and state.position - state.start > longest:
            found.append(state.split(state.position - HOP))
    if state.start is not None and state.pause is None and n - state.start > longest:
        found.append(state.split(frames_end))  # the samples after the last frame make it too long
    if state.start is not None:  # open at the end: it ends where its pause began, else with the audio
        found.append((state.start, n, state.start_detected, False) if state.pause is None
                     else (state.start, state.pause, state.start_detected, True))
    kept = [s for s in found if s[1] - s[0] >= max(min_speech, 1)]

    segments: list[list[int]] = []  # sorted, disjoint, none empty
    for start, end, start_detected, end_detected in kept:
        start, end = max(0, start - shift[0] * start_detected), end - shift[1] * end_detected
        if segments:  # never before the previous start: the order of the segments stays
            start = max(start, segments[-1][0])
        if end <= start:  # a segment shorter than the delay that moves its end back: nothing is left
            continue
        if segments and start < segments[-1][1]:  # moved back into the previous segment
            previous = segments[-1]
            if end <= previous[1]:  # inside it: nothing new
                continue
            previous[1] = start = (start + previous[1]) // 2  # they meet halfway, in [start, previous end)
            if previous[1] <= previous[0]:
                segments.pop()
        segments.append([start, end])
    padded = []
    for k, (start, end) in enumerate(segments):  # a gap shorter than two pads is shared by its two segments
        before = start if k == 0 else (start - segments[k - 1][1]) // 2
        after = n - end if k == len(segments) - 1 else (segments[k + 1][0] - end) // 2
        padded.append({"start": int(start - min(pad, before)), "end": int(end + min(pad, after))})
    return padded


class VADIterator:
    """Streaming speech events from chunks of audio, as Silero's ``VADIterator``.

    ``events = vad(chunk)`` for each chunk (1-D float samples at 16 kHz, any length) returns the events the
    chunk completed, in order: ``{"start": s}`` when speech begins, ``{"end": e}`` when a pause has lasted
    ``min_silence_duration_ms`` (samples from the stream's start, or seconds with ``return_seconds``; usually
    none or one per chunk). ``vad.flush()`` ends the stream (an open segment ends there) and
    ``vad.reset_states()`` starts a new one. Starts and ends are moved back by the model's delays and padded by
    ``speech_pad_ms`` (a start never before the previous end); segments are not filtered by length and not
    split (the events come as soon as they are known). ``threshold=None``: the model's own.

    An end is padded as Silero's, into audio that may not have come yet (the pad can outlast
    ``min_silence_duration_ms``), and clipped to the stream's length only when that is known: at ``flush()``.
    So the events equal ``get_speech_timestamps(..., min_speech_duration_ms=0)`` when consecutive segments are
    more than two pads apart (a start is only kept after the previous end, not given half the gap) and the
    stream does not end within a pad of an end sent before ``flush()`` (that end is not clipped).
    """

    def __init__(self, model: nn.Module, *, threshold: float | None = None, neg_threshold: float | None = None,
                 min_silence_duration_ms: float = 100, speech_pad_ms: float = 30,
                 sampling_rate: int = SAMPLE_RATE) -> None:
        info = getattr(model, "vad_info", None) or {}
        self.options = TimestampOptions(
            threshold=info.get("threshold", 0.5) if threshold is None else threshold, neg_threshold=neg_threshold,
            min_speech_duration_ms=0, min_silence_duration_ms=min_silence_duration_ms, speech_pad_ms=speech_pad_ms)
        _check_rate(sampling_rate)
        self._stream = StreamingVAD(model)  # SoftWidthError for anything but a consolidated CRNN
        self._shift = [round(d * SAMPLE_RATE) for d in _delays(info)]
        self._pad = round(speech_pad_ms * SAMPLE_RATE / 1000)
        self.reset_states()

    def reset_states(self) -> None:
        """Start a new stream."""
        self._stream.reset()
        o = self.options
        self._state = _Hysteresis(o.threshold, o.off_threshold, o.min_silence_duration_ms)
        self._samples, self._ended = 0, False
        self._last = 0  # the previous event's sample: a padded start never goes before the previous end

    def __call__(self, chunk, *, return_seconds: bool = False) -> list[dict]:
        if self._ended:
            raise SoftWidthError("VADIterator: the stream was flushed; call reset_states() to start a new one")
        x = _samples(chunk, SAMPLE_RATE, whole=False)
        self._samples += x.size
        return self._events(self._stream.push(x), return_seconds)

    def flush(self, *, return_seconds: bool = False) -> list[dict]:
        """End the stream: the events of its last frames, and the end of a segment still open."""
        if self._ended:
            return []
        self._ended = True
        events = self._events(self._stream.flush(), return_seconds)
        state = self._state
        if state.start is not None:
            end = self._samples if state.pause is None else self._end(state.pause)
            events.append(self._event("end", end, return_seconds))
            state.start = None
        return events

    def _events(self, probs: np.ndarray, seconds: bool) -> list[dict]:
        events = []
        for prob in probs:
            opened = self._state.start is None
            closed = self._state.step(prob)
            if closed is not None:
                events.append(self._event("end", self._end(closed[1]), seconds))
            elif opened and self._state.start is not None:
                events.append(self._event("start", self._state.start - self._shift[0] - self._pad, seconds))
        return events

    def _end(self, pause: int) -> int:
        """A padded end, as Silero's: clipped to the stream's length only once it is known (at flush)."""
        end = pause - self._shift[1] + self._pad
        return min(self._samples, end) if self._ended else end

    def _event(self, kind: str, sample: int, seconds: bool) -> dict:
        """The event at ``sample``, kept after the previous one (shifts and pads cannot reorder them)."""
        sample = max(self._last, sample)
        self._last = sample
        return {kind: round(sample / SAMPLE_RATE, 3) if seconds else int(sample)}


class _Hysteresis:
    """The speech state over consecutive 10 ms frames (rule 1 of the module docstring), in samples.

    ``step(prob)`` consumes one frame and returns the segment it closed, ``(start, end, start detected, True)``,
    or None.
    ``start`` is the open segment's first sample (None outside speech), ``pause`` the first sample of its
    current pause (None if none), ``position`` the sample after the last frame; ``split(cut)`` closes an open
    segment that grew too long (rule 2).
    """

    def __init__(self, threshold: float, neg_threshold: float, min_silence_ms: float) -> None:
        self.on, self.off = threshold, neg_threshold
        self.min_silence = min_silence_ms * SAMPLE_RATE / 1000
        self.start: int | None = None
        self.pause: int | None = None
        self.start_detected = True
        self.resumed: tuple[int, int] | None = None  # (pause start, resume) of the last pause > 98 ms
        self.position = 0

    def step(self, prob: float) -> tuple[int, int, bool, bool] | None:
        frame, self.position = self.position, self.position + HOP
        if self.start is None:
            if prob >= self.on:
                self.start, self.pause, self.resumed, self.start_detected = frame, None, None, True
            return None
        if prob >= self.on:
            if self.pause is not None and frame - self.pause > _SPLIT_PAUSE:
                self.resumed = (self.pause, frame)
            self.pause = None
        elif prob < self.off:
            if self.pause is None:
                self.pause = frame
            if self.position - self.pause >= self.min_silence:  # as Silero: only a silent frame ends speech
                closed = (self.start, self.pause, self.start_detected, True)
                self.start = self.pause = None
                return closed
        return None

    def split(self, cut: int) -> tuple[int, int, bool, bool]:
        """Close the open segment at sample ``cut`` at the latest (the current frame's start, or the end of the
        last frame): at its current pause if longer than 98 ms (speech is over), else at the start of its last
        pause longer than 98 ms (the next segment starts where speech resumed), else hard at ``cut`` (the next
        segment starts there, or, in a pause, as Silero's, where speech resumes: never a segment of silence)."""
        start = self.start
        if self.pause is not None and self.position - self.pause > _SPLIT_PAUSE:
            closed = (start, self.pause, self.start_detected, True)
            self.start = self.pause = None
        elif self.resumed is not None:
            closed = (start, self.resumed[0], self.start_detected, True)
            self.start, self.start_detected = self.resumed[1], True
        else:
            closed = (start, cut, self.start_detected, False)
            self.start, self.start_detected = (cut, False) if self.pause is None else (None, True)
            self.pause = None
        self.resumed = None
        return closed


def _probabilities(x: np.ndarray, model: nn.Module) -> np.ndarray:
    """:func:`speech_probabilities` of checked samples: the stream fed 10 s at a time."""
    vad = StreamingVAD(model)
    probs = [vad.push(x[i:i + _BLOCK]) for i in range(0, x.size, _BLOCK)]
    return np.concatenate([*probs, vad.flush()])


def _delays(info: dict) -> tuple[float, float]:
    return float(info.get("start_shift", 0.0)), float(info.get("end_shift", 0.0))


def _check_rate(sampling_rate) -> None:
    if sampling_rate != SAMPLE_RATE or isinstance(sampling_rate, bool):
        raise SoftWidthError(f"sampling_rate={sampling_rate!r}: the VAD runs at {SAMPLE_RATE} Hz; resample the "
                             f"audio first (softwidth_studies.data.audio.read_audio(path, {SAMPLE_RATE}) does)")


def _samples(audio, sampling_rate, *, whole: bool = True) -> np.ndarray:
    """``audio`` as a 1-D float array after checking it (the public functions' boundary)."""
    _check_rate(sampling_rate)
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise SoftWidthError(f"audio must hold float samples in [-1, 1], got a {audio.dtype} tensor; divide "
                                 f"16-bit PCM by 32768")
        audio = audio.detach().cpu().float().numpy()
    x = np.asarray(audio)
    if x.ndim != 1:
        raise SoftWidthError(f"audio must be 1-D (samples of one channel), got shape {x.shape}; average the "
                             f"channels (x.mean(axis=...)) or drop a batch dimension (x[0])")
    if not np.issubdtype(x.dtype, np.floating):
        raise SoftWidthError(f"audio must hold float samples in [-1, 1], got dtype {x.dtype}; divide 16-bit PCM "
                             f"by 32768")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise SoftWidthError(f"audio holds {bad.size} NaN or inf samples (the first at index {bad[0]})")
    if whole and x.size <= _SHORTEST:  # a chunk of a stream may be shorter, the whole stream may not
        raise SoftWidthError(f"audio too short: {x.size} samples; the VAD needs more than {_SHORTEST} "
                             f"({1000 * _SHORTEST / SAMPLE_RATE:g} ms at 16 kHz)")
    return x
