"""The consolidated CRNN VAD as one stateful ONNX graph for streaming: samples and state in, probabilities and
state out, as Silero VAD's ONNX model works.

:func:`export_streaming_onnx` writes the graph; :class:`~softwidth_studies.vad.onnx_runner.OnnxStreamingVAD`
(NumPy and onnxruntime only, no torch) runs it on a stream and gives the probabilities of
:class:`~softwidth_studies.vad.stream.StreamingVAD` (tested within 1e-5; about 1e-6 apart). The graph is pure
and its shapes are fixed when it is written (``hops`` per call, 1 by default); one call maps

==================  ====================  ===========================================================
input (float32)     shape                 meaning
==================  ====================  ===========================================================
``samples``         ``(160 * hops,)``     the next ``hops`` 10 ms hops of the padded stream (16 kHz)
``context``         ``(240,)``            the 240 samples of the padded stream before ``samples``
``conv_context``    ``(bands, 4)``        the last 4 normalised log-mel frames: the left context of
                                          the two causal k=3 convolutions
``hidden``          ``(hidden,)``         the GRU's hidden state
==================  ====================  ===========================================================

to ``probs (hops,)``, the speech probabilities of the ``hops`` 10 ms frames that ``samples`` completes, and
``next_context``, ``next_conv_context``, ``next_hidden``: the state inputs of the next call. Frame ``t`` is the
400-sample Hann window ``padded[160 t : 160 t + 400]`` of the padded stream, so a call turns
``context + samples`` into ``hops`` frames: their power spectrum (a float64 DFT, as StreamingVAD's FFT), the
model's log-mel bands and input BatchNorm, the two causal convolutions over ``conv_context + features``, the
GRU from ``hidden``, the head and a sigmoid. The padded stream is the audio ``x`` with the reflect padding of
``torch.stft(center=True)``: 200 samples ``x[200], x[199], ..., x[1]`` in front and, when the stream ends,
``x[n-2], x[n-3], ...`` behind. Forming it is the caller's job (the runner does it in NumPy): the first call's
``context`` is ``padded[:240]`` (so the first frame needs 201 samples of audio); ``conv_context`` and ``hidden``
start at zero (the batch model's causal padding and initial state). Samples are float32, which holds audio
decoded from 16- or 24-bit PCM exactly.

Why fixed shapes: with a dynamic hop count, torch 2.13's exporter specialises the GRU's sequence length to the
example's (the exported program asserts it) and fails on the GRU in every later export of the process, so a
graph of any length would only work by accident. One hop per call (Silero's ONNX also takes a fixed 32 ms) adds
no latency; a graph of more hops per call serves offline use with fewer calls, its frames coming in blocks.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from softwidth.errors import SoftWidthError
from .models import HOP, N_FFT, SAMPLE_RATE
from .stream import _check_crnn

__all__ = ["export_streaming_onnx"]

CONTEXT = N_FFT - HOP  # samples of the padded stream that the next frame shares with the ones before it
CONV_CONTEXT = 4  # frames of left context of the two causal k=3 convolutions
FORMAT = "softwidth.vad.stream/1"  # metadata the runner checks: this graph's inputs, outputs and protocol
INPUTS = ("samples", "context", "conv_context", "hidden")
OUTPUTS = ("probs", "next_context", "next_conv_context", "next_hidden")
MAX_HOPS = 1000  # 10 s per call: more only makes the graph's buffers (hops x 400 samples) large


class _StreamStep(nn.Module):
    """One call of the graph (see the module docstring), on the consolidated CRNN's own layers."""

    def __init__(self, crnn: nn.Module) -> None:
        super().__init__()
        self.crnn = crnn
        # periodic, as power_spectrum's torch.stft; float64 like the DFT (see _real_dft_power)
        self.register_buffer("window", torch.hann_window(N_FFT, dtype=torch.float64))

    def forward(self, samples, context, conv_context, hidden):
        stream = torch.cat([context, samples])  # (240 + 160 hops,)
        frames = stream.unfold(0, N_FFT, HOP).double() * self.window  # (hops, 400), windowed, float64
        power = _real_dft_power(frames).float()  # (hops, 201)
        x = torch.cat([conv_context[None], self.crnn.features(power[None])], dim=2)  # (1, bands, 4 + hops)
        out, h = self.crnn.gru(self.crnn.convs(x).transpose(1, 2), hidden[None, None])  # (1, hops, hidden)
        probs = torch.sigmoid(self.crnn.head(out[0])).reshape(-1)  # (hops,)
        return probs, stream[-CONTEXT:], x[0, :, -CONV_CONTEXT:], h.reshape(-1)


def _real_dft_power(frames: torch.Tensor) -> torch.Tensor:
    """``|rfft(frames)|^2`` of ``(hops, 400)`` frames as matrix products: ``(hops, 201)``, in the frames' dtype.

    In float64 because a float32 DFT's rounding (about 1e-7 of the frame's energy) is a large part of the power
    of the quiet bins next to a loud tone, whose log the model reads; the batch model's float32 ``torch.stft``
    moves its probabilities by up to 1e-5 that way. A sample and its mirror ``x[k], x[400 - k]`` share
    ``cos(2 pi k f / 400)`` and have opposite ``sin``, so their sum and difference take half the products.
    The cosine and sine tables are graph operations on constants, which onnxruntime folds when it loads the
    file (stored, they would take 640 kB); ``k * f mod 400`` keeps each angle in [0, 2 pi).
    """
    half = N_FFT // 2
    inner, mirror = frames[:, 1:half], frames[:, half + 1:].flip(1)  # x[k], x[400 - k] for k = 1..199
    even = torch.cat([frames[:, :1], inner + mirror, frames[:, half:half + 1]], dim=1)  # (hops, 201): k = 0..200
    k, f = torch.arange(half + 1), torch.arange(half + 1)
    # the step as a float64 tensor: a Python float would reach the graph rounded to float32 (a 5e-8 error)
    step = torch.tensor(2 * math.pi / N_FFT, dtype=frames.dtype)
    angle = ((k[:, None] * f) % N_FFT).to(frames.dtype) * step  # (201, 201)
    real = even @ torch.cos(angle)
    imag = (inner - mirror) @ torch.sin(angle[1:half])
    return real.square() + imag.square()


def export_streaming_onnx(model: nn.Module, path: str | os.PathLike, *, hops: int = 1,
                          threshold: float | None = None) -> Path:
    """Write the consolidated CRNN ``model`` as the stateful streaming ONNX graph of the module docstring.

    Args:
        model: a consolidated :class:`~softwidth_studies.vad.models.CRNNVAD` (e.g. ``load_vad()[0]``); not changed.
        path: the ``.onnx`` file to write (weights inside; about 30 kB for the shipped model).
        hops: 10 ms hops per call, 1 to 1000: 1 emits each frame as soon as its window is complete (streaming);
            more serve offline use with fewer calls (frames then come in blocks of ``hops``).
        threshold: the model's decision threshold (a probability in [0, 1]), stored in the file's metadata for
            the runner (``OnnxStreamingVAD.threshold``); ``None`` stores none.

    Exports with ``torch.onnx.export(dynamo=True)`` (the exporter of :func:`softwidth.export.to_onnx`; opset 20
    with torch 2.13), then runs the file with onnxruntime from a random state and raises
    :class:`SoftWidthError` if any output differs from the torch graph's by more than 1e-4 (a mistranslation;
    the probabilities agree within 1e-6). Raises :class:`SoftWidthError` for a model that is not a consolidated
    CRNN, ``hops`` or ``threshold`` out of range, or the ONNX packages missing: ``onnx``, ``onnxscript`` and
    ``onnxruntime`` (``softwidth-studies[onnx]``). Returns ``Path(path)``.
    """
    try:
        _check_crnn(model)
    except SoftWidthError as err:
        raise SoftWidthError(f"export_streaming_onnx: {err}") from None
    if not isinstance(hops, int) or isinstance(hops, bool) or not 1 <= hops <= MAX_HOPS:
        raise SoftWidthError(f"export_streaming_onnx: hops must be an integer in [1, {MAX_HOPS}] (10 ms hops per "
                             f"call), got {hops!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise SoftWidthError(f"export_streaming_onnx: threshold must be a probability in [0, 1] or None, "
                             f"got {threshold!r}")
    try:
        import onnx
        import onnxruntime  # noqa: F401 - the check after writing runs the file
        import onnxscript.optimizer  # torch.onnx's dynamo exporter translates with onnxscript
    except ImportError as err:
        raise SoftWidthError(f"export_streaming_onnx needs onnx, onnxscript and onnxruntime ({err.name} is "
                             "missing): pip install 'softwidth-studies[onnx]'") from None
    step = _StreamStep(copy.deepcopy(model).float().eval()).eval()
    bands, size = step.crnn.norm0.num_features, step.crnn.gru.hidden_size
    example = (torch.zeros(hops * HOP), torch.zeros(CONTEXT), torch.zeros(bands, CONV_CONTEXT), torch.zeros(size))
    out = Path(path)
    with warnings.catch_warnings():  # torch.export's notes on the GRU's weights, not the user's concern
        warnings.simplefilter("ignore")
        torch.onnx.export(step, example, str(out), dynamo=True, optimize=False, external_data=False,
                          verbose=False, input_names=list(INPUTS), output_names=list(OUTPUTS))
    # optimised here rather than by the exporter: its default folds the DFT's (400, 201) angle table into a
    # 640 kB constant; with this limit the file keeps the few ops that make it (onnxruntime folds them on load)
    proto = onnxscript.optimizer.optimize(onnx.load(str(out)), output_size_limit=N_FFT)
    for node in proto.graph.node:  # the exporter's notes per node: stack traces with this machine's paths
        del node.metadata_props[:]
        node.doc_string = ""
    meta = {"format": FORMAT, "sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "hops": hops, "bands": bands,
            "hidden": size, **({} if threshold is None else {"threshold": float(threshold)})}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=str(value))
    proto.doc_string = (f"softwidth streaming CRNN VAD ({FORMAT}), 16 kHz; inputs, outputs and the padded "
                        "stream: softwidth_studies.vad.onnx_stream")
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    _check_file(step, out)
    return out


def _check_file(step: _StreamStep, path: Path) -> None:
    """Run the written graph with onnxruntime on noise from a random state and compare it with torch."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    bands, size = step.crnn.norm0.num_features, step.crnn.gru.hidden_size
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"samples": rng.normal(0, 0.1, session.get_inputs()[0].shape[0]), "context": rng.normal(0, 0.1, CONTEXT),
            "conv_context": rng.normal(0, 1, (bands, CONV_CONTEXT)), "hidden": rng.uniform(-0.5, 0.5, size)}
    feed = {k: v.astype(np.float32) for k, v in feed.items()}
    with torch.no_grad():
        want = [t.numpy() for t in step(*(torch.from_numpy(feed[k]) for k in INPUTS))]
    try:
        got = session.run(list(OUTPUTS), feed)
        bad = [name for name, a, b in zip(OUTPUTS, got, want)
               if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-4)]
    except Exception as err:  # onnxruntime's own exception types
        bad = [f"none: onnxruntime failed ({str(err).splitlines()[0] if str(err) else type(err).__name__})"]
    if bad:
        raise SoftWidthError(f"export_streaming_onnx: the ONNX graph written to {path} differs from the model "
                             f"(outputs {bad}); torch {torch.__version__}'s exporter mistranslated it: please "
                             "report it")
