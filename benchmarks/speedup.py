"""2. Inference speed-up of consolidated models vs the full model, next to the FLOP/s ratio.

The consolidated models have the sizes the studies' seed-0 dynamic runs chose (VAD: ``results/vad/results.json``,
relative budgets 0.5 / 0.25 / 0.125; ResNet countermeasure: ``results/antispoof/results.json``, 0.25; random
weights: the time does not depend on them); the full model is the study's size with every width at its maximum. Both are stock torch modules (``softwidth.consolidate``), eval mode,
``torch.no_grad()``, one thread. Settings:

- ``batch 32``: 32 canvases of 8 s (800 frames) of power spectra, one forward;
- ``stream 10 ms`` / ``stream 1 s`` (CRNN): :class:`~softwidth_studies.vad.stream.StreamingVAD` fed 10 s of audio in
  160-sample (10 ms) or 16000-sample (1 s) pushes, STFT included;
- ``batch 1, 1 s`` (Transformer, which attends over 1 s chunks and does not stream frame by frame): one 1 s
  chunk (100 frames);
- ResNet countermeasure: ``batch 32 x 4 s`` and ``batch 1 x 4 s`` clips of LFCC features (201 frames, 60 coefficients).

The streaming settings run :class:`~softwidth_studies.vad.stream.StreamingVAD`, whose per-frame network is NumPy
(``runtime: numpy``); the whole-tensor settings run in PyTorch eager (``runtime: torch``). They
run a second time in ONNX Runtime (``runtime: onnxruntime``, one intra-op thread, sequential execution, all graph
optimizations), the consolidated and the full model each exported with :func:`softwidth.export.to_onnx` at the
setting's input shape: what a deployed model gains, without eager PyTorch's per-operator cost (a tiny GRU's 800
time steps are ~20 ms of per-step dispatch in eager at any hidden size). Skipped, with a note, when ``onnxruntime``,
``onnx`` or ``onnxscript`` is missing (``pip install softwidth[onnx]``).

``speedup = t_full / t_consolidated`` (medians) and ``flops_ratio = FLOP/s_full / FLOP/s_consolidated`` (the
speed-up the cost model promises). Target (issue 9): speedup >= 0.6 x flops_ratio on CPU.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import softwidth as sw
from softwidth_studies.antispoof import models as cm
from softwidth_studies.antispoof.study import AntispoofStudyConfig
from softwidth_studies.antispoof.study import model_cost as cm_cost
from softwidth_studies.vad import models as vad
from softwidth_studies.vad.stream import StreamingVAD
from softwidth_studies.vad.study import model_cost as vad_cost

from ._common import Settings, time_calls

FULL = {"crnn": {"conv1": 48, "conv2": 48, "hidden": 48}, "transformer": {"ff1": 128, "ff2": 128}, "resnet": {}}
TARGETS = {"crnn": (0.5, 0.25, 0.125), "transformer": (0.5, 0.25, 0.125), "resnet": (0.25,)}
STUDY = {"crnn": "vad", "transformer": "vad", "resnet": "antispoof"}
FACTOR = 0.6


def chosen_sizes(root) -> dict:
    """``{kind: {target: sizes}}`` of the seed-0 relative dynamic runs of the VAD and anti-spoofing studies."""
    out: dict = {}
    for study in ("vad", "antispoof"):
        results = json.loads((root / "results" / study / "results.json").read_text())
        for r in results["runs"]:
            if (r["kind"] == "dynamic" and r["seed"] == 0 and not r.get("absolute")
                    and r["target"] in TARGETS.get(r["model"], ())):
                out.setdefault(r["model"], {})[r["target"]] = r["sizes"]
    return out


def _build(kind: str, sizes: dict):
    return (cm if STUDY[kind] == "antispoof" else vad).build_model(kind, sizes)


def _cost(kind: str, sizes: dict) -> float:
    if STUDY[kind] == "antispoof":
        return cm_cost(kind, {**FULL[kind], **sizes}, AntispoofStudyConfig())["flops_per_s"]
    return vad_cost(kind, sizes)["flops_per_s"]


def _plain(kind: str, sizes: dict):
    torch.manual_seed(0)
    return sw.consolidate(_build(kind, sizes).eval()).eval()


def _settings(kind: str, quick: bool) -> dict:
    """``{setting: (callable factory(model), seconds of audio per call, input or None)}``; the input (a tensor)
    is given for the whole-tensor settings, which also run in ONNX Runtime; ``None`` for streaming."""
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

    if kind == "resnet":
        clips = 4 if quick else 32
        clip, single = torch.randn(clips, 201, 60, generator=g), torch.randn(1, 201, 60, generator=g)
        return {f"batch {clips} x 4 s": (forward(clip), 4.0 * clips, clip),
                "batch 1 x 4 s": (forward(single), 4.0, single)}
    out = {f"batch {canvases} x {frames // 100} s": (forward(batch), canvases * frames / 100, batch)}
    if kind == "crnn":
        out["stream 10 ms pushes"] = (stream(160), stream_s, None)
        out["stream 1 s pushes"] = (stream(16000), stream_s, None)
    else:
        out["batch 1 x 1 s"] = (forward(one), 1.0, one)
    return out


ONNX_MODULES = ("onnxruntime", "onnx", "onnxscript")


def has_onnxruntime() -> bool:
    """Whether the ONNX Runtime rows can run (``softwidth[onnx]`` installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_MODULES)


def _ort_call(model, x: torch.Tensor, folder: Path, name: str):
    """A callable running ``model`` on ``x`` in ONNX Runtime (exported at ``x``'s shape, one thread)."""
    import onnxruntime as ort

    with warnings.catch_warnings():  # the exporter's deprecation and tracing chatter, once per model
        warnings.simplefilter("ignore")
        onnx_log = logging.getLogger("torch.onnx")
        level, onnx_log.level = onnx_log.level, logging.ERROR
        try:
            path = sw.export.to_onnx(model, x, folder / f"{name}.onnx", dynamic=())
        finally:
            onnx_log.setLevel(level)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def _with_onnx(kind: str, quick: bool) -> bool:
    """Whether ``kind``'s whole-tensor settings also run in ONNX Runtime (a quick run exports the CRNN only:
    exports take seconds)."""
    return has_onnxruntime() and (not quick or kind == "crnn")


def _cases(settings: dict, onnx: bool):
    """``(name, case, runtime)`` to time: streaming in ``numpy`` (StreamingVAD's frame step), the whole-tensor
    settings in ``torch`` and, with ``onnx``, again in ``onnxruntime``."""
    for name, case in settings.items():
        yield name, case, "numpy" if case[2] is None else "torch"
    for name, case in settings.items():
        if onnx and case[2] is not None:
            yield name, case, "onnxruntime"


def _time_kind(kind: str, sizes: dict, settings: Settings, folder: Path, rows: list, checks: list) -> None:
    """Time ``kind``'s full model and its consolidations in every (setting, runtime); append rows and checks."""
    full_flops = _cost(kind, FULL[kind])
    targets = TARGETS[kind][:1] if settings.quick else TARGETS[kind]
    models = {"full": _plain(kind, FULL[kind])} | {target: _plain(kind, sizes[target]) for target in targets}
    for name, (make, seconds, x), runtime in _cases(_settings(kind, settings.quick), _with_onnx(kind, settings.quick)):
        if runtime != "onnxruntime":
            calls = {key: make(model) for key, model in models.items()}
        else:
            calls = {key: _ort_call(model, x, folder, f"{kind}-{key}-{x.shape[0]}") for key, model in models.items()}
        timed = time_calls(calls, settings)
        t_full = timed["full"]
        for target in targets:
            flops = _cost(kind, sizes[target])
            t = timed[target]
            speedup, ratio = t_full["median_s"] / t["median_s"], full_flops / flops
            rows.append({"model": kind, "setting": name, "runtime": runtime, "target": target,
                         "sizes": ", ".join(f"{k}={v}" for k, v in sizes[target].items()),
                         "full_min_ms": 1e3 * t_full["min_s"],
                         "full_ms": 1e3 * t_full["median_s"], "small_min_ms": 1e3 * t["min_s"],
                         "small_ms": 1e3 * t["median_s"], "rtf": t["median_s"] / seconds,
                         "speedup": speedup, "flops_ratio": ratio, "fraction": speedup / ratio})
            label = f"{name} {runtime}" if runtime == "onnxruntime" else name
            checks.append({"what": f"{kind} {label}, budget {target}: speed-up {speedup:.2f}x vs FLOP/s ratio "
                                   f"{ratio:.2f}x", "value": speedup / ratio, "target": f">= {FACTOR}",
                           "pass": speedup >= FACTOR * ratio})


def run(settings: Settings) -> dict:
    sizes = chosen_sizes(settings.root)
    rows, checks = [], []
    missing = [kind for kind in ("crnn", "transformer", "resnet") if kind not in sizes]
    with tempfile.TemporaryDirectory(prefix="softwidth-speedup-") as tmp:
        for kind in ("crnn", "transformer", "resnet"):
            if kind not in missing:
                _time_kind(kind, sizes[kind], settings, Path(tmp), rows, checks)
    notes = [] if has_onnxruntime() else ["ONNX Runtime rows skipped: onnxruntime, onnx or onnxscript is not "
                                          "installed (pip install softwidth[onnx])."]
    if missing:
        notes.append(f"not timed: {', '.join(missing)} (its study's results.json holds no seed-0 dynamic run of it)")
    return {
        "title": "Inference speed-up: consolidated vs full model",
        "setup": f"full sizes {FULL} (resnet: B0..B3 = 16/32/64/128); consolidated at the seed-0 dynamic runs' "
                 "sizes of results/vad/results.json and results/antispoof/results.json; "
                 "stock modules, eval, no_grad, one thread; times are medians (min also given)",
        "columns": [["model", "model"], ["setting", "setting"], ["runtime", "runtime"], ["target", "budget"],
                    ["sizes", "sizes"],
                    ["full_min_ms", "full min (ms)"], ["full_ms", "full median (ms)"],
                    ["small_min_ms", "consolidated min (ms)"],
                    ["small_ms", "consolidated median (ms)"], ["rtf", "consolidated RTF"],
                    ["speedup", "speed-up"], ["flops_ratio", "FLOP/s ratio"],
                    ["fraction", "speed-up / FLOP/s ratio"]],
        "rows": rows, "checks": checks,
        "notes": notes + ["RTF = seconds of processing per second of audio (lower is faster).",
                  ("runtime torch: PyTorch eager; numpy: StreamingVAD (STFT and per-frame network in NumPy, the "
                   "weights copied from the model); onnxruntime: the same consolidated and full models exported with "
                   "softwidth.export.to_onnx at the setting's input shape, ONNX Runtime CPU, one thread."),
                  ("VAD FLOP/s exclude the STFT (shared by all models, 0.96 MFLOP/s); the stream settings include "
                   "it. Countermeasure FLOP/s and times exclude the LFCC front-end.")],
    }
