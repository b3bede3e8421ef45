"""Tests of softwidth_studies.data.audio: reading (formats, mono mix, resampling, bad files) and atomic WAV writing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from softwidth_studies.data.audio import AudioError, AudioInfo, audio_info, read_audio, write_wav
from softwidth.errors import SoftWidthError


def _sine(freq: float, rate: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("ext, subtype, atol", [("wav", "PCM_16", 1e-4), ("flac", "PCM_16", 1e-4),
                                                ("ogg", "VORBIS", 0.05)])
def test_reads_formats_at_native_rate(tmp_path, ext, subtype, atol):
    x = _sine(440, 16000)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, subtype=subtype)
    y = read_audio(path, 16000)
    assert y.dtype == np.float32 and y.shape == x.shape and y.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(y, x, atol=atol)
    info = audio_info(path)
    assert info == AudioInfo(16000, 1, len(x), 0.5, info.format, subtype)


def test_resampling_matches_scipy_and_keeps_frequency(tmp_path):
    x = _sine(440, 22050, seconds=1.0)
    sf.write(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    y = read_audio(tmp_path / "a.wav", 16000)
    ref = resample_poly(x, 320, 441)  # 16000/22050 reduced by gcd 50
    assert y.shape == ref.shape == (16000,)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert abs(_peak_hz(y, 16000) - 440) <= 1.0
    # An 8 kHz file up to 16 kHz: up 2, down 1.
    sf.write(tmp_path / "b.wav", _sine(300, 8000), 8000, subtype="FLOAT")
    z = read_audio(tmp_path / "b.wav", 16000)
    assert len(z) == 8000 and abs(_peak_hz(z, 16000) - 300) <= 2.0


def test_multichannel_is_averaged(tmp_path):
    left, right = _sine(440, 16000), _sine(1000, 16000, amp=0.25)
    sf.write(tmp_path / "st.flac", np.stack([left, right, np.zeros_like(left)], axis=1), 16000)
    y = read_audio(tmp_path / "st.flac", 16000)
    np.testing.assert_allclose(y, (left + right) / 3, atol=1e-4)


def test_silent_file_is_returned(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(800, np.float32), 8000)
    y = read_audio(tmp_path / "silence.wav", 16000)
    assert y.shape == (1600,) and not y.any()


def test_raw_gsm(tmp_path):
    x = _sine(500, 8000, seconds=0.4)  # 3200 samples = 20 GSM frames of 160
    path = tmp_path / "prompt.gsm"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, format="RAW", subtype="GSM610") as handle:
        handle.write(x)
    assert path.stat().st_size == 20 * 33
    y = read_audio(path, 8000)
    assert y.shape == (3200,)
    assert abs(_peak_hz(y, 8000) - 500) <= 25  # GSM is lossy; the tone survives
    assert audio_info(path).sample_rate == 8000 and audio_info(path).frames == 3200
    assert read_audio(path, 16000).shape == (6400,)


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _sine(440, 16000), 16000, subtype="PCM_16")
    raw = good.read_bytes()
    files = {
        "empty.wav": (b"", "empty file"),
        "random.wav": (np.random.default_rng(0).bytes(10), "Format not recognised"),
        "header.wav": (raw[:20], "libsndfile"),  # cut inside the fmt chunk
        "nodata.wav": (raw[:40], "libsndfile"),  # cut before the data chunk
        "halfdata.wav": (raw[: len(raw) // 2], "truncated WAV"),  # partial download: header promises more
        "text.wav": (b"this is a text file, not audio\n" * 4, "Format not recognised"),
        "short.gsm": (b"\x00" * 20, "no full 33-byte frame"),
    }
    flac = tmp_path / "good.flac"
    sf.write(flac, _sine(440, 16000), 16000)
    files["half.flac"] = (flac.read_bytes()[: flac.stat().st_size // 2], "decode")
    return files


def test_bad_files_raise_audio_error_with_path_and_reason(tmp_path):
    for name, (content, reason) in _bad_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AudioError) as info:
            read_audio(path, 16000)
        assert info.value.path == str(path), name
        assert reason in info.value.reason, (name, info.value.reason)
        assert str(path) in str(info.value) and isinstance(info.value, SoftWidthError)
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav", 16000)
    with pytest.raises(AudioError, match="not a regular file"):
        read_audio(tmp_path, 16000)


def test_zero_samples_and_nan_are_audio_errors(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(tmp_path / "zero.wav", 16000)
    x = _sine(440, 16000)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        read_audio(tmp_path / "nan.wav", 16000)


def test_max_seconds_guard(tmp_path):
    sf.write(tmp_path / "a.wav", _sine(440, 8000, seconds=2.0), 8000)
    assert read_audio(tmp_path / "a.wav", 8000, max_seconds=2.0).shape == (16000,)
    with pytest.raises(AudioError, match="longer than max_seconds=1.5"):
        read_audio(tmp_path / "a.wav", 8000, max_seconds=1.5)
    with pytest.raises(SoftWidthError, match="max_seconds"):
        read_audio(tmp_path / "a.wav", 8000, max_seconds=0)


def test_bad_arguments_are_softwidth_errors(tmp_path):
    sf.write(tmp_path / "a.wav", _sine(440, 8000), 8000)
    for rate in (0, -8000, 16000.0, True, None):
        with pytest.raises(SoftWidthError, match="sample_rate"):
            read_audio(tmp_path / "a.wav", rate)


def test_audio_error_pickles():
    err = pickle.loads(pickle.dumps(AudioError("/x/a.wav", "empty file (0 bytes)")))
    assert (err.path, err.reason) == ("/x/a.wav", "empty file (0 bytes)")
    assert "cannot read audio /x/a.wav: empty file" in str(err)


def test_write_wav_atomic_roundtrip_and_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, 4000) * 0.9).astype(np.float32)
    out = write_wav(tmp_path / "sub" / "x.wav", x, 16000)
    assert out == tmp_path / "sub" / "x.wav"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.wav"]  # no temp file left
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("WAV", "PCM_16", 16000, 4000)
    y = read_audio(out, 16000)
    np.testing.assert_allclose(y, x, atol=2 / 32768)  # PCM16 quantisation (half a step + scale mismatch)
    first = out.read_bytes()
    write_wav(out, x, 16000)
    assert out.read_bytes() == first


def test_write_wav_clips_and_validates(tmp_path):
    y = write_wav(tmp_path / "c.wav", np.array([2.0, -3.0, 0.5], np.float32), 8000)
    np.testing.assert_allclose(sf.read(y, dtype="float32")[0], [1.0, -1.0, 0.5], atol=1e-4)
    stereo = write_wav(tmp_path / "s.wav", np.zeros((10, 2), np.float32), 8000)
    assert sf.info(stereo).channels == 2
    for bad in (np.zeros(0), np.zeros((2, 2, 2)), np.array([0.0, np.inf])):
        with pytest.raises(SoftWidthError):
            write_wav(tmp_path / "bad.wav", bad, 8000)
    assert not (tmp_path / "bad.wav").exists()
