"""A hand-made VAD corpus in the builder's layout (no network): tone bursts over noise, labelled per 10 ms."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

COLUMNS = ("id", "speakers", "languages", "n_clips", "speech_files", "noise_type", "noise_file", "snr_db",
           "speech_frames", "speech_ratio")


def make_corpus(root: Path, counts=(("train", 6), ("val", 3), ("test", 4)), seconds: float = 8.0) -> Path:
    rng = np.random.default_rng(0)
    frames = int(seconds * 100)
    for split, n in counts:
        (root / split).mkdir(parents=True)
        rows = []
        for k in range(n):
            labels = np.zeros(frames, dtype=np.uint8)
            audio = rng.normal(0, 0.01, frames * 160)
            for _ in range(2):
                start = int(rng.integers(0, frames - 150))
                length = int(rng.integers(40, 140))
                labels[start:start + length] = 1
                t = np.arange(length * 160) / 16000
                audio[start * 160:(start + length) * 160] += 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(
                    2 * np.pi * 3 * t) ** 2
            item = f"{split}-{k:05d}"
            sf.write(root / split / f"{item}.wav", audio.astype(np.float32), 16000, subtype="PCM_16")
            np.save(root / split / f"{item}.labels.npy", labels)
            snr = "clean" if k % 3 == 0 else f"{(k * 7) % 20 - 4:.2f}"
            rows.append({"id": item, "speakers": "x", "languages": "en", "n_clips": 2, "speech_files": "",
                         "noise_type": "none" if snr == "clean" else ("white", "music")[k % 2], "noise_file": "",
                         "snr_db": snr, "speech_frames": int(labels.sum()), "speech_ratio": f"{labels.mean():.4f}"})
        with open(root / split / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def tiny_vad_corpus(tmp_path_factory) -> Path:
    """The real tiny VAD corpus built from Debian packages (network; about 20 s)."""
    from softwidth_studies.data.vad_corpus import build_vad_corpus

    return build_vad_corpus(tmp_path_factory.mktemp("vad") / "tiny", size="tiny", progress=False)
