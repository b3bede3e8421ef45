"""5. VAD real-time factor: our consolidated CRNNs vs Silero VAD and WebRTC VAD, in one run.

Two parts:

- ``study``: the RTFs the VAD study measured in its own single run (``results/vad/results.json`` ``"rtf"``:
  batch = 64 test canvases of 8 s, 32 per batch, STFT included; stream = 60 s frame by frame; peers on the whole
  test split), presented as stored;
- ``now``: re-measured here in one run on the same 60 s of test audio (the first 60 s of the built corpus's
  ``test`` split, 8 canvases of 7.5 s): the study's trained seed-0 CRNNs (baseline and the dynamic runs at each
  budget, weights from ``results/vad/runs``, or, where that folder is absent, the same sizes with initial
  weights: the time does not depend on them) in batch (one batch of the 8 canvases, STFT included) and
  streaming (:class:`~softwidth_studies.vad.stream.StreamingVAD`, 10 ms pushes), Silero VAD (its TorchScript model,
  ``audio_forward`` over the 60 s) and WebRTC VAD (one aggressiveness mode, 10 ms frames). Needs the corpus
  (``--corpus``); skipped with a message if it is absent.

RTF = processing seconds per second of audio (lower is faster), one thread, medians (min also given).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import softwidth as sw
from softwidth_studies.data.audio import read_audio
from softwidth_studies.vad.data import power_spectrum
from softwidth_studies.vad.models import build_model
from softwidth_studies.vad.models import SAMPLE_RATE
from softwidth_studies.vad.stream import StreamingVAD

from ._common import Settings, time_call

SECONDS = 60.0


def _study(results: dict) -> list[dict]:
    rtf = results["rtf"]
    rows = [{"part": "study", "model": f"{r['model']} {r['kind']}", "target": r.get("target"),
             "mflops_per_s": r["flops_per_s"] / 1e6, "batch_rtf": r["batch_rtf"], "stream_rtf": r.get("stream_rtf")}
            for r in rtf["ours"]]
    for name, value in rtf["peers"].items():
        rows.append({"part": "study", "model": name, "target": None, "mflops_per_s": None,
                     "batch_rtf": None, "stream_rtf": value})
    return rows


def _test_audio(corpus: Path, seconds: float) -> np.ndarray:
    test = corpus / "test"
    ids = sorted(p.name[: -len(".wav")] for p in test.glob("*.wav"))
    audio, total = [], 0
    for i in ids:
        wav = read_audio(test / f"{i}.wav", SAMPLE_RATE).astype(np.float32)
        audio.append(wav)
        total += wav.size
        if total >= seconds * SAMPLE_RATE:
            break
    return np.concatenate(audio)[: int(seconds * SAMPLE_RATE)]


def _now(settings: Settings, results: dict) -> list[dict]:
    from softwidth_studies.vad.peers import PEERS
    from softwidth_studies.vad.study import config_from_results, load_run_model

    seconds = 3.0 if settings.quick else SECONDS
    audio = _test_audio(settings.corpus, seconds)
    canvases = audio.reshape(8, -1)
    config = config_from_results(results)
    out = settings.root / "results" / "vad"
    rows = []
    for r in results["runs"]:
        if r["model"] != "crnn" or r["seed"] != 0 or r["kind"] not in ("baseline", "dynamic") or r.get("absolute"):
            continue
        task = {"model": "crnn", "kind": r["kind"], "seed": 0, **({"target": r["target"]} if "target" in r else {})}
        try:
            model = load_run_model(out, task, r, config)
            weights = "trained"
        except FileNotFoundError:  # a checkout without the study's run folder: the time does not depend on weights
            torch.manual_seed(0)
            model = sw.consolidate(build_model("crnn", r["sizes"]).eval()).eval()
            weights = "initial"

        def batch(model=model):
            with torch.no_grad():
                model(power_spectrum(canvases))

        def stream(model=model):
            vad = StreamingVAD(model)
            for start in range(0, audio.size, 160):
                vad.push(audio[start:start + 160])
            vad.flush()

        b, s = time_call(batch, settings), time_call(stream, settings)
        rows.append({"part": "now", "model": f"crnn {r['kind']}", "target": r.get("target"), "weights": weights,
                     "mflops_per_s": r["flops_per_s"] / 1e6, "batch_rtf": b["median_s"] / seconds,
                     "batch_rtf_min": b["min_s"] / seconds, "stream_rtf": s["median_s"] / seconds,
                     "stream_rtf_min": s["min_s"] / seconds})
    silero = PEERS["silero"]()
    frames = audio.size // 160

    def run_silero():
        silero(audio, frames)

    webrtc = PEERS["webrtc"]()
    webrtc.vads = webrtc.vads[3:]  # one mode (3, the most aggressive): a single detector's cost

    def run_webrtc():
        webrtc(audio, frames)

    for name, fn in (("silero", run_silero), ("webrtc (mode 3)", run_webrtc)):
        t = time_call(fn, settings)
        rows.append({"part": "now", "model": name, "target": None, "mflops_per_s": None, "batch_rtf": None,
                     "stream_rtf": t["median_s"] / seconds, "stream_rtf_min": t["min_s"] / seconds})
    return rows


def run(settings: Settings) -> dict:
    results = json.loads((settings.root / "results" / "vad" / "results.json").read_text())
    rows = _study(results)
    notes = ["study rows: as stored by the study (its peers' RTF is over the whole test split; WebRTC's per mode "
             "is a quarter of the 4-mode run, as the study reports it)."]
    skipped = None
    if (settings.corpus / "test").is_dir():
        rows += _now(settings, results)
        notes.append("now rows: this run, the first 60 s of the test split; peers in the stream column: Silero "
                     "runs its streaming model chunk by chunk (512 samples), WebRTC frame by frame (10 ms).")
        if any(row.get("weights") == "initial" for row in rows):
            notes.append("now rows of our CRNNs: the study's sizes with initial weights (results/vad/runs, the "
                         "trained weights, is not in this checkout; the time does not depend on the weights).")
    else:
        skipped = (f"re-measurement skipped: no built VAD corpus at {settings.corpus} (build it with "
                   "`softwidth data build vad` or pass --corpus)")
        notes.append(skipped)
    return {
        "title": "VAD real-time factor: consolidated CRNNs vs Silero and WebRTC",
        "setup": "one thread; RTF = processing seconds per second of audio; medians",
        "columns": [["part", "run"], ["model", "model"], ["target", "budget"], ["mflops_per_s", "MFLOP/s"],
                    ["batch_rtf", "batch RTF"], ["stream_rtf", "stream RTF"]],
        "rows": rows, "checks": [], "notes": notes, "skipped": skipped,
    }
