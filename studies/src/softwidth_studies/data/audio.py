"""Reading and writing audio: float32 mono at the rate you ask for, and a clear error for bad files.

:func:`read_audio` reads anything libsndfile reads (wav, flac, ogg/oga vorbis, ...) through soundfile, plus
header-less GSM 6.10 (``.gsm``: 8 kHz mono, 33-byte frames of 160 samples; the Asterisk es-co and fr-armelle
prompts). Channels are averaged to mono and other sample rates are resampled with
``scipy.signal.resample_poly`` using the gcd-reduced ratio (e.g. 44.1 kHz -> 16 kHz is up 160, down 441),
whose default Kaiser-windowed FIR is the anti-aliasing filter.

Every file that cannot give audio (missing, empty, not audio, corrupt or truncated header, truncated WAV data,
undecodable stream, zero samples, NaN/inf samples, longer than ``max_seconds``, a sample rate outside
:data:`RATE_RANGE` (a corrupt header), or a rate whose exact ratio to the one asked for is too costly to
resample, e.g. a prime rate of 44101 Hz) raises :class:`AudioError` carrying the path and the reason, so corpus
builders catch that one type, skip the file and count it. A silent (all-zero) file is valid audio and is
returned as is; so is a clipped one (samples at full scale).
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from softwidth.errors import SoftWidthError, is_number
from .cache import atomic_path

__all__ = ["AudioError", "AudioInfo", "audio_info", "read_audio", "write_wav"]

RATE_RANGE = (1000, 768000)  # Hz; a header outside it is corrupt (a resampler would need ~rate filter taps)
_MAX_RATIO = 1 << 15  # largest reduced up/down factor resampled: its FIR has 20x that many taps (~5 MB)

_GSM_RATE = 8000  # Hz; header-less GSM 6.10 is 8 kHz mono by definition
_GSM_FRAME = (33, 160)  # bytes per frame, samples per frame
_BLOCK = 1 << 18  # frames per read; bounds memory before the max_seconds check can trigger


class AudioError(SoftWidthError):
    """A file that cannot give audio. ``path`` and ``reason`` are attributes; builders skip and count it."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        # Both values go into args so the error pickles across worker processes.
        super().__init__(str(path), reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot read audio {self.path}: {self.reason} (skip the file or replace it)"


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, from its header: ``sample_rate`` (Hz), ``channels``, ``frames`` (samples per
    channel), ``duration`` (seconds), and libsndfile's ``format``/``subtype`` names (e.g. ``WAV``/``PCM_16``)."""

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _is_gsm(path: Path) -> bool:
    return path.suffix.lower() == ".gsm"


def _path(path, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise SoftWidthError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading, after the checks that need no decoder; errors become :class:`AudioError`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except OSError as err:
        raise AudioError(path, f"cannot stat the file ({err.strerror})") from None
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        if _is_gsm(path):
            if size < _GSM_FRAME[0]:
                raise AudioError(path, f"raw GSM file of {size} bytes holds no full 33-byte frame")
            return sf.SoundFile(path, format="RAW", subtype="GSM610", samplerate=_GSM_RATE, channels=1)
        handle = sf.SoundFile(path)
        if not RATE_RANGE[0] <= handle.samplerate <= RATE_RANGE[1]:
            rate = handle.samplerate
            handle.close()
            raise AudioError(path, f"implausible sample rate {rate} Hz in the header (corrupt?); expected "
                                   f"{RATE_RANGE[0]}..{RATE_RANGE[1]} Hz")
    except AudioError:
        raise
    except sf.LibsndfileError as err:
        raise AudioError(path, f"libsndfile: {err.error_string}") from None
    except (RuntimeError, TypeError, ValueError, OSError) as err:
        raise AudioError(path, f"soundfile: {err}") from None
    if handle.format in ("WAV", "WAVEX"):
        reason = _wav_truncation(path, size)
        if reason:
            handle.close()
            raise AudioError(path, reason)
    return handle


def _wav_truncation(path: Path, size: int) -> str | None:
    """The reason a RIFF/WAVE file is truncated (its ``data`` chunk declares more bytes than the file holds),
    or None. libsndfile silently reads what is there; a partial download must be skipped instead.
    Sizes 0 and 0xFFFFFFFF are what streaming writers put when they do not know the length: not truncation."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    return f"truncated WAV: the data chunk declares {chunk_size} bytes, the file holds {available}"
                return None
            offset += 8 + chunk_size + (chunk_size & 1)  # RIFF chunks are padded to even sizes
    return None


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header information of an audio file without decoding it. Raises :class:`AudioError` like
    :func:`read_audio` (except for problems only decoding reveals)."""
    p = _path(path, "audio_info")
    with _open(p) as handle:
        rate, frames = int(handle.samplerate), int(handle.frames)
        if rate <= 0:
            raise AudioError(p, f"invalid sample rate {rate} Hz in the header")
        return AudioInfo(rate, int(handle.channels), frames, frames / rate, handle.format, handle.subtype)


def read_audio(path: str | os.PathLike[str], sample_rate: int, *, max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file as float32 mono at ``sample_rate`` Hz.

    Args:
        path: an audio file (anything libsndfile reads; ``.gsm`` is read as header-less 8 kHz GSM 6.10).
        sample_rate: the rate of the returned samples, Hz; the file is resampled if its rate differs.
        max_seconds: if given, files longer than this (seconds, at the file's own rate) raise
            :class:`AudioError` before being decoded in full, so one huge file cannot exhaust memory.

    Returns:
        ``(samples,)`` float32 in [-1, 1] nominal (resampling may overshoot slightly), the mean of the
        channels; ``samples = ceil(frames * sample_rate / file_rate)``.

    Raises:
        AudioError: the file cannot give audio (see the module docstring for the cases).
        SoftWidthError: ``sample_rate`` or ``max_seconds`` is not a positive number.
    """
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
            or not RATE_RANGE[0] <= sample_rate <= RATE_RANGE[1]):
        raise SoftWidthError(f"read_audio: sample_rate must be a positive int in Hz, in {RATE_RANGE[0]}.."
                             f"{RATE_RANGE[1]}, got {sample_rate!r}")
    if max_seconds is not None and not (is_number(max_seconds) and max_seconds > 0):
        raise SoftWidthError(f"read_audio: max_seconds must be a positive number of seconds, got {max_seconds!r}")
    p = _path(path, "read_audio")
    with _open(p) as handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        if rate <= 0 or channels <= 0:
            raise AudioError(p, f"invalid header ({rate} Hz, {channels} channels)")
        g = math.gcd(rate, int(sample_rate))
        if max(rate, int(sample_rate)) // g > _MAX_RATIO:
            raise AudioError(p, f"{rate} Hz has no affordable exact resampling to {sample_rate} Hz (ratio "
                                f"{int(sample_rate) // g}/{rate // g}); convert the file to a standard rate first")
        limit = None if max_seconds is None else math.floor(max_seconds * rate)
        if limit is not None and handle.frames > limit:
            raise AudioError(p, f"{handle.frames / rate:.1f} s is longer than max_seconds={max_seconds}")
        blocks, total = [], 0
        try:
            # Read in blocks: raw GSM is not seekable (no frame count up front), and the length guard must
            # also hold for streams whose header under-reports their length.
            while True:
                block = handle.read(_BLOCK, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                blocks.append(block)
                total += len(block)
                if limit is not None and total > limit:
                    raise AudioError(p, f"longer than max_seconds={max_seconds}")
        except AudioError:
            raise
        except sf.LibsndfileError as err:
            raise AudioError(p, f"cannot decode ({err.error_string})") from None
        except (RuntimeError, ValueError, OSError) as err:
            raise AudioError(p, f"cannot decode ({err})") from None
    if total == 0:
        raise AudioError(p, "no audio samples")
    frames = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]  # (frames, channels)
    if not np.isfinite(frames).all():
        raise AudioError(p, "non-finite samples (NaN or inf)")
    mono = frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0]
    if rate != sample_rate:
        mono = resample_poly(mono, int(sample_rate) // g, rate // g).astype(np.float32, copy=False)
        if not np.isfinite(mono).all():  # float files near the float32 limit overflow in the filter
            raise AudioError(p, "samples overflow when resampled (values near the float32 limit)")
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` as a 16-bit PCM WAV file, atomically (temp file + rename; parents created).

    Args:
        path: the ``.wav`` file to write (replaced if it exists).
        audio: ``(samples,)`` mono or ``(samples, channels)`` float in [-1, 1]; values outside are clipped
            (PCM would wrap them around otherwise).
        sample_rate: Hz.

    Returns the path. The same input always gives the same bytes (no timestamps in WAV headers).
    Raises :class:`SoftWidthError` for an empty, non-finite or wrongly shaped array.
    """
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
            or not RATE_RANGE[0] <= sample_rate <= RATE_RANGE[1]):  # what read_audio accepts
        raise SoftWidthError(f"write_wav: sample_rate must be a positive int in Hz, in {RATE_RANGE[0]}.."
                             f"{RATE_RANGE[1]}, got {sample_rate!r}")
    _path(path, "write_wav")
    try:
        x = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError):
        raise SoftWidthError(f"write_wav({path}): audio must be a numeric array, got {type(audio).__name__}") from None
    if x.ndim not in (1, 2) or x.shape[0] == 0 or (x.ndim == 2 and x.shape[1] == 0):
        raise SoftWidthError(f"write_wav({path}): audio must be (samples,) or (samples, channels) with "
                             f"samples > 0, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise SoftWidthError(f"write_wav({path}): audio holds NaN or inf; fix the signal before writing it")
    x = np.clip(x, -1.0, 1.0)
    # Encode in memory, then write the bytes: a full disk then raises OSError(ENOSPC) (libsndfile writing
    # to the file itself reports it as an empty LibsndfileError), and the temporary file is removed.
    buffer = io.BytesIO()
    sf.write(buffer, x, int(sample_rate), format="WAV", subtype="PCM_16")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)
