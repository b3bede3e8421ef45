"""Tests of softwidth_studies.data.features: batched log-mel and LFCC, and the float16 feature cache.

References: log-mel against librosa (``melspectrogram(htk=True, norm=None, center=True, pad_mode="reflect")``,
the front end's padding); LFCC against a numpy/scipy implementation written here (numpy framing and rfft,
``np.interp`` triangles, ``scipy.fft.dct(type=2, norm="ortho")``). Tolerances, on natural-log features:
float64 input within 1e-6; float32 input within 1e-3 (log-mel: where the mel power is above 1e-6, most
features; LFCC: every coefficient). Measured: float32 log-mel <= 9e-5, float32 LFCC <= 3e-5 (|c| up to 76).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from softwidth_studies.data import features
from softwidth_studies.data.audio import AudioError, read_audio, write_wav
from softwidth_studies.data.features import (
    FeatureCache,
    FeatureConfig,
    extract,
    lfcc,
    linear_filters,
    log_mel,
)
from softwidth.errors import SoftWidthError
from softwidth.layers.frontend import LogMel

EPS = 1e-6


def signal(samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A tone, a chirp, noise and a stretch of digital silence (so the eps floor is exercised)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    y = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * scipy.signal.chirp(t, 100, t[-1], sample_rate / 2.5)
    y += 0.05 * rng.standard_normal(samples)
    y[samples // 3: samples // 3 + samples // 8] = 0.0
    return y


# -- log-mel -------------------------------------------------------------------------------------------
MEL_CASES = [
    dict(sample_rate=16000, n_fft=400, hop_length=160, win_length=None, n_mels=80, f_min=0.0, f_max=None),
    dict(sample_rate=8000, n_fft=256, hop_length=80, win_length=200, n_mels=40, f_min=100.0, f_max=3800.0),
]


@pytest.mark.parametrize("case", MEL_CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-3)])
def test_log_mel_matches_librosa(case, dtype, tol):
    librosa = pytest.importorskip("librosa")
    sr = case["sample_rate"]
    y = signal(sr // 2 + 37, sr)
    ours = log_mel(torch.tensor(y, dtype=dtype), **case)
    assert ours.dtype == dtype
    ref = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=case["n_fft"], hop_length=case["hop_length"], win_length=case["win_length"],
        window="hann", n_mels=case["n_mels"], fmin=case["f_min"], fmax=case["f_max"], htk=True, norm=None,
        power=2.0, center=True, pad_mode="reflect").T  # (frames, n_mels)
    assert ours.shape == ref.shape == (1 + len(y) // case["hop_length"], case["n_mels"])
    above = ref > EPS
    assert above.mean() > 0.5  # the comparison covers most of the features
    diff = np.abs(ours.double().numpy() - np.log(ref + EPS))
    assert diff[above].max() < tol


def test_log_mel_equals_the_front_end_layer():
    """One STFT in the package: log_mel is a full-width LogMel layer's output."""
    x = torch.tensor(signal(4000, 8000), dtype=torch.float32)
    layer = LogMel(sample_rate=8000, n_fft=256, hop_length=80, win_length=200, n_mels=24, f_min=50.0).eval()
    ours = log_mel(x, sample_rate=8000, n_fft=256, hop_length=80, win_length=200, n_mels=24, f_min=50.0)
    torch.testing.assert_close(ours, layer(x), atol=1e-5, rtol=0)


# -- LFCC ------------------------------------------------------------------------------------------------
def reference_lfcc(y, *, sr, n_fft, hop, win, n_filters, n_coeffs, f_min, f_max):
    """LFCC in numpy/scipy, written independently of the torch code."""
    padded = np.pad(y, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left:left + win] = scipy.signal.get_window("hann", win, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # (frames, n_freq)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.linspace(f_min, f_max, n_filters + 2)
    bank = np.stack([np.interp(freqs, edges[i:i + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0)
                     for i in range(n_filters)], axis=1)
    return scipy.fft.dct(np.log(power @ bank + EPS), type=2, norm="ortho", axis=-1)[:, :n_coeffs]


LFCC_CASES = [
    dict(sample_rate=16000, n_fft=512, hop_length=160, win_length=320, n_filters=20, n_coeffs=20, f_min=0.0,
         f_max=8000.0),
    dict(sample_rate=8000, n_fft=256, hop_length=100, win_length=None, n_filters=30, n_coeffs=13, f_min=60.0,
         f_max=3600.0),
]


@pytest.mark.parametrize("case", LFCC_CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-3)])
def test_lfcc_matches_numpy_reference(case, dtype, tol):
    sr = case["sample_rate"]
    y = signal(sr // 2 + 11, sr, seed=1)
    ours = lfcc(torch.tensor(y, dtype=dtype), **case)
    ref = reference_lfcc(y, sr=sr, n_fft=case["n_fft"], hop=case["hop_length"],
                         win=case["win_length"] or case["n_fft"], n_filters=case["n_filters"],
                         n_coeffs=case["n_coeffs"], f_min=case["f_min"], f_max=case["f_max"])
    assert ours.shape == ref.shape == (1 + len(y) // case["hop_length"], case["n_coeffs"])
    assert np.abs(ours.double().numpy() - ref).max() < tol


def test_linear_filters_are_unit_triangles_equally_spaced_in_hz():
    bank = linear_filters(4, n_fft=16, sample_rate=1600.0, f_min=0.0, f_max=800.0)  # bins every 100 Hz
    assert bank.shape == (9, 4)
    # edges 0, 160, 320, ... Hz: filter 0 rises to 1 at 160 Hz and falls to 0 at 320 Hz, so bins 100, 200, 300 Hz
    # give 100/160, (320-200)/160, (320-300)/160
    np.testing.assert_allclose(bank[:5, 0].numpy(), [0.0, 0.625, 0.75, 0.125, 0.0])
    assert bool((bank >= 0).all()) and bool((bank <= 1).all())
    with pytest.raises(SoftWidthError, match="f_max"):
        linear_filters(4, n_fft=16, sample_rate=1600.0, f_max=900.0)


# -- batching and shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logmel", "lfcc"])
def test_batch_equals_per_item(kind):
    config = FeatureConfig(kind=kind, sample_rate=8000, n_fft=256, hop_length=80, n_mels=32, n_filters=24,
                           n_coeffs=16)
    batch = torch.randn(3, 2001, generator=torch.Generator().manual_seed(0))
    together = extract(batch, config)
    assert together.shape == (3, config.frames(2001), config.dim) == (3, 26, config.dim)
    for i in range(3):
        alone = extract(batch[i], config)
        assert alone.shape == (26, config.dim)
        torch.testing.assert_close(together[i], alone, atol=1e-5, rtol=0)


def test_half_precision_input_is_computed_in_float32():
    x = torch.tensor(signal(2000, 8000), dtype=torch.float16)
    out = log_mel(x, sample_rate=8000, n_fft=256, hop_length=80, n_mels=20)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, log_mel(x.float(), sample_rate=8000, n_fft=256, hop_length=80, n_mels=20))


# -- argument errors ---------------------------------------------------------------------------------------
GOOD = dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=20)
X = torch.zeros(1000)


@pytest.mark.parametrize("change,match", [
    (dict(n_fft=0), "n_fft"), (dict(n_fft=256.0), "n_fft"), (dict(hop_length=0), "hop_length"),
    (dict(hop_length=300), "hop_length"), (dict(win_length=257), "win_length"), (dict(n_mels=0), "n_mels"),
    (dict(sample_rate=-1), "sample_rate"), (dict(f_max=4001.0), "f_max"), (dict(f_min=500.0, f_max=400.0), "f_min"),
    (dict(log_eps=0.0), "log_eps"),
])
def test_bad_arguments_raise(change, match):
    with pytest.raises(SoftWidthError, match=match):
        log_mel(X, **{**GOOD, **change})


@pytest.mark.parametrize("waveform,match", [
    (torch.zeros(2, 3, 1000), "shape"), (torch.zeros(1000, dtype=torch.int16), "floating"),
    (torch.full((1000,), float("nan")), "NaN"), (torch.zeros(100), "samples"), (np.zeros(1000), "ndarray"),
])
def test_bad_waveforms_raise(waveform, match):
    with pytest.raises(SoftWidthError, match=match):
        log_mel(waveform, **GOOD)


def test_lfcc_needs_no_more_coefficients_than_filters():
    with pytest.raises(SoftWidthError, match="n_coeffs"):
        lfcc(X, sample_rate=8000, n_fft=256, hop_length=80, n_filters=10, n_coeffs=11)


@pytest.mark.parametrize("change", [dict(kind="mfcc"), dict(n_fft=-1), dict(f_max=9000.0), dict(hop_length=500),
                                    dict(n_coeffs=30), dict(sample_rate=16000.5)])
def test_bad_config_raises(change):
    with pytest.raises(SoftWidthError, match="FeatureConfig"):
        FeatureConfig(**change)


# -- cache -----------------------------------------------------------------------------------------------
SR = 8000
SMALL = FeatureConfig(sample_rate=SR, n_fft=256, hop_length=80, n_mels=24)


@pytest.fixture
def wavs(tmp_path):
    """Three 0.5 s files and one 0.3 s file at 16 kHz (the cache reads them at 8 kHz: resampled)."""
    paths = []
    for i, seconds in enumerate([0.5, 0.5, 0.3, 0.5]):
        path = tmp_path / "audio" / f"clip{i}.wav"
        write_wav(path, 0.5 * signal(int(seconds * 16000), 16000, seed=i), 16000)
        paths.append(path)
    return paths


@pytest.fixture
def count_extract(monkeypatch):
    calls = []

    def counting(waveform, config):
        calls.append(tuple(waveform.shape))
        return extract(waveform, config)

    monkeypatch.setattr(features, "extract", counting)
    return calls


def test_cache_round_trip_in_float16_and_second_call_reads_the_cache(tmp_path, wavs, count_extract):
    cache = FeatureCache(tmp_path / "cache", SMALL, batch_size=8)
    first = cache(wavs)
    # equal-length files are extracted together: one batch of three 0.5 s clips and one of the 0.3 s clip
    assert sorted(count_extract) == [(1, 2400), (3, 4000)]
    for path, feats in zip(wavs, first):
        fresh = extract(torch.from_numpy(read_audio(path, SR)), SMALL)
        assert feats.dtype == torch.float32 and feats.shape == fresh.shape
        # float16 keeps 11 significant bits: relative error <= 2**-11 (plus float32-vs-float32 batching noise)
        assert bool(((feats - fresh).abs() <= fresh.abs() * 2.0 ** -11 + 1e-5).all())
        stored = np.load(cache.path_for(path))
        assert stored.dtype == np.float16 and stored.shape == tuple(fresh.shape)
    count_extract.clear()
    second = cache(wavs)
    assert count_extract == []
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".npy"]  # no temp files left


def test_batch_size_bounds_each_extraction(tmp_path, wavs, count_extract):
    FeatureCache(tmp_path / "cache", SMALL, batch_size=2)(wavs)
    assert sorted(count_extract) == [(1, 2400), (1, 4000), (2, 4000)]


def test_cache_key_changes_with_config_and_file(tmp_path, wavs):
    path = wavs[0]
    base = FeatureCache(tmp_path / "c", SMALL)
    assert base.key(path) == FeatureCache(tmp_path / "c", FeatureConfig(**SMALL.to_dict())).key(path)
    others = [FeatureConfig(**{**SMALL.to_dict(), **change}) for change in
              (dict(n_mels=23), dict(kind="lfcc"), dict(hop_length=81), dict(f_min=10.0), dict(log_eps=1e-5))]
    keys = {base.key(path)} | {FeatureCache(tmp_path / "c", cfg).key(path) for cfg in others}
    assert len(keys) == 1 + len(others)
    assert base.key(wavs[1]) != base.key(path)
    old = base.key(path)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the file was touched: recompute
    assert base.key(path) != old


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "float32"])
def test_corrupt_cache_file_is_recomputed(tmp_path, wavs, count_extract, damage):
    cache = FeatureCache(tmp_path / "cache", SMALL)
    good = cache.get(wavs[0])
    target = cache.path_for(wavs[0])
    if damage == "garbage":
        target.write_bytes(b"not an npy file at all")
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:200])
    elif damage == "wrong_shape":
        np.save(target, np.zeros((5, 3), dtype=np.float16))
    else:
        np.save(target, good.numpy())  # float32: not what the cache writes
    count_extract.clear()
    again = cache.get(wavs[0])
    assert len(count_extract) == 1
    assert torch.equal(again, good)
    assert np.load(target).dtype == np.float16


def test_bad_audio_raises_or_is_skipped(tmp_path, wavs):
    empty = tmp_path / "audio" / "empty.wav"
    empty.write_bytes(b"")
    short = tmp_path / "audio" / "short.wav"
    write_wav(short, np.zeros(100), SR)  # 100 samples < n_fft // 2 + 1
    missing = tmp_path / "audio" / "missing.wav"
    cache = FeatureCache(tmp_path / "cache", SMALL)
    for bad in (empty, short, missing):
        with pytest.raises(AudioError):
            cache([wavs[0], bad])
    out = cache([wavs[0], empty, short, missing, wavs[2]], skip_errors=True)
    assert [o is None for o in out] == [False, True, True, True, False]
    assert out[0].shape == (SMALL.frames(4000), 24) and out[4].shape == (SMALL.frames(2400), 24)


def test_cache_arguments_are_checked(tmp_path, wavs):
    with pytest.raises(SoftWidthError, match="FeatureConfig"):
        FeatureCache(tmp_path, {"kind": "logmel"})
    with pytest.raises(SoftWidthError, match="batch_size"):
        FeatureCache(tmp_path, SMALL, batch_size=0)
    with pytest.raises(SoftWidthError, match="list"):
        FeatureCache(tmp_path, SMALL)(wavs[0])


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTWIDTH_CACHE", str(tmp_path / "home"))
    assert FeatureCache().cache_dir == tmp_path / "home" / "features"
