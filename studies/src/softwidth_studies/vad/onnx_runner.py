"""Run the streaming VAD graph written by ``softwidth_studies.vad.onnx_stream.export_streaming_onnx``.

This module needs only NumPy and onnxruntime (no torch, no softwidth): copy it next to the ``.onnx`` file. ::

    vad = OnnxStreamingVAD("crnn_vad.onnx")
    for chunk in chunks:              # float samples in [-1, 1], 16 kHz mono, any length (10 ms, 32 ms, ...)
        probs = vad.push(chunk)       # (frames,) speech probabilities of the 10 ms frames this chunk completed
    probs = vad.flush()               # the last frames: samples // 160 frames in all
    speech = probs >= vad.threshold   # the threshold stored at export (None if none was)

Frame ``t`` covers samples ``[160 t, 160 t + 160)`` and is centred on sample ``160 t``. With a graph of one
hop per call (the default export) its probability comes once sample ``160 t + 199`` has arrived (frame 0:
sample 200), as with ``StreamingVAD``; with a graph of ``hops`` hops per call, frames come in blocks of ``hops``.

Around the graph (whose inputs and outputs ``onnx_stream`` describes) the runner builds the padded stream of
``torch.stft(center=True)``: the 200 samples ``x[200], ..., x[1]`` in front (so it waits for 201 samples before
the first frame) and, at :meth:`~OnnxStreamingVAD.flush`, ``x[n-2], x[n-3], ...`` behind. It gives the graph
the first 240 padded samples as its initial ``context``, then calls it on each complete block of hops with the
state the previous call returned. At the end of the stream the last block is completed with zeros and the
probabilities of those extra frames are dropped (frames only depend on earlier ones). Memory is bounded: less
than one block of samples waits between pushes.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxStreamingVAD"]

FORMAT = "softwidth.vad.stream/1"
INPUTS = ("samples", "context", "conv_context", "hidden")
OUTPUTS = ("probs", "next_context", "next_conv_context", "next_hidden")


class OnnxStreamingVAD:
    """Streaming speech probabilities, one per 10 ms frame, from the ONNX graph at ``path``.

    Args:
        path: a ``.onnx`` file written by ``export_streaming_onnx``.
        threads: onnxruntime's intra-op threads (1 suits a stream: the graph is small).

    Attributes: ``sample_rate`` (Hz, 16000), ``hop`` (samples per frame, 160), ``hops`` (frames per graph
    call), ``threshold`` (the decision threshold stored at export, or ``None``). Raises ``ValueError`` for a
    missing file, a file onnxruntime cannot load, or a graph that is not a streaming VAD of this format.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        if not os.path.isfile(path):
            raise ValueError(f"OnnxStreamingVAD: no file at {path}; write one with "
                             "softwidth_studies.vad.onnx_stream.export_streaming_onnx")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"OnnxStreamingVAD: threads must be a positive integer, got {threads!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types (bad protobuf, unknown op, ...)
            raise ValueError(f"OnnxStreamingVAD: onnxruntime cannot load {path}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        shapes = {i.name: i.shape for i in self._session.get_inputs()}
        if meta.get("format") != FORMAT or tuple(shapes) != INPUTS:
            raise ValueError(f"OnnxStreamingVAD: {path} is not a streaming VAD graph of format {FORMAT} (metadata "
                             f"format {meta.get('format')!r}, inputs {list(shapes)}); export one with "
                             "export_streaming_onnx")
        self.sample_rate, self.hop, self.hops = int(meta["sample_rate"]), int(meta["hop"]), int(meta["hops"])
        self.threshold = float(meta["threshold"]) if "threshold" in meta else None
        self._half = int(meta["n_fft"]) // 2  # samples reflected in front of the stream
        self._context_size = int(meta["n_fft"]) - self.hop
        self._block = self.hop * self.hops  # samples per graph call
        self._initial = {name: np.zeros(shapes[name], dtype=np.float32) for name in INPUTS[2:]}
        self.reset()

    def reset(self) -> None:
        """Start a new stream (zero state)."""
        self._start = np.zeros(0, dtype=np.float32)  # the first samples, until the front padding can be formed
        self._context = None  # (240,) the graph's sample context, once the padded stream has begun
        self._pending = np.zeros(0, dtype=np.float32)  # padded-stream samples after the context
        self._state = dict(self._initial)
        self._samples = 0  # audio samples pushed
        self._frames = 0  # frames computed
        self._ended = False

    def push(self, samples) -> np.ndarray:
        """Feed a 1-D chunk of float samples (16 kHz, any length); returns ``(frames,)`` float32 probabilities
        of the 10 ms frames it completed (possibly none). Raises ``ValueError`` for a chunk that is not 1-D,
        holds NaN or inf, or comes after :meth:`flush`."""
        if self._ended:
            raise ValueError("OnnxStreamingVAD.push: the stream was flushed; call reset() to start a new one")
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"OnnxStreamingVAD.push: expects a 1-D chunk of samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("OnnxStreamingVAD.push: the chunk has NaN or inf samples")
        x = x.astype(np.float32)
        self._samples += x.size
        if self._context is None:
            self._start = np.concatenate([self._start, x])
            if self._start.size <= self._half:  # frame 0's window reaches sample 200 by reflection
                return np.zeros(0, dtype=np.float32)
            padded = np.concatenate([self._start[self._half:0:-1], self._start])
            self._context, self._pending = padded[:self._context_size], padded[self._context_size:]
            self._start = np.zeros(0, dtype=np.float32)
        else:
            self._pending = np.concatenate([self._pending, x])
        return self._run(self._pending.size // self._block)

    def flush(self) -> np.ndarray:
        """End the stream: the probabilities of its remaining frames (``samples // 160`` in all), the end
        reflect-padded. A second call returns none. Raises ``ValueError`` if the stream has 200 samples or fewer
        (12.5 ms; the first frame's window needs 201)."""
        if self._ended:
            return np.zeros(0, dtype=np.float32)
        self._ended = True
        if self._context is None:
            raise ValueError(f"OnnxStreamingVAD.flush: the audio is too short ({self._samples} samples); it needs "
                             f"more than {self._half} samples ({1000 * self._half / self.sample_rate:g} ms)")
        left = self._samples // self.hop - self._frames  # frames still to compute
        # the padded stream must reach the end of the last frame's window, up to 40 samples past the audio:
        # reflect that much of the end (x[n-2], x[n-3], ...), then fill the last block with zeros
        missing = left * self.hop - self._pending.size
        if missing > 0:
            tail = np.concatenate([self._context, self._pending])  # ends with x[n-1]; 240 samples >= 41
            self._pending = np.concatenate([self._pending, tail[-2:-2 - missing:-1]])
        blocks = -(-left // self.hops)
        self._pending = np.concatenate([self._pending[:left * self.hop],
                                        np.zeros(blocks * self._block - left * self.hop, dtype=np.float32)])
        return self._run(blocks)[:left]

    def _run(self, blocks: int) -> np.ndarray:
        """Run the graph on the next ``blocks`` blocks of the padded stream, carrying the state."""
        out = []
        for _ in range(blocks):
            feed = {"samples": self._pending[:self._block], "context": self._context, **self._state}
            probs, self._context, conv, hidden = self._session.run(list(OUTPUTS), feed)
            self._state = {"conv_context": conv, "hidden": hidden}
            self._pending = self._pending[self._block:]
            self._frames += self.hops
            out.append(probs)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
