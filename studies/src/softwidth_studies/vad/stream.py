"""Streaming detection with a consolidated CRNN VAD: 10 ms frame by frame, causal state, bounded memory.

:class:`StreamingVAD` takes audio in chunks of any length (:meth:`push`) and returns the speech probability of
every 10 ms frame completed so far; :meth:`flush` ends the stream. Per frame it computes the windowed FFT of the
400 samples centred on the frame (the first frame's window is reflect-padded like ``torch.stft(center=True)``; at
the end of the stream the last window is reflect-padded the same way), the log-mel bands, then the causal conv
stack (a 2-frame ring buffer of left context per convolution) and the GRU from its carried state. Frames that
become complete in the same push run together, which gives the same numbers as running them one by one. Its output
equals the batch model's ``sigmoid(model(power_spectrum(audio)))`` (tested), and its memory does not grow with the
stream's length.

The per-frame network runs in NumPy on weights copied from the model once (:class:`_FrameStep`: each BatchNorm folded
into the scale and shift of what precedes it or into the convolution it follows, each causal convolution one matrix
product over its 3-frame window): a 10 ms push then costs a few dozen NumPy calls instead of a few dozen PyTorch
operator dispatches, about four times faster end to end on one CPU thread (docs/benchmarks.md, "stream" rows).

:func:`segments` turns frame probabilities into speech segments (start, end in seconds) with a threshold, a
minimum speech duration and a minimum pause.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from softwidth.errors import SoftWidthError
from softwidth.layers.frontend import sparse_bank
from .models import HOP, N_FFT, SAMPLE_RATE

__all__ = ["StreamingVAD", "boundary_delays", "segments"]

_HALF = N_FFT // 2


class StreamingVAD:
    """Frame-by-frame inference of a consolidated :class:`~softwidth_studies.vad.models.CRNNVAD`.

    Args:
        model: the consolidated CRNN (``softwidth.consolidate(crnn.eval())`` or a reloaded one).

    Use: ``probs = vad.push(chunk)`` for each chunk of float audio in [-1, 1] at 16 kHz (1-D), then
    ``probs = vad.flush()``; each call returns the probabilities ``(frames,)`` of the frames it completed.
    Frame ``t`` covers samples ``[160 t, 160 t + 160)``; it is emitted once sample ``160 t + 199`` has arrived
    (frame 0: sample 200, for the reflected start). The weights are copied from ``model`` when the stream is
    made; after changing the model, make a new ``StreamingVAD``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self._net = _FrameStep(self.model)  # raises SoftWidthError for anything but a consolidated CRNN
        self.window = torch.hann_window(N_FFT, dtype=torch.float64).numpy()
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._buffer = np.zeros(0, dtype=np.float64)  # samples not yet consumed, from sample self._offset
        self._offset = 0  # absolute index of self._buffer[0]
        self._frame = 0  # next frame to emit
        self._net.reset()
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
    def _windows(self, final: bool) -> np.ndarray:
        """The 400 samples of every frame from ``self._frame`` on whose window is complete: ``(frames, 400)``.

        Frame ``t`` is centred on sample ``160 t``; it is complete once sample ``max(200, 160 t + 199)`` has arrived
        (or, once the stream has ended, for every ``t < samples // 160``). Indices outside the signal are reflected
        like ``torch.stft(center=True)``: ``-i -> i`` at the start and ``n - 1 + i -> n - 1 - i`` at the end.
        """
        n = self._samples
        stop = n // HOP if final else ((n - _HALF) // HOP + 1 if n > _HALF else 0)
        frames = np.arange(self._frame, stop)
        idx = np.abs(HOP * frames[:, None] + np.arange(-_HALF, _HALF))
        if final:
            idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        return self._buffer[idx - self._offset]

    def _emit(self, final: bool) -> np.ndarray:
        """Run every frame whose window is complete (all at once: the result is the same as one by one)."""
        windows = self._windows(final)
        if not len(windows):
            return np.zeros(0, dtype=np.float32)
        spec = np.fft.rfft(windows * self.window, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        self._frame += len(windows)
        drop = max(0, HOP * self._frame - _HALF) - self._offset  # samples no later frame needs
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._offset += drop
        return self._net(power)


class _FrameStep:
    """The consolidated CRNN as NumPy arrays, run on consecutive frames with carried state.

    Called as ``step(power (n, 201) float32) -> probabilities (n,) float32``: log-mel (the model's bank, applied
    through its nonzero weights only as the consolidated module does, and its log offset), the input BatchNorm as
    a per-band scale and shift, each causal ``Conv1d(k=3)`` with its BatchNorm folded in as one product of the
    3-frame window ``[x[t-2], x[t-1], x[t]]`` with a ``(3 * C_in, C_out)`` matrix, ReLU, then the GRU cell (gates
    r, z, n as in ``torch.nn.GRU``) frame by frame, the linear head and a sigmoid. The state is the last two
    frames into each convolution and the GRU's hidden vector; :meth:`reset` sets it to what the batch model sees
    at the start (4 zero frames of left padding after the input norm).
    """

    def __init__(self, m: nn.Module) -> None:
        _check_crnn(m)
        with torch.no_grad():
            bank = m.mel.bank
            self.bins, bands, self.weights = (_array(t) for t in sparse_bank(bank))
            self.n_bands, self.dtype = bank.shape[1], self.weights.dtype
            self.bands = np.unique(bands)  # bands with a nonzero weight; their entries are contiguous runs
            self.starts = np.searchsorted(bands, self.bands)
            self.log_eps = float(torch.exp(m.mel(torch.zeros(1, bank.shape[0], dtype=bank.dtype)))[0, 0])
            self.scale0, self.shift0 = _affine(m.norm0)
            self.w1, self.b1 = _folded_conv(m.conv1, m.norm1)
            self.w2, self.b2 = _folded_conv(m.conv2, m.norm2)
            gru = m.gru
            self.hidden = gru.hidden_size
            self.w_ih, self.w_hh = _array(gru.weight_ih_l0).T.copy(), _array(gru.weight_hh_l0).T.copy()
            self.b_ih, self.b_hh = _array(gru.bias_ih_l0), _array(gru.bias_hh_l0)
            self.w_out, self.b_out = _array(m.head.weight).T.copy(), _array(m.head.bias)
        self.reset()

    def reset(self) -> None:
        self.conv_in = np.zeros((2, self.n_bands), dtype=self.dtype)  # zero padding, after norm0
        first = np.maximum(self.b1, 0)  # conv1's output on the zero padding
        self.conv_mid = np.stack([first, first])
        self.h = np.zeros(self.hidden, dtype=self.dtype)

    def __call__(self, power: np.ndarray) -> np.ndarray:
        feat = np.log(self._mel(power) + self.log_eps) * self.scale0 + self.shift0  # (n, bands)
        x = np.concatenate([self.conv_in, feat])
        mid = np.concatenate([self.conv_mid, np.maximum(_windows(x) @ self.w1 + self.b1, 0)])
        self.conv_in, self.conv_mid = x[-2:], mid[-2:]
        gates_in = np.maximum(_windows(mid) @ self.w2 + self.b2, 0) @ self.w_ih + self.b_ih  # (n, 3 H)
        size, h = self.hidden, self.h
        out = np.empty((len(gates_in), size), dtype=h.dtype)
        for t, gi in enumerate(gates_in):
            gh = h @ self.w_hh + self.b_hh
            rz = _sigmoid(gi[:2 * size] + gh[:2 * size])
            candidate = np.tanh(gi[2 * size:] + rz[:size] * gh[2 * size:])
            h = (1 - rz[size:]) * candidate + rz[size:] * h
            out[t] = h
        self.h = h
        return _sigmoid(out @ self.w_out + self.b_out).reshape(-1).astype(np.float32)

    def _mel(self, power: np.ndarray) -> np.ndarray:
        """``power @ bank`` from the bank's nonzeros, ``(n, bands)``: each nonzero weight times its bin, summed per
        band (one ``np.add.reduceat`` over the band-sorted products); bands without a weight stay zero."""
        mel = np.zeros((len(power), self.n_bands), dtype=np.result_type(power, self.weights))
        if len(power) and len(self.starts):
            mel[:, self.bands] = np.add.reduceat(power[:, self.bins] * self.weights, self.starts, axis=1)
        return mel


def _check_crnn(m: nn.Module) -> None:
    parts = {"mel": None, "norm0": nn.BatchNorm1d, "conv1": nn.Conv1d, "norm1": nn.BatchNorm1d, "act1": nn.ReLU,
             "conv2": nn.Conv1d, "norm2": nn.BatchNorm1d, "act2": nn.ReLU, "gru": nn.GRU, "head": nn.Linear}
    ok = all(hasattr(m, name) and (cls is None or isinstance(getattr(m, name), cls)) for name, cls in parts.items())
    if not ok or not isinstance(getattr(m.mel, "bank", None), torch.Tensor):
        raise SoftWidthError("StreamingVAD needs a consolidated CRNN VAD (softwidth_studies.vad.models.CRNNVAD after "
                             "softwidth.consolidate); Transformer VADs attend over 1 s chunks and do not stream "
                             "frame by frame")
    if not all(n.affine and n.track_running_stats for n in (m.norm0, m.norm1, m.norm2)):
        raise SoftWidthError("StreamingVAD: the CRNN's BatchNorms must have weights and running statistics, as built")
    gru = m.gru
    if gru.num_layers != 1 or gru.bidirectional or not gru.bias or m.head.out_features != 1 or m.head.bias is None:
        raise SoftWidthError("StreamingVAD: the CRNN's GRU must be one causal layer with biases and its head one "
                             f"logit per frame, got {gru} and {m.head}")
    for conv in (m.conv1, m.conv2):
        if conv.kernel_size != (3,) or conv.stride != (1,) or conv.padding != (0,) or conv.dilation != (1,) \
                or conv.groups != 1 or conv.bias is None:
            raise SoftWidthError(f"StreamingVAD: the CRNN's convolutions must be causal k=3 as built, got {conv}")


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _affine(norm: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``x * scale + shift``."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return _array(scale), _array(norm.bias - norm.running_mean * scale)


def _folded_conv(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """``norm(conv(x))`` as ``windows(x) @ w + b``: ``w[k * C_in + i, c] = weight[c, i, k] * scale[c]``."""
    scale, shift = _affine(norm)
    weight = _array(conv.weight) * scale[:, None, None]  # (C_out, C_in, 3)
    w = np.ascontiguousarray(weight.transpose(2, 1, 0).reshape(-1, weight.shape[0]))
    return w, _array(conv.bias) * scale + shift


def _windows(x: np.ndarray) -> np.ndarray:
    """``(n + 2, C) -> (n, 3 C)``: row ``t`` is frames ``t, t + 1, t + 2`` side by side."""
    return np.concatenate([x[:-2], x[1:-1], x[2:]], axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow warning for large |x|


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
