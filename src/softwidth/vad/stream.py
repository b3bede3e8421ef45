"""Streaming detection with a consolidated CRNN VAD: 10 ms frame by frame, causal state, bounded memory.

:class:`StreamingVAD` takes audio in chunks of any length (:meth:`push`) and returns the speech probability of
every 10 ms frame completed so far; :meth:`flush` ends the stream. Per frame it computes the windowed FFT of the
400 samples centred on the frame (the first frame's window is reflect-padded like ``torch.stft(center=True)``; at
the end of the stream the last window is reflect-padded the same way), the log-mel bands, then the causal conv
stack (a 2-frame ring buffer of left context per convolution) and the GRU from its carried state. Frames that
become complete in the same push run together, which gives the same numbers as running them one by one. Its output equals the batch model's
``sigmoid(model(power_spectrum(audio)))`` (tested), and its memory does not grow with the stream's length.

:func:`segments` turns frame probabilities into speech segments (start, end in seconds) with a threshold, a
minimum speech duration and a minimum pause.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import SoftWidthError
from .models import HOP, N_FFT, SAMPLE_RATE

__all__ = ["StreamingVAD", "boundary_delays", "segments"]

_HALF = N_FFT // 2


class StreamingVAD:
    """Frame-by-frame inference of a consolidated :class:`~softwidth.vad.models.CRNNVAD`.

    Args:
        model: the consolidated CRNN (``softwidth.consolidate(crnn.eval())`` or a reloaded one).

    Use: ``probs = vad.push(chunk)`` for each chunk of float audio in [-1, 1] at 16 kHz (1-D), then
    ``probs = vad.flush()``; each call returns the probabilities ``(frames,)`` of the frames it completed.
    Frame ``t`` covers samples ``[160 t, 160 t + 160)``; it is emitted once sample ``160 t + 199`` has arrived
    (frame 0: sample 200, for the reflected start).
    """

    def __init__(self, model: nn.Module) -> None:
        needed = ("mel", "norm0", "conv1", "norm1", "act1", "conv2", "norm2", "act2", "gru", "head")
        if not all(hasattr(model, name) for name in needed) or not isinstance(model.gru, nn.GRU):
            raise SoftWidthError("StreamingVAD needs a consolidated CRNN VAD (softwidth.vad.models.CRNNVAD after "
                                 "softwidth.consolidate); Transformer VADs attend over 1 s chunks and do not stream "
                                 "frame by frame")
        self.model = model.eval()
        self.window = torch.hann_window(N_FFT, dtype=torch.float64).numpy()
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._buffer = np.zeros(0, dtype=np.float64)  # samples not yet consumed, from sample self._offset
        self._offset = 0  # absolute index of self._buffer[0]
        self._frame = 0  # next frame to emit
        self._conv_in: torch.Tensor | None = None  # (1, bands, 3) last inputs of conv1
        self._conv_mid: torch.Tensor | None = None  # (1, conv1, 3) last activations into conv2
        self._hidden: torch.Tensor | None = None
        self._samples = 0
        self._ended = False

    # -- input ----------------------------------------------------------------------------------------
    def push(self, chunk) -> np.ndarray:
        """Feed a 1-D chunk of samples; returns the probabilities of the frames it completed."""
        if self._ended:
            raise SoftWidthError("StreamingVAD: the stream was flushed; call reset() to start a new one")
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise SoftWidthError(f"StreamingVAD.push: expects a 1-D chunk of samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise SoftWidthError("StreamingVAD.push: the chunk has NaN or inf samples")
        self._buffer = np.concatenate([self._buffer, x])
        self._samples += x.size
        return self._emit(final=False)

    def flush(self) -> np.ndarray:
        """End the stream: emit the remaining frames (``samples // 160`` in all) with the end reflect-padded."""
        if self._ended:
            return np.zeros(0, dtype=np.float32)
        self._ended = True
        if self._samples <= _HALF:
            raise SoftWidthError(f"StreamingVAD: the audio is too short ({self._samples} samples); it needs more "
                                 f"than {_HALF} samples (12.5 ms at 16 kHz)")
        return self._emit(final=True)

    # -- frames --------------------------------------------------------------------------------------
    def _window(self, t: int, final: bool) -> np.ndarray | None:
        """The 400 samples of frame ``t`` (centred on sample ``160 t``), or None if not yet available.

        Indices outside the signal are reflected like ``torch.stft(center=True)``: ``-i -> i`` at the start and
        ``n - 1 + i -> n - 1 - i`` at the end (only once the stream has ended and ``n`` is known).
        """
        idx = np.abs(np.arange(HOP * t - _HALF, HOP * t + _HALF))
        if idx.max() >= self._samples:
            if not final:
                return None
            idx = np.where(idx >= self._samples, 2 * (self._samples - 1) - idx, idx)
        return self._buffer[idx - self._offset]

    def _emit(self, final: bool) -> np.ndarray:
        """Run every frame whose window is complete (all at once: the result is the same as one by one)."""
        windows = []
        total = self._samples // HOP if final else None
        while total is None or self._frame + len(windows) < total:
            samples = self._window(self._frame + len(windows), final)
            if samples is None:
                break
            windows.append(samples)
        if not windows:
            return np.zeros(0, dtype=np.float32)
        spec = np.fft.rfft(np.stack(windows) * self.window, axis=1)
        power = torch.from_numpy((spec.real ** 2 + spec.imag ** 2).astype(np.float32))
        self._frame += len(windows)
        drop = max(0, HOP * self._frame - _HALF) - self._offset  # samples no later frame needs
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._offset += drop
        return self._steps(power)

    @torch.no_grad()
    def _steps(self, power: torch.Tensor) -> np.ndarray:
        """Frames ``(n, 201)`` -> probabilities ``(n,)``, carrying the conv ring buffers and the GRU state."""
        m = self.model
        feat = m.norm0(m.mel(power.unsqueeze(0)).transpose(1, 2))  # (1, bands, n)
        if self._conv_in is None:  # the batch model left-pads 4 zero frames: conv1 has seen 2 outputs of zeros
            first = m.act1(m.norm1(m.conv1(torch.zeros(1, feat.shape[1], 3))))  # (1, conv1, 1)
            self._conv_in = torch.zeros(1, feat.shape[1], 2)
            self._conv_mid = torch.cat([first, first], dim=2)
        x = torch.cat([self._conv_in, feat], dim=2)  # (1, bands, n + 2)
        mid = torch.cat([self._conv_mid, m.act1(m.norm1(m.conv1(x)))], dim=2)  # (1, conv1, n + 2)
        self._conv_in, self._conv_mid = x[:, :, -2:], mid[:, :, -2:]
        out, self._hidden = m.gru(m.act2(m.norm2(m.conv2(mid))).transpose(1, 2), self._hidden)
        return torch.sigmoid(m.head(out)).reshape(-1).numpy().astype(np.float32)


def segments(probs: np.ndarray, *, threshold: float = 0.5, min_speech: float = 0.1, min_pause: float = 0.2
             ) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s), ...]`` from 10 ms frame probabilities.

    Frames with ``prob >= threshold`` are speech; pauses shorter than ``min_pause`` seconds are bridged, then
    segments shorter than ``min_speech`` seconds are dropped.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    frame = HOP / SAMPLE_RATE
    speech = np.r_[False, p >= threshold, False]
    edges = np.flatnonzero(np.diff(speech.astype(np.int8)))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]  # [start, end) frame indices
    merged: list[list[int]] = []
    for run in runs:
        if merged and (run[0] - merged[-1][1]) * frame < min_pause:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(round(a * frame, 3), round(b * frame, 3)) for a, b in merged if (b - a) * frame >= min_speech]


def boundary_delays(found: list[tuple[float, float]], expected: list[tuple[float, float]]) -> tuple[list, list]:
    """Start and end delays (s, detected minus expected) of the detected segments that overlap one expected
    segment, each expected segment matched to the detected one overlapping it most."""
    starts, ends = [], []
    for a, b in expected:
        overlaps = [(min(b, d) - max(a, c), c, d) for c, d in found if min(b, d) > max(a, c)]
        if overlaps:
            _, c, d = max(overlaps)
            starts.append(c - a)
            ends.append(d - b)
    return starts, ends
