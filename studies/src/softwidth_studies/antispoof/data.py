"""A built anti-spoofing corpus as arrays: per-clip features, bona fide labels and metadata, plus batches.

:func:`load_split` reads ``<corpus>/<split>/`` (see :mod:`softwidth_studies.data.antispoof_corpus`: 4 s clips at 16 kHz,
one ``metadata.csv`` row per clip) and returns a :class:`AntispoofSplit` with ``features`` ``(clips, frames,
dim)`` float16 (:data:`FEATURES` by default: 60 LFCCs from 60 linear filters, 25 ms window, 20 ms hop, so a 4 s
clip has 201 frames), ``labels`` ``(clips,)`` uint8 (1 = bona fide, 0 = spoof) and the metadata rows. The
features are cached once per split and feature configuration in ``<corpus>/features/`` (written atomically;
recomputed if ``metadata.csv`` is newer).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.audio import read_audio
from ..data.cache import atomic_path
from ..data.features import FeatureConfig, extract
from softwidth.errors import SoftWidthError

__all__ = ["FEATURES", "AntispoofSplit", "ClipBatches", "load_split"]

FEATURES = FeatureConfig(kind="lfcc", n_fft=400, hop_length=320, n_filters=60, n_coeffs=60)
"""The study's features: 60 LFCCs (c0 included, no deltas) at a 20 ms hop, as the ASVspoof LFCC front ends use
60 dimensions; the 20 ms hop halves the ResNet's cost so a CPU can train it."""


@dataclass
class AntispoofSplit:
    """One split of an anti-spoofing corpus in memory (see the module docstring for shapes)."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    rows: list[dict]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def systems(self) -> list[str]:
        """The spoof systems of the split, sorted."""
        return sorted({r["system"] for r in self.rows if r["label"] != "bonafide"})


def _rows(corpus: Path, split: str) -> list[dict]:
    meta = corpus / "metadata.csv"
    if not meta.exists():
        raise SoftWidthError(f"{corpus} is not a built anti-spoofing corpus (no metadata.csv); build one with "
                             f"`softwidth data build antispoof`")
    with open(meta, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    if not rows:
        raise SoftWidthError(f"{meta} has no clips in split {split!r}")
    return rows


def _tag(config: FeatureConfig) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True)
    return f"{config.kind}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def load_split(corpus: str | os.PathLike[str], split: str, *, features: FeatureConfig = FEATURES,
               progress: bool = False) -> AntispoofSplit:
    """Load ``split`` ("train", "val" or "test") of the corpus at ``corpus``, computing features once."""
    root = Path(corpus)
    rows = _rows(root, split)
    labels = np.array([r["label"] == "bonafide" for r in rows], dtype=np.uint8)
    cache = root / "features" / f"{_tag(features)}-{split}.npy"
    if cache.exists() and os.path.getmtime(cache) >= os.path.getmtime(root / "metadata.csv"):
        feats = np.load(cache, allow_pickle=False)
        if feats.ndim == 3 and feats.shape[0] == len(rows) and feats.shape[2] == features.dim:
            return AntispoofSplit(split, feats, labels, rows)
    from tqdm.auto import tqdm

    out = []
    for start in tqdm(range(0, len(rows), 64), desc=f"features {split}", unit="batch", disable=not progress):
        audio = [read_audio(root / r["path"], features.sample_rate) for r in rows[start:start + 64]]
        if len({a.size for a in audio}) != 1:
            raise SoftWidthError(f"{root}: clips of split {split!r} differ in length; rebuild the corpus")
        with torch.no_grad():
            out.append(extract(torch.from_numpy(np.stack(audio)).float(), features).numpy())
    feats = np.concatenate(out).astype(np.float16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.save(f, feats, allow_pickle=False)
    return AntispoofSplit(split, feats, labels, rows)


class ClipBatches:
    """Training batches of whole clips: ``(features (B, frames, dim) float32, labels (B,) float32)``.

    Each epoch is a permutation of the split drawn from ``seed`` and the epoch number (the last partial batch
    is dropped), cut to ``limit`` batches if given; two runs with the same seed see the same batches.
    """

    def __init__(self, split: AntispoofSplit, *, batch_size: int = 32, seed: int = 0, limit: int | None = None) -> None:
        if len(split) < batch_size:
            raise SoftWidthError(f"split {split.name!r} has {len(split)} clips, fewer than batch_size={batch_size}")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        steps = len(split) // batch_size
        self.steps = min(steps, limit) if limit else steps
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.split))
        self.epoch += 1
        for i in range(self.steps):
            idx = np.sort(order[i * self.batch_size:(i + 1) * self.batch_size])
            yield (torch.from_numpy(self.split.features[idx].astype(np.float32)),
                   torch.from_numpy(self.split.labels[idx].astype(np.float32)))
