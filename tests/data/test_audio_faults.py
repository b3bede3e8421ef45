"""Bad audio: every kind of broken, odd or extreme file gives a clear AudioError or is handled (silent, clipped,
multi-channel, odd sample rates, a file longer than an hour), and a hypothesis fuzz of WAV headers (bytes of
valid headers mutated) finds nothing read_audio or audio_info does other than return finite audio or raise
AudioError, quickly. Complements tests/data/test_audio.py (formats, resampling, the basic bad files)."""

from __future__ import annotations

import io
import math
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softwidth_studies.data.audio import RATE_RANGE, AudioError, audio_info, read_audio

SR = 16000


def _tone(rate: int, seconds: float = 0.25, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav_bytes(x: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _header(rate: int, frames: int, *, channels: int = 1, bits: int = 16, code: int = 1,
            data_bytes: int | None = None) -> bytes:
    """A canonical 44-byte RIFF/WAVE header (``code`` 1 = PCM, 3 = IEEE float)."""
    block = channels * bits // 8
    data = frames * block if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", (36 + data) & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, code, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
            + b"data" + struct.pack("<I", data & 0xFFFFFFFF))


def _sparse_wav(path: Path, rate: int, seconds: float) -> int:
    """A 16-bit mono WAV of ``seconds`` of digital silence, written as a header plus a sparse extent (no data
    blocks on disk, so an hour costs nothing); returns its frames."""
    frames = int(rate * seconds)
    head = _header(rate, frames)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 2 * frames)
    return frames


# -- broken files: one clear AudioError each ---------------------------------------------------------------

def _broken() -> dict[str, tuple[bytes, str]]:
    """name -> (content, the reason read_audio gives); audio_info gives the same except where noted."""
    good = _wav_bytes(_tone(SR), SR)
    return {
        "empty.wav": (b"", "empty file (0 bytes)"),
        "truncated-data.wav": (good[: len(good) // 3],
                               ("truncated WAV: the data chunk declares 8000 bytes, the file holds 2637")),
        "truncated-header.wav": (good[:30], "libsndfile: Error in WAV file. No 'data' chunk marker."),
        "riff-only.wav": (b"RIFF\x00\x00\x00\x00WAVE", "libsndfile: Error in WAV file. No 'data' chunk marker."),
        "no-channels.wav": (_header(SR, 0, channels=0, data_bytes=64) + bytes(64),
                            "libsndfile: Channel count is zero."),
        "zero-rate.wav": (_header(0, 32) + bytes(64), "libsndfile: Internal error : SF_INFO struct incomplete."),
        "huge-rate.wav": (_header(0x7FFFFFFF, 32) + bytes(64), "implausible sample rate 2147483647 Hz"),
        "tiny-rate.wav": (_header(4, 32) + bytes(64), "implausible sample rate 4 Hz"),
        "odd-bits.wav": (_header(SR, 32, bits=7) + bytes(64), "no audio samples"),  # audio_info: 0 frames
        "float-16bit.wav": (_header(SR, 32, code=3) + bytes(64), "libsndfile: Unspecified internal error."),
        "mp3-in-wav.wav": (_header(SR, 32, code=0x55) + bytes(64), "Malformed 'fmt ' chunk."),
        "text.wav": (b"just some text, not audio\n" * 8, "libsndfile: Format not recognised."),
        "image.flac": (b"\x89PNG\r\n\x1a\n" + bytes(64), "libsndfile: Format not recognised."),
        "random.ogg": (np.random.default_rng(0).bytes(4096), "libsndfile: Format not recognised."),
        "json.wav": (b'{"not": "audio"}', "libsndfile: Format not recognised."),
        "npy.wav": (b"\x93NUMPY\x01\x00v\x00" + bytes(118), "libsndfile: Format not recognised."),
    }


def test_broken_files_give_one_clear_audio_error(tmp_path):
    for name, (content, reason) in _broken().items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AudioError) as info:
            read_audio(path, SR)
        message = str(info.value)
        assert info.value.path == str(path) and reason in info.value.reason, (name, info.value.reason)
        assert message.startswith(f"cannot read audio {path}: ") and "\n" not in message, name
        if name == "odd-bits.wav":  # a header libsndfile accepts; only decoding finds nothing in it
            assert audio_info(path).frames == 0
            continue
        with pytest.raises(AudioError) as info:
            audio_info(path)
        assert reason in info.value.reason, (name, info.value.reason)


def test_missing_paths_and_directories(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "nope.wav", SR)
    with pytest.raises(AudioError, match="not a regular file"):
        audio_info(tmp_path)


# -- extreme but valid files: handled --------------------------------------------------------------------

def test_silent_and_clipped_files_are_returned_as_they_are(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    assert not read_audio(tmp_path / "silent.wav", SR).any()
    square = np.sign(_tone(SR)) * 1.5  # clipped at full scale by the 16-bit writer
    sf.write(tmp_path / "clipped.wav", square, SR, subtype="PCM_16")
    y = read_audio(tmp_path / "clipped.wav", SR)
    assert y.min() == -1.0 and y.max() == pytest.approx(1.0, abs=1e-4) and np.isfinite(y).all()
    sf.write(tmp_path / "hot.wav", square * 4, SR, subtype="FLOAT")  # float WAV over full scale: kept
    y = read_audio(tmp_path / "hot.wav", 8000)  # resampled: the filter's overshoot stays finite
    assert np.isfinite(y).all() and 5.0 < np.abs(y).max() < 8.0


def test_samples_near_the_float32_limit_that_overflow_when_resampled(tmp_path):
    sf.write(tmp_path / "edge.wav", np.full(800, 3e38, np.float32) * np.sign(_tone(SR)[:800]), SR,
             subtype="FLOAT")
    assert np.isfinite(read_audio(tmp_path / "edge.wav", SR)).all()  # native rate: returned as stored
    with pytest.raises(AudioError, match="overflow when resampled"):
        read_audio(tmp_path / "edge.wav", 44100)


@pytest.mark.parametrize("channels", [2, 6, 16])
def test_multichannel_files_are_averaged(tmp_path, channels):
    x = np.stack([_tone(SR, amp=0.1 * (c + 1) / channels) for c in range(channels)], axis=1)
    sf.write(tmp_path / "multi.wav", x, SR, subtype="FLOAT")
    y = read_audio(tmp_path / "multi.wav", SR)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)
    assert audio_info(tmp_path / "multi.wav").channels == channels


@pytest.mark.parametrize("rate", [1000, 8000, 11025, 12345, 22050, 44100, 48000, 96000, 192000, 768000])
def test_odd_and_extreme_sample_rates_are_resampled(tmp_path, rate):
    x = _tone(rate, seconds=0.25, freq=300.0)
    sf.write(tmp_path / "r.wav", x, rate, subtype="FLOAT")
    y = read_audio(tmp_path / "r.wav", SR)
    assert y.dtype == np.float32 and len(y) == math.ceil(len(x) * SR / rate) and np.isfinite(y).all()
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spectrum)] - 300.0) < 10  # the tone survives


@pytest.mark.parametrize("rate, reason", [(44101, "no affordable exact resampling"),
                                          (96001, "no affordable exact resampling"),
                                          (RATE_RANGE[1] + 1, "implausible sample rate"),
                                          (RATE_RANGE[0] - 1, "implausible sample rate")])
def test_rates_that_cannot_be_resampled_affordably_are_refused_up_front(tmp_path, rate, reason):
    (tmp_path / "r.wav").write_bytes(_header(rate, 64) + bytes(128))
    start = time.monotonic()
    with pytest.raises(AudioError, match=reason):
        read_audio(tmp_path / "r.wav", SR)
    assert time.monotonic() - start < 1.0
    if rate in RATE_RANGE:  # in range but prime-ish: read at its own rate it is fine
        assert len(read_audio(tmp_path / "r.wav", rate)) == 64


HOUR = 3700.0  # seconds: more than an hour


def test_a_file_longer_than_an_hour_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    frames = _sparse_wav(path, SR, HOUR)
    info = audio_info(path)
    assert (info.frames, info.duration) == (frames, HOUR)
    tracemalloc.start()
    start = time.monotonic()
    with pytest.raises(AudioError, match=r"3700.0 s is longer than max_seconds=600"):
        read_audio(path, SR, max_seconds=600)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.monotonic() - start < 0.5 and peak < 1 << 20  # nothing decoded


@pytest.mark.parametrize("rate", [SR, 8000])
def test_a_file_longer_than_an_hour_reads_in_float32_without_a_float64_copy(tmp_path, rate):
    """Without max_seconds an hour is read: float32 throughout (the blocks, their concatenation, the output);
    a float64 copy of the file anywhere would add 8 bytes per input sample and break the bound."""
    path = tmp_path / "long.wav"
    frames = _sparse_wav(path, rate, HOUR)
    tracemalloc.start()
    y = read_audio(path, SR)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert y.dtype == np.float32 and len(y) == int(HOUR * SR) and not y[:: SR * 60].any()
    assert peak < 2 * 4 * frames + 1.5 * y.nbytes + (16 << 20), peak / 1e6


# -- fuzz: mutated headers ----------------------------------------------------------------------------------

BASES = {
    "pcm16-mono-8k": _wav_bytes(_tone(8000, 0.1), 8000),
    "float-stereo-44k": _wav_bytes(np.stack([_tone(44100, 0.05)] * 2, axis=1), 44100, "FLOAT"),
    "u8-mono-22k": _wav_bytes(_tone(22050, 0.05), 22050, "PCM_U8"),
    "pcm24-3ch-48k": _wav_bytes(np.stack([_tone(48000, 0.03)] * 3, axis=1), 48000, "PCM_24"),
    "wavex-pcm16-16k": _wav_bytes(_tone(SR, 0.05), SR, "PCM_16", fmt="WAVEX"),
}
WORDS = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x01\x00\x00\x00", b"\x00\x00\x01\x00",
         b"data", b"fmt ", b"RIFF", b"LIST"]


FIELDS = {4: "<I", 16: "<I", 20: "<H", 22: "<H", 24: "<I", 28: "<I", 32: "<H", 34: "<H", 40: "<I"}  # offset: size
FIELD_VALUES = [0, 1, 2, 3, 7, 8, 24, 255, 999, 44101, 96001, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated(draw):
    """A valid WAV whose first 80 bytes (the RIFF, fmt and data headers) get 1-4 mutations: a header field
    (RIFF size, fmt size, format code, channels, sample rate, byte rate, block align, bits, data size) set to
    an edge value, a byte, a 32-bit word (0, -1, INT_MAX, 1, 65536, a chunk id), a deletion or an insertion;
    sometimes also cut short."""
    data = bytearray(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, 79))
        kind = draw(st.sampled_from(["field", "field", "byte", "word", "delete", "insert"]))
        if kind == "field" and len(data) >= 44:
            offset = draw(st.sampled_from(sorted(FIELDS)))
            code = FIELDS[offset]
            value = draw(st.one_of(st.sampled_from(FIELD_VALUES), st.integers(0, 2**32 - 1)))
            data[offset:offset + struct.calcsize(code)] = struct.pack(code, value % (1 << 8 * struct.calcsize(code)))
        elif kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "word":
            data[pos:pos + 4] = draw(st.sampled_from(WORDS))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=mutated(), target=st.sampled_from([8000, SR, 44100]))
def test_fuzzed_headers_give_audio_or_an_audio_error(tmp_path, content, target):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(content)
    start = time.monotonic()
    try:
        info = audio_info(path)
    except AudioError as err:
        assert "\n" not in str(err)
    else:
        assert RATE_RANGE[0] <= info.sample_rate <= RATE_RANGE[1] and info.channels >= 1 and info.frames >= 0
    try:
        y = read_audio(path, target)
    except AudioError as err:
        assert str(err).startswith(f"cannot read audio {path}: ") and "\n" not in str(err)
    else:
        assert y.dtype == np.float32 and y.ndim == 1 and len(y) > 0 and np.isfinite(y).all()
    assert time.monotonic() - start < 5.0  # no pathological resampling or scanning
