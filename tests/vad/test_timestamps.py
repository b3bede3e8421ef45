"""Tests of softwidth_studies.vad.timestamps: each rule of timestamps_from_probabilities on hand-made frame
probabilities (exact sample positions), then the Silero-shaped API end to end with the shipped model on
synthetic speech-like audio (known segments), its input checks, load and the streaming VADIterator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import softwidth as sw
from softwidth.errors import SoftWidthError
from softwidth_studies.vad import (
    TimestampOptions,
    VADIterator,
    get_speech_timestamps,
    load,
    speech_probabilities,
    timestamps_from_probabilities,
)
from softwidth_studies.vad.data import power_spectrum
from softwidth_studies.vad.models import build_model
from softwidth_studies.vad.store import DEFAULT_MODEL, save_vad

F = 160  # samples per 10 ms frame


def probs(*runs: tuple[float, int]) -> np.ndarray:
    """Frame probabilities from ``(value, frames)`` runs."""
    return np.concatenate([np.full(n, v) for v, n in runs])


def spans(p, **options) -> list[tuple[int, int]]:
    """``(start, end)`` in samples; no padding and no minimum speech unless asked."""
    delays = options.pop("delays", (0.0, 0.0))
    num_samples = options.pop("num_samples", None)
    options = {"speech_pad_ms": 0, "min_speech_duration_ms": 0, **options}
    found = timestamps_from_probabilities(p, TimestampOptions(**options), num_samples=num_samples, delays=delays)
    return [(s["start"], s["end"]) for s in found]


# -- rule 1: hysteresis and the minimum silence ------------------------------------------------------------------
def test_a_segment_starts_at_threshold_and_ends_where_a_long_enough_pause_began():
    p = probs((0.0, 10), (0.6, 30), (0.36, 30), (0.0, 30))
    # 0.36 is between neg_threshold 0.35 and threshold 0.5: speech goes on until the frames under 0.35
    assert spans(p, threshold=0.5, neg_threshold=0.35) == [(10 * F, 70 * F)]
    # with neg_threshold 0.37 the 0.36 frames are a pause
    assert spans(p, threshold=0.5, neg_threshold=0.37) == [(10 * F, 40 * F)]
    # the default neg_threshold is threshold - 0.15 = 0.35 (at least 0.01, at most the threshold)
    assert spans(p, threshold=0.5) == [(10 * F, 70 * F)]
    assert [TimestampOptions(threshold=t).off_threshold for t in (0.5, 0.1, 0.0)] == [0.5 - 0.15, 0.01, 0.0]
    # a probability equal to the threshold starts speech, one just under it does not
    assert spans(probs((0.0, 5), (0.5, 20), (0.0, 20)), threshold=0.5) == [(5 * F, 25 * F)]
    assert spans(probs((0.0, 5), (0.499, 20), (0.0, 20)), threshold=0.5, neg_threshold=0.3) == []


def test_frames_between_the_thresholds_never_start_speech():
    assert spans(probs((0.0, 10), (0.45, 50), (0.0, 10)), threshold=0.5, neg_threshold=0.3) == []


def test_a_pause_of_min_silence_ends_the_segment_a_shorter_one_is_bridged():
    def two_bursts(pause_frames):
        return probs((1.0, 30), (0.0, pause_frames), (1.0, 30), (0.0, 20))

    assert spans(two_bursts(9), min_silence_duration_ms=100) == [(0, 69 * F)]
    assert spans(two_bursts(10), min_silence_duration_ms=100) == [(0, 30 * F), (40 * F, 70 * F)]
    assert spans(two_bursts(10), min_silence_duration_ms=110) == [(0, 70 * F)]
    assert spans(two_bursts(1), min_silence_duration_ms=0) == [(0, 30 * F), (31 * F, 61 * F)]


def test_frames_between_the_thresholds_count_in_a_pause_but_only_a_silent_frame_ends_it():
    p = probs((1.0, 30), (0.0, 5), (0.4, 5), (0.0, 1), (1.0, 30), (0.0, 20))
    # the pause began at frame 30; at frame 40, under neg_threshold, it has lasted 110 ms
    assert spans(p, threshold=0.5, neg_threshold=0.35, min_silence_duration_ms=110) == [(0, 30 * F), (41 * F, 71 * F)]
    assert spans(p, threshold=0.5, neg_threshold=0.35, min_silence_duration_ms=120) == [(0, 71 * F)]
    # 100 ms had passed within the 0.4 frames, which cannot end it
    p = probs((1.0, 30), (0.0, 5), (0.4, 5), (1.0, 30), (0.0, 20))
    assert spans(p, threshold=0.5, neg_threshold=0.35, min_silence_duration_ms=100) == [(0, 70 * F)]


def test_a_segment_open_at_the_end_runs_to_the_end_of_the_audio_or_to_its_pause():
    assert spans(probs((0.0, 10), (1.0, 20)), num_samples=30 * F + 100) == [(10 * F, 30 * F + 100)]
    assert spans(probs((0.0, 10), (1.0, 20), (0.0, 5)), min_silence_duration_ms=100) == [(10 * F, 30 * F)]


def test_the_samples_after_the_last_frame_count_towards_the_maximum():
    # 30 frames and 159 samples more: the segment open at the end would be 4959 samples long, over 0.3 s
    assert spans(probs((1.0, 30)), num_samples=30 * F + 159, max_speech_duration_s=0.3) == [
        (0, 30 * F), (30 * F, 30 * F + 159)]
    assert spans(probs((1.0, 30)), num_samples=30 * F + 159, max_speech_duration_s=0.31) == [(0, 30 * F + 159)]
    # a pause longer than 98 ms is still the place to split
    p = probs((1.0, 10), (0.0, 12), (1.0, 8))
    assert spans(p, num_samples=30 * F + 100, max_speech_duration_s=0.3, min_silence_duration_ms=200) == [
        (0, 10 * F), (22 * F, 30 * F + 100)]


# -- rule 2: the maximum duration --------------------------------------------------------------------------------
def test_a_segment_without_a_pause_is_cut_hard_at_the_maximum():
    assert spans(probs((1.0, 300)), max_speech_duration_s=1.0) == [(0, 16000), (16000, 32000), (32000, 48000)]
    # a pause of 50 ms (under 98 ms) is no place to split
    p = probs((1.0, 50), (0.0, 5), (1.0, 150))
    assert spans(p, max_speech_duration_s=1.0, min_silence_duration_ms=200) == [(0, 16000), (16000, 32000),
                                                                                (32000, 205 * F)]
    # a cut that falls in a pause (of 30 ms, under 98 ms) ends the segment there, as Silero's: the next one starts
    # where speech resumes, never a segment of silence
    p = probs((1.0, 10), (0.0, 3), (1.0, 5), (0.0, 15))
    assert spans(p, max_speech_duration_s=0.1) == [(0, 10 * F), (13 * F, 23 * F)]


def test_an_over_long_segment_is_split_at_its_last_pause_longer_than_98_ms():
    p = probs((1.0, 50), (0.0, 12), (1.0, 100))  # a 120 ms pause, too short to end the segment (200 ms)
    assert spans(p, max_speech_duration_s=1.0, min_silence_duration_ms=200) == [(0, 50 * F), (62 * F, 162 * F)]
    p = probs((1.0, 20), (0.0, 12), (1.0, 20), (0.0, 12), (1.0, 100))
    assert spans(p, max_speech_duration_s=1.0, min_silence_duration_ms=200) == [(0, 52 * F), (64 * F, 164 * F)]
    # the split point is the pause going on when the maximum is reached, if long enough: speech is over there
    p = probs((1.0, 90), (0.0, 15), (1.0, 5))
    assert spans(p, max_speech_duration_s=1.0, min_silence_duration_ms=200) == [(0, 90 * F), (105 * F, 110 * F)]


def test_padded_segments_never_exceed_the_maximum():
    rng = np.random.default_rng(0)
    # 4 s bursts of speech with short random pauses (so the cuts are hard), 0.5 s of silence before each; the
    # last burst runs to the end of the audio, 150 samples after the last frame
    p = np.concatenate([np.r_[np.zeros(50), rng.random(400) < 0.9] for _ in range(8)])
    p[-3:] = 1.0
    limit = 1.5
    for pad in (0, 30, 200):
        found = timestamps_from_probabilities(p, TimestampOptions(max_speech_duration_s=limit, speech_pad_ms=pad,
                                                                  min_silence_duration_ms=300),
                                              num_samples=p.size * F + 150, delays=(0.07, 0.04))
        assert len(found) > 10 and found[-1]["end"] == p.size * F + 150
        assert max(s["end"] - s["start"] for s in found) <= limit * 16000
        assert all(a["end"] <= b["start"] for a, b in zip(found, found[1:]))


@settings(max_examples=1000, deadline=None, derandomize=True)  # seeded: the same examples each run
@given(units=st.lists(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.9]), max_size=60),
       repeat=st.integers(1, 12), extra=st.integers(0, 159), threshold=st.sampled_from([0.3, 0.5, 0.7]),
       min_speech=st.sampled_from([0, 10, 50, 250]), min_silence=st.sampled_from([0, 10, 30, 100, 300]),
       pad=st.sampled_from([0, 10, 30, 100, 200]), limit=st.sampled_from([math.inf, 0.03, 0.1, 0.3, 1.0]),
       delays=st.tuples(st.sampled_from([0.0, 0.01, 0.07, 0.2]), st.sampled_from([0.0, 0.01, 0.04, 0.3])))
def test_segments_are_sorted_disjoint_non_empty_and_within_the_audio_and_the_maximum(
        units, repeat, extra, threshold, min_speech, min_silence, pad, limit, delays):
    p = np.repeat(np.asarray(units, dtype=float), repeat)
    n = p.size * F + extra
    limit = limit + (2 * pad + 10) / 1000 + delays[0]  # the least the options and the onset delay allow, and more
    options = TimestampOptions(threshold=threshold, min_speech_duration_ms=min_speech,
                               min_silence_duration_ms=min_silence, speech_pad_ms=pad, max_speech_duration_s=limit)
    found = timestamps_from_probabilities(p, options, num_samples=n, delays=delays)
    assert all(0 <= s["start"] < s["end"] <= n for s in found), found
    assert all(a["end"] <= b["start"] for a, b in zip(found, found[1:])), found
    assert all(s["end"] - s["start"] <= limit * 16000 for s in found), found  # padding included


# -- rule 3: the minimum speech duration ---------------------------------------------------------------------
def test_segments_shorter_than_min_speech_are_dropped():
    p = probs((0.0, 10), (1.0, 24), (0.0, 20), (1.0, 25), (0.0, 20))
    assert spans(p, min_speech_duration_ms=250) == [(54 * F, 79 * F)]
    assert spans(p, min_speech_duration_ms=240) == [(10 * F, 34 * F), (54 * F, 79 * F)]
    assert spans(p, min_speech_duration_ms=251) == []


# -- rule 4: the model's delays ---------------------------------------------------------------------------------
def test_detected_boundaries_move_back_by_the_delays_cuts_and_the_end_do_not():
    p = probs((0.0, 50), (1.0, 50), (0.0, 20))
    assert spans(p, delays=(0.07, 0.04)) == [(50 * F - 1120, 100 * F - 640)]
    # open at the end of the audio: that end is no detection
    assert spans(probs((0.0, 50), (1.0, 50)), delays=(0.07, 0.04)) == [(50 * F - 1120, 100 * F)]
    # a hard cut is no detection either: (1 s less the 70 ms the start may move back) after the detected start
    found = spans(probs((0.0, 10), (1.0, 200)), delays=(0.07, 0.04), max_speech_duration_s=1.0)
    cut = 10 * F + 14880
    assert found == [(10 * F - 1120, cut), (cut, cut + 14880), (cut + 14880, 210 * F)]
    # a segment moved back into the previous one meets it halfway
    p = probs((1.0, 20), (0.0, 2), (1.0, 20), (0.0, 20))
    (a0, a1), (b0, b1) = spans(p, min_silence_duration_ms=20, delays=(0.1, 0.0))
    assert a1 == b0 == (20 * F + 22 * F - 1600) // 2 and a0 == 0 and b1 == 42 * F
    # delays longer than the segments: a start moved back before the previous start, an end before its start (a
    # hard cut at 10 frames, the end of 11 frames moved back by 0.1 s, a burst moved back to 0): one segment left
    p = probs((0.9, 11), (0.0, 1), (0.9, 2), (0.0, 3))
    assert spans(p, min_silence_duration_ms=10, max_speech_duration_s=0.3, delays=(0.2, 0.1)) == [(0, 10 * F)]


# -- rule 5: padding -------------------------------------------------------------------------------------------
def test_padding_is_clipped_to_the_audio_and_shared_between_close_segments():
    p = probs((0.0, 50), (1.0, 50), (0.0, 50))
    assert spans(p, speech_pad_ms=30) == [(50 * F - 480, 100 * F + 480)]
    assert spans(probs((1.0, 50), (0.0, 20)), speech_pad_ms=30) == [(0, 50 * F + 480)]
    assert spans(probs((0.0, 20), (1.0, 50)), speech_pad_ms=30, num_samples=70 * F + 7) == [(20 * F - 480, 70 * F + 7)]
    # a 100 ms gap and 100 ms of padding: each side takes half of the gap, no overlap
    p = probs((0.0, 50), (1.0, 50), (0.0, 10), (1.0, 50), (0.0, 50))
    assert spans(p, speech_pad_ms=100) == [(50 * F - 1600, 100 * F + 800), (110 * F - 800, 160 * F + 1600)]


# -- against Silero's own implementation -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_equals_silero_get_speech_timestamps_from_probs(seed):
    """silero-vad's pure function on the same probabilities. Its windows are 512 samples, ours 160, so the
    probabilities are constant over 160 ms units (5 windows, 16 frames) and the durations avoid the one window
    by which Silero's silence and strict speech minimum differ; the last second is silent (an open pause ends
    the same way in both)."""
    silero = pytest.importorskip("silero_vad.utils_vad")
    if not hasattr(silero, "get_speech_timestamps_from_probs"):
        pytest.skip("silero-vad without get_speech_timestamps_from_probs")
    rng = np.random.default_rng(seed)
    units = np.r_[rng.choice([0.0, 0.2, 0.4, 0.9], size=120, p=[0.3, 0.1, 0.2, 0.4]), np.zeros(7)]
    units = np.repeat(units, rng.integers(1, 4, units.size))  # runs of 1-3 units
    ours, theirs = np.repeat(units, 16), np.repeat(units, 5)
    compared = 0
    for min_silence, min_speech, pad in [(100, 250, 30), (200, 100, 0), (400, 500, 100), (100, 100, 200)]:
        options = dict(threshold=0.5, neg_threshold=0.3, min_silence_duration_ms=min_silence,
                       min_speech_duration_ms=min_speech, speech_pad_ms=pad)
        expected = silero.get_speech_timestamps_from_probs(list(theirs), **options,
                                                           use_max_poss_sil_at_max_speech=False)
        assert timestamps_from_probabilities(ours, TimestampOptions(**options)) == expected
        compared += len(expected)
    assert compared > 20


@pytest.mark.parametrize("seed", range(4))
def test_equals_silero_get_speech_timestamps_from_probs_splitting_at_the_maximum(seed):
    """The split at ``max_speech_duration_s`` against silero-vad's (``use_max_poss_sil_at_max_speech=False``: at
    the last pause over 98 ms). Two differences are kept out: a hard cut (Silero starts the next segment one window
    later, we at once) and the instant the maximum is reached (Silero checks at its 32 ms windows, we at our
    10 ms frames: with ``max * 16000 - 2 pads`` a multiple of 160 ms both reach it at the same sample). So speech
    comes in runs of 1-3 units of 160 ms between pauses of 1, 2 or 4 units (every run of 9 units holds a pause
    over 98 ms) and the maximum and pad pairs leave 6, 9 and 12 units."""
    silero = pytest.importorskip("silero_vad.utils_vad")
    if not hasattr(silero, "get_speech_timestamps_from_probs"):
        pytest.skip("silero-vad without get_speech_timestamps_from_probs")
    rng = np.random.default_rng(seed)
    units = []
    for _ in range(60):  # a run of speech opens with a unit over the threshold; 0.4 lies between the thresholds
        units += [0.9, *rng.choice([0.9, 0.4], size=rng.integers(0, 3))]
        units += [*rng.choice([0.0, 0.2], size=rng.choice([1, 2, 4], p=[0.5, 0.3, 0.2]))]
    units = np.r_[units, np.zeros(7)]
    ours, theirs = np.repeat(units, 16), np.repeat(units, 5)
    split = 0
    for min_silence, min_speech, limit, pad in [(400, 0, 1.0, 20), (400, 100, 1.5, 30), (500, 100, 2.0, 40)]:
        options = dict(threshold=0.5, neg_threshold=0.3, min_silence_duration_ms=min_silence,
                       min_speech_duration_ms=min_speech, speech_pad_ms=pad)
        expected = silero.get_speech_timestamps_from_probs(list(theirs), **options, max_speech_duration_s=limit,
                                                           use_max_poss_sil_at_max_speech=False)
        whole = silero.get_speech_timestamps_from_probs(list(theirs), **options, use_max_poss_sil_at_max_speech=False)
        assert timestamps_from_probabilities(ours, TimestampOptions(**options, max_speech_duration_s=limit)) \
            == expected
        split += len(expected) - len(whole)
    assert split > 30


# -- options and input checks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, match", [
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": 0.5, "neg_threshold": 0.6}, "neg_threshold"),
    ({"min_speech_duration_ms": -1}, "min_speech_duration_ms"),
    ({"min_silence_duration_ms": float("inf")}, "min_silence_duration_ms"),
    ({"speech_pad_ms": -5}, "speech_pad_ms"),
    ({"max_speech_duration_s": 0.05, "speech_pad_ms": 30}, "max_speech_duration_s"),
    ({"max_speech_duration_s": float("nan")}, "max_speech_duration_s"),
])
def test_options_out_of_range_are_refused(options, match):
    with pytest.raises(SoftWidthError, match=match):
        TimestampOptions(**options)


def test_bad_probabilities_and_lengths_are_refused():
    with pytest.raises(SoftWidthError, match="1-D"):
        timestamps_from_probabilities(np.zeros((2, 10)))
    with pytest.raises(SoftWidthError, match="finite"):
        timestamps_from_probabilities(np.array([0.1, np.nan]))
    for bad in (10 * F - 1, 11 * F, 10**6, 10 * F + 0.0, True):  # frames = samples // 160
        with pytest.raises(SoftWidthError, match="num_samples"):
            timestamps_from_probabilities(np.zeros(10), num_samples=bad)
    with pytest.raises(SoftWidthError, match="num_samples"):
        timestamps_from_probabilities(np.zeros(0), num_samples=True)
    assert spans(np.ones(10), num_samples=11 * F - 1) == [(0, 11 * F - 1)]
    for bad in ((-0.01, 0.0), (0.0, -0.04), (0.1,), (0.1, float("nan"))):  # a causal model reports late
        with pytest.raises(SoftWidthError, match="delays"):
            timestamps_from_probabilities(np.zeros(10), delays=bad)
    with pytest.raises(SoftWidthError, match="max_speech_duration_s"):  # the delays' growth eats the rest
        timestamps_from_probabilities(np.zeros(10), TimestampOptions(max_speech_duration_s=0.075),
                                      delays=(0.06, 0.0))


# -- the API with the shipped model on synthetic speech-like audio ---------------------------------------------------
def speechlike(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Harmonics under a 3-5 Hz syllable envelope (tests/data/test_vad_corpus.py's stand-in for speech)."""
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = rng.uniform(100, 220)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 9))
    return 0.2 * voiced * np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 0.5


def speech_file_audio(seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """1 s silence, 2 s speech, 1 s silence, 1.5 s speech, 1 s silence; the speech intervals in seconds."""
    rng = np.random.default_rng(seed)
    quiet = [1e-3 * rng.standard_normal(16000) for _ in range(3)]
    audio = np.concatenate([quiet[0], speechlike(rng, 2.0), quiet[1], speechlike(rng, 1.5), quiet[2]])
    return audio.astype(np.float32), [(1.0, 3.0), (4.0, 5.5)]


shipped = pytest.mark.skipif(not (DEFAULT_MODEL / "model.json").exists(), reason="no shipped model")


@pytest.fixture(scope="module")
def model():
    return load()


@shipped
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_get_speech_timestamps_finds_the_known_segments(model, seed):
    audio, truth = speech_file_audio(seed)
    found = get_speech_timestamps(audio, model, min_silence_duration_ms=300, return_seconds=True)
    assert len(found) == 2, found
    for seg, (start, end) in zip(found, truth):  # within 150 ms of the truth padded by 30 ms
        assert abs(seg["start"] - (start - 0.03)) <= 0.15 and abs(seg["end"] - (end + 0.03)) <= 0.15, (found, truth)


@shipped
def test_get_speech_timestamps_is_the_probabilities_through_the_rules_with_the_models_threshold_and_delays(model):
    audio, _ = speech_file_audio(3)
    info = model.vad_info
    expected = timestamps_from_probabilities(
        speech_probabilities(audio, model), TimestampOptions(threshold=info["threshold"], speech_pad_ms=10),
        num_samples=audio.size, delays=(info["start_shift"], info["end_shift"]))
    assert expected and get_speech_timestamps(audio, model, speech_pad_ms=10) == expected
    assert get_speech_timestamps(torch.from_numpy(audio), model, speech_pad_ms=10) == expected
    seconds = get_speech_timestamps(audio, model, speech_pad_ms=10, return_seconds=True)
    assert seconds == [{k: round(v / 16000, 3) for k, v in s.items()} for s in expected]
    # a threshold over every probability finds nothing; the model's own threshold is not 0.5
    assert get_speech_timestamps(audio, model, threshold=1.0) == []
    assert info["threshold"] != 0.5


def test_speech_probabilities_equal_the_batch_model():
    torch.manual_seed(0)
    plain = sw.consolidate(build_model("crnn", {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}).eval())
    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 12 + 77)  # more than one 10 s block
    with torch.no_grad():
        batch = torch.sigmoid(plain(power_spectrum(x)[None]))[0].numpy()
    got = speech_probabilities(x, plain)
    assert got.shape == (x.size // 160,)
    np.testing.assert_allclose(got, batch, atol=1e-5, rtol=0)


@pytest.mark.parametrize("audio, kwargs, match", [
    (np.zeros((2, 16000), np.float32), {}, r"1-D.*\(2, 16000\)"),
    (np.zeros(16000, np.float32), {"sampling_rate": 8000}, "16000 Hz"),
    (np.r_[np.zeros(1000), np.nan, np.zeros(1000)], {}, "NaN or inf.*index 1000"),
    (np.zeros(150, np.float32), {}, "too short: 150 samples"),
    (np.zeros(16000, np.int16), {}, "float samples"),
    (torch.zeros(16000, dtype=torch.int16), {}, "float samples"),
    (torch.zeros(1, 16000), {}, "1-D"),
])
def test_get_speech_timestamps_refuses_bad_audio_clearly(audio, kwargs, match):
    torch.manual_seed(0)
    plain = sw.consolidate(build_model("crnn", {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}).eval())
    with pytest.raises(SoftWidthError, match=match):
        get_speech_timestamps(audio, plain, **kwargs)


# -- load -----------------------------------------------------------------------------------------------------------
@shipped
def test_load_gives_the_shipped_model_with_its_calibration(model):
    for name in ("default", Path("default")):  # the CLI's --model default is a Path
        again = load(name)
        assert type(again) is type(model) and again.vad_info == model.vad_info
    assert {"threshold", "start_shift", "end_shift"} <= model.vad_info.keys()
    x = torch.rand(1, 50, 201)
    assert torch.equal(load(None)(x), model(x))


def test_load_reads_a_saved_directory_and_refuses_unknown_names(tmp_path):
    torch.manual_seed(0)
    sizes = {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}
    plain = sw.consolidate(build_model("crnn", sizes).eval())
    folder = save_vad(plain, tmp_path / "mine", kind="crnn", sizes=sizes, threshold=0.3, start_shift=0.05)
    loaded = load(folder)
    x = torch.rand(1, 30, 201)
    assert torch.equal(loaded(x), plain(x)) and loaded.vad_info["threshold"] == 0.3
    for name in ("silero_vad", str(tmp_path / "nowhere"), Path("silero_vad")):
        with pytest.raises(SoftWidthError, match="no VAD model named"):
            load(name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SoftWidthError, match="model.json is missing"):
        load(tmp_path / "empty")
    with pytest.raises(SoftWidthError, match="expects 'default'"):
        load(3)


# -- VADIterator -----------------------------------------------------------------------------------------------------
@shipped
@pytest.mark.parametrize("chunk", [512, 1000, 16000])
def test_vad_iterator_events_equal_the_batch_segments(model, chunk):
    audio, _ = speech_file_audio(0)
    expected = get_speech_timestamps(audio, model, min_silence_duration_ms=300, min_speech_duration_ms=0)
    vad = VADIterator(model, min_silence_duration_ms=300)
    events = []
    for i in range(0, audio.size, chunk):
        events += vad(audio[i:i + chunk])
    events += vad.flush()
    assert [list(e) for e in events] == [["start"], ["end"]] * len(expected)
    assert [(a["start"], b["end"]) for a, b in zip(events[::2], events[1::2])] == \
        [(s["start"], s["end"]) for s in expected]
    with pytest.raises(SoftWidthError, match="reset_states"):
        vad(audio[:512])
    vad.reset_states()
    assert vad(audio[:512], return_seconds=True) == []


def test_vad_iterator_closes_an_open_segment_at_the_end_of_the_stream():
    torch.manual_seed(0)
    plain = sw.consolidate(build_model("crnn", {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}).eval())
    vad = VADIterator(plain, threshold=0.0, speech_pad_ms=0)  # every frame is speech
    assert vad(np.zeros(1000, np.float32)) == [{"start": 0}]
    assert vad(np.zeros(600, np.float32)) == []
    assert vad.flush(return_seconds=True) == [{"end": 0.1}]
    assert vad.flush() == []
    with pytest.raises(SoftWidthError, match="16000 Hz"):
        VADIterator(plain, sampling_rate=8000)


def buzz_audio() -> np.ndarray:
    """6 s of faint noise with a voiced buzz (140 Hz) from 1 to 2.5 s and from 3.5 to 5 s (the README's)."""
    t = np.arange(6 * 16000) / 16000
    on = ((t > 1) & (t < 2.5)) | ((t > 3.5) & (t < 5))
    return (np.random.default_rng(0).normal(0, 1e-3, t.size) + 0.2 * ((140 * t) % 1 - 0.5) * on).astype(np.float32)


def stream(vad: VADIterator, audio: np.ndarray, chunk: int) -> tuple[list[dict], list[dict]]:
    """The events of ``audio`` pushed ``chunk`` samples at a time, and those of the flush."""
    events = []
    for i in range(0, audio.size, chunk):
        events += vad(audio[i:i + chunk])
    return events, vad.flush()


@shipped
@pytest.mark.parametrize("chunk", [512, 16000])
def test_vad_iterator_ends_padded_longer_than_the_silence_equal_the_batch_ends(model, chunk):
    # a 200 ms pad outlasts the 100 ms of silence after which an end is known: the end lies in audio not yet seen
    audio = buzz_audio()
    options = dict(min_silence_duration_ms=100, speech_pad_ms=200)
    expected = get_speech_timestamps(audio, model, min_speech_duration_ms=0, **options)
    events, last = stream(VADIterator(model, **options), audio, chunk)
    assert len(expected) == 2 and last == []
    assert events == [{k: s[k]} for s in expected for k in ("start", "end")]
    # the stream ends 80 ms after the speech, before the end is known: flush clips it to the stream
    short = audio[:int(5.08 * 16000)]
    events, last = stream(VADIterator(model, **options), short, 512)
    expected = get_speech_timestamps(short, model, min_speech_duration_ms=0, **options)
    assert events + last == [{k: s[k]} for s in expected for k in ("start", "end")] and last == [{"end": short.size}]
    # it ends 150 ms after: the end was known (and sent) before the stream's length, so it is not clipped (Silero's
    # never are)
    short = audio[:int(5.15 * 16000)]
    events, last = stream(VADIterator(model, **options), short, 512)
    assert last == [] and events[-1]["end"] > short.size
