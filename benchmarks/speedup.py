"""2. Inference speed-up of consolidated VAD models vs the full model, next to the FLOP/s ratio.

The consolidated models have the sizes the study's seed-0 dynamic runs chose (``results/vad/results.json``,
relative budgets 0.5 / 0.25 / 0.125; random weights: the time does not depend on them); the full model is the
study's size with every width at its maximum. Both are stock torch modules (``softwidth.consolidate``), eval mode,
``torch.no_grad()``, one thread. Settings:

- ``batch 32``: 32 canvases of 8 s (800 frames) of power spectra, one forward;
- ``stream 10 ms`` / ``stream 1 s`` (CRNN): :class:`~softwidth.vad.stream.StreamingVAD` fed 10 s of audio in
  160-sample (10 ms) or 16000-sample (1 s) pushes, STFT included;
- ``batch 1, 1 s`` (Transformer, which attends over 1 s chunks and does not stream frame by frame): one 1 s
  chunk (100 frames).

``speedup = t_full / t_consolidated`` (medians) and ``flops_ratio = FLOP/s_full / FLOP/s_consolidated`` (the
speed-up the cost model promises). Target (issue 9): speedup >= 0.6 x flops_ratio on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import torch

import softwidth as sw
from softwidth.vad.models import build_model
from softwidth.vad.stream import StreamingVAD
from softwidth.vad.study import model_cost

from ._common import Settings, time_call

FULL = {"crnn": {"conv1": 48, "conv2": 48, "hidden": 48}, "transformer": {"ff1": 128, "ff2": 128}}
TARGETS = (0.5, 0.25, 0.125)
FACTOR = 0.6


def chosen_sizes(root) -> dict:
    """``{kind: {target: sizes}}`` of the seed-0 relative dynamic runs of the VAD study."""
    results = json.loads((root / "results" / "vad" / "results.json").read_text())
    out: dict = {}
    for r in results["runs"]:
        if r["kind"] == "dynamic" and r["seed"] == 0 and not r.get("absolute") and r["target"] in TARGETS:
            out.setdefault(r["model"], {})[r["target"]] = r["sizes"]
    return out


def _plain(kind: str, sizes: dict):
    torch.manual_seed(0)
    return sw.consolidate(build_model(kind, sizes).eval()).eval()


def _settings(kind: str, quick: bool) -> dict:
    """``{setting: (callable factory(model), seconds of audio per call)}``."""
    canvases, frames = (4, 100) if quick else (32, 800)
    stream_s = 0.5 if quick else 10.0
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(canvases, frames, 201, generator=g)
    one = torch.rand(1, 100, 201, generator=g)
    audio = np.random.default_rng(0).normal(0, 0.1, int(stream_s * 16000))

    def forward(x):
        def make(model):
            def call():
                with torch.no_grad():
                    model(x)
            return call
        return make

    def stream(push):
        def make(model):
            def call():
                vad = StreamingVAD(model)
                for start in range(0, audio.size, push):
                    vad.push(audio[start:start + push])
                vad.flush()
            return call
        return make

    out = {f"batch {canvases} x {frames // 100} s": (forward(batch), canvases * frames / 100)}
    if kind == "crnn":
        out["stream 10 ms pushes"] = (stream(160), stream_s)
        out["stream 1 s pushes"] = (stream(16000), stream_s)
    else:
        out["batch 1 x 1 s"] = (forward(one), 1.0)
    return out


def run(settings: Settings) -> dict:
    sizes = chosen_sizes(settings.root)
    rows, checks = [], []
    for kind in ("crnn", "transformer"):
        full = _plain(kind, FULL[kind])
        full_flops = model_cost(kind, FULL[kind])["flops_per_s"]
        targets = TARGETS[:1] if settings.quick else TARGETS
        for name, (make, seconds) in _settings(kind, settings.quick).items():
            t_full = time_call(make(full), settings)
            for target in targets:
                small = _plain(kind, sizes[kind][target])
                flops = model_cost(kind, sizes[kind][target])["flops_per_s"]
                t = time_call(make(small), settings)
                speedup, ratio = t_full["median_s"] / t["median_s"], full_flops / flops
                rows.append({"model": kind, "setting": name, "target": target,
                             "sizes": ", ".join(f"{k}={v}" for k, v in sizes[kind][target].items()),
                             "full_min_ms": 1e3 * t_full["min_s"],
                             "full_ms": 1e3 * t_full["median_s"], "small_min_ms": 1e3 * t["min_s"],
                             "small_ms": 1e3 * t["median_s"], "rtf": t["median_s"] / seconds,
                             "speedup": speedup, "flops_ratio": ratio, "fraction": speedup / ratio})
                checks.append({"what": f"{kind} {name}, budget {target}: speed-up {speedup:.2f}x vs FLOP/s ratio "
                                       f"{ratio:.2f}x", "value": speedup / ratio, "target": f">= {FACTOR}",
                               "pass": speedup >= FACTOR * ratio})
    return {
        "title": "Inference speed-up: consolidated vs full model",
        "setup": f"full sizes {FULL}; consolidated at the seed-0 dynamic runs' sizes of results/vad/results.json; "
                 "stock modules, eval, no_grad, one thread; times are medians (min also given)",
        "columns": [["model", "model"], ["setting", "setting"], ["target", "budget"], ["sizes", "sizes"],
                    ["full_min_ms", "full min (ms)"], ["full_ms", "full median (ms)"], ["small_min_ms", "consolidated min (ms)"],
                    ["small_ms", "consolidated median (ms)"], ["rtf", "consolidated RTF"],
                    ["speedup", "speed-up"], ["flops_ratio", "FLOP/s ratio"],
                    ["fraction", "speed-up / FLOP/s ratio"]],
        "rows": rows, "checks": checks,
        "notes": ["RTF = seconds of processing per second of audio (lower is faster).",
                  "FLOP/s exclude the STFT (shared by all models, 0.96 MFLOP/s); the stream settings include it."],
    }
