"""Batched log-mel and LFCC features of waveforms for training data, and a float16 on-disk feature cache.

This is data preparation, not a model layer: no widths, no gradients wanted. The spectral math is the
front end's (:mod:`softwidth.layers.frontend`; its STFT helpers are shared so the package
has one STFT): the same periodic-Hann DFT-basis power spectrum with ``torch.stft``-style reflect padding
and the same HTK mel bank, so ``log_mel`` equals the output of a full-width ``LogMel`` layer with the same
arguments. LFCC (linear-frequency cepstral coefficients, the ASVspoof 2019/2021 LFCC baselines' front end)
is that power spectrum through a linear-frequency triangular filter bank, a natural log and an orthonormal
DCT-II.

Units: sample rates and band edges in Hz; ``n_fft``, ``hop_length`` and ``win_length`` in samples.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from softwidth.errors import SoftWidthError, is_number
from softwidth.layers.frontend import (
    MAX_BANDS,
    check_stft,
    check_waveform,
    dft_basis,
    is_int,
    mel_filters,
    power_spectrum,
)
from .audio import AudioError, read_audio
from .cache import atomic_path, default_cache_dir

__all__ = ["FeatureCache", "FeatureConfig", "extract", "lfcc", "linear_filters", "log_mel"]

KINDS = ("logmel", "lfcc")
# Bump when the feature math changes: it is part of every cache key, so old cache files are ignored.
_FORMAT_VERSION = 1


# -- argument checks ---------------------------------------------------------------------------------
def _check_count(name: str, value, *, where: str, most: int | None = None) -> None:
    if not is_int(value) or value < 1 or (most is not None and value > most):
        bound = f" and <= {most}" if most is not None else ""
        raise SoftWidthError(f"{where}: {name} must be an int >= 1{bound}, got {value!r}")


def _check_eps(log_eps, *, where: str) -> None:
    if not is_number(log_eps) or log_eps <= 0:
        raise SoftWidthError(f"{where}: log_eps must be a number > 0, got {log_eps!r}")


def _check_waveform(waveform, n_fft: int, *, where: str) -> torch.Tensor:
    """A float waveform ``(samples,)`` or ``(batch, samples)``; half precision is computed in float32."""
    # reflect padding by n_fft // 2 needs more samples than it pads
    check_waveform(waveform, n_fft // 2 + 1, where=where, detail=f"n_fft={n_fft}")
    return waveform.float() if waveform.dtype in (torch.float16, torch.bfloat16) else waveform


# -- the math --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _basis(n_fft: int, win_length: int) -> torch.Tensor:
    return dft_basis(n_fft, win_length)  # float64 on the CPU; callers convert (and copy) it


@functools.lru_cache(maxsize=16)
def _mel_bank(n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> torch.Tensor:
    # At an integer K = n_mels the front end's bank is exactly the standard n_mels-band HTK bank.
    return mel_filters(float(n_mels), n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, f_min=f_min,
                       f_max=f_max)


def linear_filters(n_filters: int, *, n_fft: int, sample_rate: float, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Linear-frequency triangular filters, shape ``(n_fft // 2 + 1, n_filters)``, float64.

    Edges ``e_j = f_min + j (f_max - f_min) / (n_filters + 1)``, ``j = 0 .. n_filters + 1`` (Hz, default
    ``f_max`` the Nyquist frequency); filter ``i`` rises linearly from ``e_i`` to 1 at ``e_{i+1}`` and falls
    to 0 at ``e_{i+2}``, sampled at the FFT bin frequencies ``b * sample_rate / n_fft``; no area
    normalisation (as ``torchaudio.functional.linear_fbanks`` and the ASVspoof LFCC baselines).
    """
    _, f_max = check_stft(sample_rate, n_fft, 1, None, f_min, f_max, where="linear_filters")
    _check_count("n_filters", n_filters, where="linear_filters", most=MAX_BANDS)
    return _linear_bank(n_filters, n_fft, float(sample_rate), float(f_min), f_max).clone()


@functools.lru_cache(maxsize=16)
def _linear_bank(n_filters: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> torch.Tensor:
    edges = torch.linspace(f_min, f_max, n_filters + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None] * (sample_rate / n_fft)
    rise = (freqs - lower) / (centre - lower)
    fall = (upper - freqs) / (upper - centre)
    return torch.minimum(rise, fall).clamp_min(0.0)


@functools.lru_cache(maxsize=16)
def _dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix ``(n_in, n_out)``: ``x @ D == scipy.fft.dct(x, 2, norm="ortho")[..., :n_out]``."""
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    k = torch.arange(n_out, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * k * (2.0 * n + 1.0) / (2.0 * n_in)) * math.sqrt(2.0 / n_in)
    d[:, 0] /= math.sqrt(2.0)
    return d


def _spectrum(x: torch.Tensor, n_fft: int, win_length: int, hop_length: int) -> torch.Tensor:
    """Power spectrum ``(..., frames, n_fft // 2 + 1)`` with ``frames = 1 + samples // hop_length``."""
    return power_spectrum(x, _basis(n_fft, win_length).to(device=x.device, dtype=x.dtype), n_fft, hop_length, True)


def log_mel(
    waveform: torch.Tensor,
    *,
    sample_rate: float,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    log_eps: float = 1e-6,
) -> torch.Tensor:
    """Log-mel energies ``log(mel + log_eps)`` (natural log) of waveforms.

    Args:
        waveform: ``(batch, samples)`` or ``(samples,)``, float (half precision is computed in float32), at
            least ``n_fft // 2 + 1`` samples, finite.
        sample_rate: Hz. n_fft, hop_length, win_length: samples; ``1 <= hop_length, win_length <= n_fft``
            (default ``win_length = n_fft``; periodic Hann window centred in the frame like ``torch.stft``).
        n_mels: number of HTK mel bands (no area normalisation, i.e. ``librosa`` ``htk=True, norm=None``).
        f_min, f_max: band edges in Hz, ``0 <= f_min < f_max <= sample_rate / 2`` (default Nyquist).
        log_eps: added to the mel power before the log (> 0).

    Returns ``(batch, frames, n_mels)`` or ``(frames, n_mels)`` in the waveform's dtype (float32 for half),
    ``frames = 1 + samples // hop_length``: frames are centred on ``t * hop_length`` with reflect padding
    of ``n_fft // 2`` samples at both ends. Power is ``|STFT|^2`` of the unscaled waveform.
    """
    where = "log_mel"
    win_length, f_max = check_stft(sample_rate, n_fft, hop_length, win_length, f_min, f_max, where=where)
    _check_count("n_mels", n_mels, where=where, most=MAX_BANDS)
    _check_eps(log_eps, where=where)
    x = _check_waveform(waveform, n_fft, where=where)
    bank = _mel_bank(n_mels, n_fft, float(sample_rate), float(f_min), f_max).to(device=x.device, dtype=x.dtype)
    return torch.log(torch.matmul(_spectrum(x, n_fft, win_length, hop_length), bank) + log_eps)


def lfcc(
    waveform: torch.Tensor,
    *,
    sample_rate: float,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_filters: int,
    n_coeffs: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    log_eps: float = 1e-6,
) -> torch.Tensor:
    """Linear-frequency cepstral coefficients of waveforms (static coefficients, no deltas).

    The power spectrum (as in :func:`log_mel`) goes through :func:`linear_filters` (``n_filters`` triangles
    equally spaced in Hz between ``f_min`` and ``f_max``), then ``log(energy + log_eps)`` (natural log), then an
    orthonormal DCT-II over the filters, keeping the first ``n_coeffs`` coefficients (``c_0`` included).
    ``1 <= n_coeffs <= n_filters``. Other arguments, the input and the framing are those of :func:`log_mel`.

    Returns ``(batch, frames, n_coeffs)`` or ``(frames, n_coeffs)``.
    """
    where = "lfcc"
    win_length, f_max = check_stft(sample_rate, n_fft, hop_length, win_length, f_min, f_max, where=where)
    _check_count("n_filters", n_filters, where=where, most=MAX_BANDS)
    _check_count("n_coeffs", n_coeffs, where=where, most=n_filters)
    _check_eps(log_eps, where=where)
    x = _check_waveform(waveform, n_fft, where=where)
    bank = _linear_bank(n_filters, n_fft, float(sample_rate), float(f_min), f_max)
    energies = torch.matmul(_spectrum(x, n_fft, win_length, hop_length), bank.to(device=x.device, dtype=x.dtype))
    return torch.matmul(torch.log(energies + log_eps), _dct_matrix(n_filters, n_coeffs).to(energies))


# -- configuration ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureConfig:
    """Which features to compute, validated on construction (a bad field raises :class:`SoftWidthError`).

    ``kind`` is ``"logmel"`` (uses ``n_mels``) or ``"lfcc"`` (uses ``n_filters`` and ``n_coeffs``); the other
    fields are the keyword arguments of :func:`log_mel` / :func:`lfcc` (Hz and samples). The LFCC defaults
    (20 filters, 20 coefficients) are the ASVspoof LFCC baselines' static part. JSON-able via :meth:`to_dict`.
    """

    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    win_length: int | None = None
    n_mels: int = 80
    n_filters: int = 20
    n_coeffs: int = 20
    f_min: float = 0.0
    f_max: float | None = None
    log_eps: float = 1e-6

    def __post_init__(self) -> None:
        where = "FeatureConfig"
        if self.kind not in KINDS:
            raise SoftWidthError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if not is_int(self.sample_rate) or self.sample_rate <= 0:
            raise SoftWidthError(f"{where}: sample_rate must be an int number of Hz > 0, got {self.sample_rate!r}")
        check_stft(self.sample_rate, self.n_fft, self.hop_length, self.win_length, self.f_min, self.f_max,
                    where=where)
        _check_count("n_mels", self.n_mels, where=where, most=MAX_BANDS)
        _check_count("n_filters", self.n_filters, where=where, most=MAX_BANDS)
        _check_count("n_coeffs", self.n_coeffs, where=where, most=self.n_filters)
        _check_eps(self.log_eps, where=where)

    @property
    def dim(self) -> int:
        """Features per frame: ``n_mels`` for log-mel, ``n_coeffs`` for LFCC."""
        return self.n_mels if self.kind == "logmel" else self.n_coeffs

    def frames(self, samples: int) -> int:
        """Frames for a waveform of ``samples`` samples: ``1 + samples // hop_length``."""
        return 1 + samples // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def extract(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Features of ``config.kind`` for ``(batch, samples)`` or ``(samples,)``: ``(..., frames, config.dim)``."""
    common = dict(sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                  win_length=config.win_length, f_min=config.f_min, f_max=config.f_max, log_eps=config.log_eps)
    if config.kind == "logmel":
        return log_mel(waveform, n_mels=config.n_mels, **common)
    return lfcc(waveform, n_filters=config.n_filters, n_coeffs=config.n_coeffs, **common)


# -- cache -----------------------------------------------------------------------------------------------
class FeatureCache:
    """Features of audio files, computed once and stored as float16 ``.npy`` files under ``cache_dir``.

    Each file's features are ``(frames, config.dim)`` (see :func:`extract`; the audio is read mono at
    ``config.sample_rate`` by :func:`softwidth_studies.data.audio.read_audio`). The cache file is
    ``cache_dir / "<key>.npy"`` where ``key`` is a SHA-256 of the file's resolved path, size, modification
    time (ns) and the :class:`FeatureConfig`, so an edited file or a changed config is recomputed. Writes are
    atomic (:func:`softwidth_studies.data.cache.atomic_path`), so an interrupted run leaves no half-written entry;
    an unreadable or malformed cache file is recomputed and overwritten.

    Args:
        cache_dir: where the ``.npy`` files go (default ``default_cache_dir() / "features"``).
        config: the features (default ``FeatureConfig()``: 80 log-mel bands at 16 kHz, 25 ms / 10 ms).
        batch_size: files read and extracted together; equal-length files in a batch (e.g. fixed-length
            training crops) share one batched extraction.
        device: where the extraction runs (the results come back to the CPU).

    Returned tensors are float32 on the CPU and always the float16-rounded values, so a fresh computation
    and a cache hit give identical tensors. A file that cannot give audio, or gives fewer than
    ``n_fft // 2 + 1`` samples, raises :class:`~softwidth_studies.data.audio.AudioError`, or yields ``None`` with
    ``skip_errors=True`` so a builder or a training run can skip and count it.

    Example::

        cache = FeatureCache(out / "features", FeatureConfig(kind="lfcc"))
        feats = cache(paths)  # list of (frames, 20) float32 tensors
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, config: FeatureConfig | None = None, *,
                 batch_size: int = 16, device: str | torch.device = "cpu") -> None:
        config = FeatureConfig() if config is None else config
        if not isinstance(config, FeatureConfig):
            raise SoftWidthError(f"FeatureCache: config must be a FeatureConfig, got {type(config).__name__}")
        _check_count("batch_size", batch_size, where="FeatureCache")
        self.cache_dir = default_cache_dir() / "features" if cache_dir is None else Path(cache_dir)
        self.config, self.batch_size, self.device = config, batch_size, torch.device(device)
        self._config_json = json.dumps({"version": _FORMAT_VERSION, **config.to_dict()}, sort_keys=True)

    def key(self, path: str | os.PathLike) -> str:
        """Hex SHA-256 of (resolved path, size in bytes, mtime in ns, config); AudioError if it cannot stat."""
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
        except OSError as err:
            raise AudioError(path, f"cannot stat the file ({err.strerror})") from None
        payload = json.dumps([str(resolved), stat.st_size, stat.st_mtime_ns, self._config_json])
        return hashlib.sha256(payload.encode()).hexdigest()

    def path_for(self, path: str | os.PathLike) -> Path:
        """The cache file that holds ``path``'s features (it may not exist yet)."""
        return self.cache_dir / f"{self.key(path)}.npy"

    def get(self, path: str | os.PathLike) -> torch.Tensor:
        """Features of one file, ``(frames, config.dim)`` float32; AudioError for a bad file."""
        return self([path])[0]

    def __call__(self, paths: Sequence[str | os.PathLike], *, skip_errors: bool = False) -> list[torch.Tensor | None]:
        """Features of each file in ``paths``, in order: ``(frames, config.dim)`` float32 tensors.

        With ``skip_errors`` a file that raises :class:`~softwidth_studies.data.audio.AudioError` gives ``None``.
        """
        if isinstance(paths, (str, os.PathLike)):
            raise SoftWidthError("FeatureCache: expects a list of audio paths; use .get(path) for one file")
        out: list[np.ndarray | None] = [None] * len(paths)
        targets: list[Path | None] = [None] * len(paths)
        for i, path in enumerate(paths):
            try:
                targets[i] = self.path_for(path)
            except AudioError:
                if not skip_errors:
                    raise
                continue
            out[i] = self._load(targets[i])
        missing = [i for i, arr in enumerate(out) if arr is None and targets[i] is not None]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for i, arr in zip(chunk, self._compute([Path(paths[i]) for i in chunk], skip_errors)):
                if arr is not None:
                    self._store(targets[i], arr)
                    out[i] = arr
        return [None if arr is None else torch.from_numpy(arr.astype(np.float32)) for arr in out]

    # -- machinery -----------------------------------------------------------------------------------
    def _load(self, target: Path) -> np.ndarray | None:
        """The cached float16 array, or None when absent or malformed (then it is recomputed)."""
        try:
            arr = np.load(target, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, truncated or not an .npy file
            return None
        ok = arr.dtype == np.float16 and arr.ndim == 2 and arr.shape[0] >= 1 and arr.shape[1] == self.config.dim
        return arr if ok and np.isfinite(arr).all() else None

    def _compute(self, paths: list[Path], skip_errors: bool) -> list[np.ndarray | None]:
        """float16 features of ``paths`` (None for a skipped bad file); equal lengths are extracted as a batch."""
        cfg, need = self.config, self.config.n_fft // 2 + 1
        waves: dict[int, torch.Tensor] = {}
        for i, path in enumerate(paths):
            try:
                wave = read_audio(path, cfg.sample_rate)
                if wave.shape[-1] < need:  # reflect padding needs n_fft // 2 + 1 samples
                    raise AudioError(path, f"{wave.shape[-1]} samples at {cfg.sample_rate} Hz, fewer than the "
                                           f"{need} that n_fft={cfg.n_fft} needs")
            except AudioError:
                if not skip_errors:
                    raise
                continue
            waves[i] = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, wave in waves.items():
            by_length[wave.shape[-1]].append(i)
        result: list[np.ndarray | None] = [None] * len(paths)
        for group in by_length.values():
            batch = torch.stack([waves[i] for i in group]).to(self.device)
            with torch.no_grad():
                feats = extract(batch, cfg).cpu().numpy().astype(np.float16)
            for i, arr in zip(group, feats):
                if not np.isfinite(arr).all():  # |feature| > 65504 overflows float16
                    raise SoftWidthError(f"FeatureCache: {paths[i]}: features overflow float16; check the config")
                result[i] = arr
        return result

    def _store(self, target: Path, arr: np.ndarray) -> None:
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:  # a handle: np.save would add ".npy"
            np.save(handle, arr, allow_pickle=False)
