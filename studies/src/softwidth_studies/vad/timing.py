"""Real-time factors of our consolidated VADs, measured in the same run as the peers' (one thread).

RTF = processing seconds per second of audio (lower is faster). ``batch``: whole 8 s canvases, 32 at a time,
including the STFT; ``stream``: :class:`~softwidth_studies.vad.stream.StreamingVAD` frame by frame (CRNN only), on the
first 60 s of the test split. Each figure is the minimum over ``repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.audio import read_audio
from .data import power_spectrum
from .models import SAMPLE_RATE
from .stream import StreamingVAD

__all__ = ["batch_rtf", "real_time_factors", "stream_rtf"]


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def batch_rtf(model, audio: np.ndarray, *, repeats: int = 3) -> float:
    """RTF of ``model`` on ``audio`` ``(canvases, samples)``, 32 canvases per batch, STFT included."""
    model.eval()

    def run():
        for start in range(0, len(audio), 32):
            model(power_spectrum(audio[start:start + 32]))

    return _best(run, repeats) / (audio.size / SAMPLE_RATE)


def stream_rtf(model, audio: np.ndarray, *, repeats: int = 3) -> float:
    """RTF of frame-by-frame streaming of ``audio`` ``(samples,)`` pushed in 10 ms chunks."""
    def run():
        vad = StreamingVAD(model)
        for start in range(0, audio.size, 160):
            vad.push(audio[start:start + 160])
        vad.flush()

    return _best(run, repeats) / (audio.size / SAMPLE_RATE)


def real_time_factors(out: Path, records: list[tuple[dict, dict]], config, peers: dict, load_run_model) -> dict:
    """RTFs of the seed-0 baseline and dynamic models of every kind, next to the peers' RTFs; ``load_run_model(out,
    task, record, config)`` gives a stored run's consolidated model (the study's own loader)."""

    torch.set_num_threads(1)
    test_dir = Path(config.corpus) / "test"
    ids = sorted(p.name[: -len(".wav")] for p in test_dir.glob("*.wav"))[:64]
    audio = np.stack([read_audio(test_dir / f"{i}.wav", SAMPLE_RATE) for i in ids]).astype(np.float32)
    stream_audio = audio[:8].ravel()[: 60 * SAMPLE_RATE].astype(np.float64)
    rows = []
    for task, record in records:
        if (task["seed"] != config.seeds[0] or task["kind"] not in ("baseline", "dynamic") or task.get("absolute")
                or task.get("steps_share")):  # not the half-trained baselines Torch-Pruning starts from
            continue
        model = load_run_model(out, task, record, config)
        row = {"model": task["model"], "kind": task["kind"], "target": task.get("target"),
               "flops_per_s": record["flops_per_s"], "batch_rtf": batch_rtf(model, audio)}
        if task["model"] == "crnn":
            row["stream_rtf"] = stream_rtf(model, stream_audio)
        rows.append(row)
    peer_rows = {name: r["rtf"] for name, r in peers.items() if "rtf" in r}
    return {"ours": rows, "peers": peer_rows, "audio_seconds": {"batch": audio.size / SAMPLE_RATE,
                                                               "stream": stream_audio.size / SAMPLE_RATE}}
