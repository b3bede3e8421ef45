"""A built VAD corpus as arrays: power spectra, frame labels and per-canvas metadata, plus training batches.

:func:`load_split` reads ``<corpus>/<split>/`` (see :mod:`softwidth_studies.data.vad_corpus`) and returns a
:class:`VadSplit` with ``power`` ``(canvases, 800, 201)`` float16 (``|STFT|^2`` of the 16 kHz waveform, 400-sample
periodic Hann window and FFT, 160-sample hop, centred, the last of the 801 frames dropped so frame ``t`` is the
label's 10 ms frame), ``labels`` ``(canvases, 800)`` uint8 and the metadata rows. The spectra are cached once per
split in ``<corpus>/features/`` (written atomically; recomputed if the split's files are newer).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.audio import read_audio
from ..data.cache import atomic_path
from softwidth.errors import SoftWidthError
from .models import HOP, N_FFT, SAMPLE_RATE

__all__ = ["SNR_BINS", "CropBatches", "VadSplit", "load_split", "power_spectrum", "snr_bin"]

SNR_BINS = ("<5", "5-15", "15-25", ">=25", "clean")


def snr_bin(snr: str) -> str:
    """The SNR range of a canvas: ``"clean"`` or one of ``<5, 5-15, 15-25, >=25`` dB."""
    if snr == "clean":
        return "clean"
    value = float(snr)
    return "<5" if value < 5 else "5-15" if value < 15 else "15-25" if value < 25 else ">=25"


def power_spectrum(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``|STFT|^2`` of 16 kHz audio ``(..., samples)`` -> ``(..., samples // 160, 201)`` float32 (10 ms frames)."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (..., 201, frames)
    frames = x.shape[-1] // HOP
    return power[..., :frames].transpose(-1, -2).contiguous()


@dataclass
class VadSplit:
    """One split of a VAD corpus in memory (see the module docstring for shapes)."""

    name: str
    power: np.ndarray
    labels: np.ndarray
    rows: list[dict]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def hours(self) -> float:
        return self.labels.size * HOP / SAMPLE_RATE / 3600


def _rows(split_dir: Path) -> list[dict]:
    meta = split_dir / "metadata.csv"
    if not meta.exists():
        raise SoftWidthError(f"{split_dir} is not a split of a built VAD corpus (no metadata.csv); build one with "
                             f"`softwidth data build vad`")
    with open(meta, newline="") as f:
        return list(csv.DictReader(f))


def load_split(corpus: str | os.PathLike[str], split: str, *, progress: bool = False) -> VadSplit:
    """Load ``split`` ("train", "val" or "test") of the corpus at ``corpus``, computing the spectra once."""
    root = Path(corpus)
    split_dir = root / split
    rows = _rows(split_dir)
    if not rows:
        raise SoftWidthError(f"{split_dir} has no canvases")
    labels = np.stack([np.load(split_dir / f"{r['id']}.labels.npy", allow_pickle=False) for r in rows])
    cache = root / "features" / f"power-{split}.npy"
    newest = max(os.path.getmtime(split_dir / "metadata.csv"), 0.0)
    if cache.exists() and os.path.getmtime(cache) >= newest:
        power = np.load(cache, mmap_mode=None, allow_pickle=False)
        if power.shape == (len(rows), labels.shape[1], N_FFT // 2 + 1):
            return VadSplit(split, power, labels, rows)
    power = np.empty((len(rows), labels.shape[1], N_FFT // 2 + 1), dtype=np.float16)
    from tqdm.auto import tqdm

    for i, r in enumerate(tqdm(rows, desc=f"spectra {split}", unit="canvas", disable=not progress)):
        audio = read_audio(split_dir / f"{r['id']}.wav", SAMPLE_RATE)
        spec = power_spectrum(audio)[: labels.shape[1]].numpy()
        power[i] = np.minimum(spec, np.finfo(np.float16).max)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.save(f, power, allow_pickle=False)
    return VadSplit(split, power, labels, rows)


class CropBatches:
    """Training batches of random crops: ``(power (B, frames, 201) float32, labels (B, frames) float32)``.

    Each epoch draws ``len(self)`` batches so that about every frame of the split is seen once; crops and their
    order come from ``seed`` and the epoch number, so two runs with the same seed see the same batches.
    """

    def __init__(self, split: VadSplit, *, batch_size: int = 32, frames: int = 200, seed: int = 0,
                 limit: int | None = None) -> None:
        total = split.labels.shape[1]
        if not 1 <= frames <= total:
            raise SoftWidthError(f"CropBatches: frames must be in [1, {total}], got {frames}")
        self.split, self.batch_size, self.frames, self.seed = split, batch_size, frames, seed
        steps = max(1, split.labels.size // (batch_size * frames))
        self.steps = min(steps, limit) if limit else steps
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        n, total = self.split.labels.shape
        for _ in range(self.steps):
            idx = rng.integers(0, n, self.batch_size)
            start = rng.integers(0, total - self.frames + 1, self.batch_size)
            cols = start[:, None] + np.arange(self.frames)
            power = torch.from_numpy(self.split.power[idx[:, None], cols].astype(np.float32))
            labels = torch.from_numpy(self.split.labels[idx[:, None], cols].astype(np.float32))
            yield power, labels
