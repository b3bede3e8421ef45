"""Tests of softwidth_studies.vad.peers on the hand-made corpus: Silero, WebRTC (and TEN VAD with the network)."""

from __future__ import annotations

import numpy as np
import pytest

from softwidth_studies.vad.data import load_split
from softwidth_studies.vad.peers import _WebRTC, score_peers, silero_flops_per_second


def test_webrtc_modes_are_binary_per_frame_and_combined_counts_them(corpus):
    pytest.importorskip("webrtcvad")
    results = score_peers(corpus, peers=("webrtc",), progress=False)
    assert set(results) == {"webrtc-0", "webrtc-1", "webrtc-2", "webrtc-3", "webrtc-combined"}
    test = load_split(corpus, "test")
    from softwidth_studies.data.audio import read_audio

    audio = read_audio(corpus / "test" / "test-00000.wav", 16000)
    decisions = _WebRTC()(audio, 800)
    assert set(np.unique(decisions)) <= {0.0, 1.0} and decisions.shape == (4, 800)
    for mode in range(4):
        r = results[f"webrtc-{mode}"]
        assert 0 <= r["pooled"]["auroc"] <= 1 and r["rtf"] > 0 and r["pooled"]["frames"] == test.labels.size


def test_silero_scores_and_its_flops_are_counted(corpus):
    pytest.importorskip("silero_vad")
    results = score_peers(corpus, peers=("silero",), progress=False)
    assert results["silero"]["flops_per_s"] == pytest.approx(silero_flops_per_second())
    assert 20e6 < results["silero"]["flops_per_s"] < 80e6  # a small conv + LSTM net with a conv STFT
    assert {"pooled", "snr", "noise", "threshold", "rtf"} <= set(results["silero"])


def test_a_peer_that_cannot_run_is_reported_as_skipped(corpus, monkeypatch):
    from softwidth_studies.vad import peers

    def broken():
        raise peers.SoftWidthError("not here")

    monkeypatch.setitem(peers.PEERS, "webrtc", broken)
    assert score_peers(corpus, peers=("webrtc",), progress=False) == {"webrtc": {"skipped": "not here"}}


@pytest.mark.network
def test_ten_vad_runs_with_libcxx_from_debian(corpus):
    pytest.importorskip("ten_vad")
    results = score_peers(corpus, peers=("ten",), progress=False)
    assert "skipped" not in results["ten"], results["ten"]
    assert 0 <= results["ten"]["pooled"]["auroc"] <= 1
