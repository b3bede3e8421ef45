"""Tests of softwidth_studies.vad.stream: frame-by-frame streaming equals the batch model; segments."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import softwidth as sw
from softwidth_studies.vad.data import power_spectrum
from softwidth_studies.vad.stream import StreamingVAD, segments
from vad_test_models import stepped


def consolidated(kind: str = "crnn") -> torch.nn.Module:
    sizes = {"crnn": {"conv1": 12, "conv2": 10, "hidden": 8}, "transformer": {"bands": 16, "ff1": 8, "ff2": 8}}[kind]
    return stepped(kind, sizes, 0.6)


MODEL = consolidated()


def batch_probs(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(MODEL(power_spectrum(x)[None]))[0].numpy()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(201, 5000), chunks=st.lists(st.integers(1, 900), min_size=1, max_size=40),
       seed=st.integers(0, 100))
def test_streaming_equals_the_batch_model_for_any_chunking(n, chunks, seed):
    x = np.random.default_rng(seed).normal(0, 0.1, n)
    vad = StreamingVAD(MODEL)
    out, i, k = [], 0, 0
    while i < n:
        size = chunks[k % len(chunks)]
        out.append(vad.push(x[i:i + size]))
        i, k = i + size, k + 1
    out.append(vad.flush())
    probs = np.concatenate(out)
    assert probs.shape == (n // 160,)
    np.testing.assert_allclose(probs, batch_probs(x), atol=1e-5, rtol=0)


def test_frames_are_emitted_as_soon_as_their_window_is_complete():
    vad = StreamingVAD(MODEL)
    assert vad.push(np.zeros(200)).size == 0
    assert vad.push(np.zeros(1)).size == 1  # frame 0 needs samples up to 200 (reflected start)
    assert vad.push(np.zeros(160)).size == 1  # frame 1 needs samples up to 359


def test_memory_is_bounded_over_a_long_stream():
    vad = StreamingVAD(MODEL)
    rng = np.random.default_rng(0)
    emitted = 0
    for _ in range(600):  # 60 s in 100 ms chunks
        emitted += vad.push(rng.normal(0, 0.1, 1600)).size
        assert vad._buffer.size <= 400 + 1600
    assert emitted == 600 * 10 - 1  # the last frame waits for 40 more samples (or flush)
    assert vad.flush().size == 1


def test_bad_input_and_misuse_raise():
    vad = StreamingVAD(MODEL)
    with pytest.raises(sw.SoftWidthError, match="1-D"):
        vad.push(np.zeros((2, 160)))
    with pytest.raises(sw.SoftWidthError, match="NaN"):
        vad.push(np.array([0.0, np.nan]))
    vad.push(np.zeros(100))
    with pytest.raises(sw.SoftWidthError, match="too short"):
        vad.flush()
    with pytest.raises(sw.SoftWidthError, match="flushed"):
        vad.push(np.zeros(10))
    vad.reset()
    assert vad.push(np.zeros(400)).size == 2
    with pytest.raises(sw.SoftWidthError, match="CRNN"):
        StreamingVAD(consolidated("transformer"))


def test_a_crnn_changed_after_consolidation_is_refused_not_streamed_wrongly():
    two_layers = copy.deepcopy(MODEL)
    two_layers.gru = torch.nn.GRU(two_layers.gru.input_size, two_layers.gru.hidden_size, num_layers=2,
                                  batch_first=True)
    with pytest.raises(sw.SoftWidthError, match="one causal layer"):
        StreamingVAD(two_layers)
    padded = copy.deepcopy(MODEL)
    padded.conv1.padding = (1,)
    with pytest.raises(sw.SoftWidthError, match="causal k=3"):
        StreamingVAD(padded)
    swapped = copy.deepcopy(MODEL)
    swapped.act1 = torch.nn.Tanh()
    with pytest.raises(sw.SoftWidthError, match="consolidated CRNN"):
        StreamingVAD(swapped)


def test_the_streaming_network_copies_the_weights_once():
    # the NumPy frame step reads the model when the stream is made: a later change of the model needs a new stream
    model = copy.deepcopy(MODEL)
    x = np.random.default_rng(1).normal(0, 0.1, 3200)
    before = StreamingVAD(model)
    with torch.no_grad():
        model.head.bias.add_(5.0)
    after = StreamingVAD(model)
    p_before = np.concatenate([before.push(x), before.flush()])
    p_after = np.concatenate([after.push(x), after.flush()])
    assert (p_after > p_before).all()
    with torch.no_grad():
        np.testing.assert_allclose(p_after, torch.sigmoid(model(power_spectrum(x)[None]))[0].numpy(), atol=1e-5)


def test_segments_threshold_bridge_pauses_and_drop_blips():
    p = np.zeros(300)
    p[10:50] = 0.9    # 0.1-0.5 s
    p[60:90] = 0.8    # pause of 0.1 s -> bridged (min_pause 0.2)
    p[150:155] = 0.9  # 50 ms blip -> dropped (min_speech 0.1)
    p[200:300] = 0.7  # runs to the end
    assert segments(p, threshold=0.5) == [(0.1, 0.9), (2.0, 3.0)]
    assert segments(p, threshold=0.85) == [(0.1, 0.5)]
    assert segments(p, threshold=0.5, min_pause=0.0, min_speech=0.0) == [(0.1, 0.5), (0.6, 0.9), (1.5, 1.55),
                                                                        (2.0, 3.0)]
    assert segments(np.zeros(10)) == []
