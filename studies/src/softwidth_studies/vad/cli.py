"""``softwidth vad train | evaluate | detect``: the VAD case study and the streaming detector on the command line."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from softwidth.errors import SoftWidthError
from ..experiments.cli import add_study_parser, read_results
from .corpus_option import corpus_from_args as _corpus

__all__ = ["add_vad_parser"]

DEFAULT_OUT = {False: Path("results/vad"), True: Path("results/vad_quick")}


def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .study import VadStudyConfig, run_study

    corpus = _corpus(args)
    config = VadStudyConfig.quick(str(corpus)) if args.quick else VadStudyConfig(corpus=str(corpus))
    config = replace(config, workers=args.workers)
    out = args.out or DEFAULT_OUT[args.quick]
    results = run_study(config, out, resume=not args.fresh, peers=not args.no_peers)
    _store_default(results, out, install=not args.quick)
    print(f"results written to {out}/ (results.json, summary.md, summary.json, eer_vs_mflops.png, eer_per_snr.png, "
          f"default_model/)")


def _store_default(results: dict, out: Path, *, install: bool) -> None:
    """Save the default model: the CRNN run of the absolute FLOP/s budget (else the cheapest dynamic CRNN)."""
    from .store import DEFAULT_MODEL, save_vad
    from .study import _key, config_from_results, load_run_model

    runs = [r for r in results["runs"] if r["model"] == "crnn" and r["kind"] == "dynamic"]
    if not runs:
        return
    chosen = next((r for r in runs if r.get("absolute")), min(runs, key=lambda r: r["flops_per_s"]))
    task = {k: chosen[k] for k in ("model", "kind", "seed", "target") if k in chosen}
    if chosen.get("absolute"):
        task["absolute"] = True
    config = config_from_results(results)
    model = load_run_model(out, task, chosen, config)
    pooled = chosen["metrics"]["pooled"]
    target = out / "default_model"
    shifts = _latency(model, config.corpus, chosen["metrics"]["threshold"])
    save_vad(model, target, kind="crnn", sizes=chosen["sizes"], threshold=chosen["metrics"]["threshold"], **shifts,
             flops_per_s=chosen["flops_per_s"], params=chosen["params"], run=_key(task, config),
             test_eer=pooled["eer"], test_auroc=pooled["auroc"], corpus=results["config"]["corpus"])
    if install:
        shutil.copytree(target, DEFAULT_MODEL, dirs_exist_ok=True)


def _latency(model, corpus: str, threshold: float) -> dict:
    """The causal model's median onset and offset delays (s) on the validation split, which detect subtracts."""
    import torch

    from .data import load_split
    from .stream import boundary_delays, segments

    val = load_split(corpus, "val")
    starts, ends = [], []
    with torch.no_grad():
        for k in range(len(val)):
            probs = torch.sigmoid(model(torch.from_numpy(val.power[k:k + 1].astype(np.float32))))[0].numpy()
            s, e = boundary_delays(segments(probs, threshold=threshold), segments(val.labels[k], threshold=0.5))
            starts += s
            ends += e
    return {"start_shift": float(np.median(starts)) if starts else 0.0,
            "end_shift": float(np.median(ends)) if ends else 0.0, "shift_segments": len(starts)}


def _evaluate(args: argparse.Namespace) -> None:
    from .report import write_report

    out = args.out or DEFAULT_OUT[args.quick]
    results = read_results(out, "vad", "VAD", args.quick)
    if "date" not in results:  # written before studies recorded their date: the day results.json was written
        import time

        results["date"] = time.strftime("%Y-%m-%d", time.gmtime((out / "results.json").stat().st_mtime))
    summary = write_report(results, out)
    print(json.dumps(summary["checks"], indent=2))


def _detect(args: argparse.Namespace) -> None:
    from ..data.audio import AudioError
    from .models import SAMPLE_RATE
    from .store import DEFAULT_MODEL, load_vad
    from .stream import StreamingVAD, segments

    model, meta = load_vad(args.model or DEFAULT_MODEL)
    if meta["model"] != "crnn":
        raise SoftWidthError(f"detect streams frame by frame and needs a CRNN VAD; {args.model} holds a "
                             f"{meta['model']} model")
    threshold = meta["threshold"] if args.threshold is None else args.threshold
    vad = StreamingVAD(model)
    results = []
    for path in args.files:
        vad.reset()
        probs, samples = [], 0
        try:
            for block in _blocks(path):
                probs.append(vad.push(block))
                samples += block.size
        except AudioError as err:
            raise SoftWidthError(str(err)) from None
        if samples <= 200:
            raise SoftWidthError(f"{path}: too short for detection ({samples} samples at 16 kHz; needs > 200)")
        probs.append(vad.flush())
        found = segments(np.concatenate(probs), threshold=threshold, min_speech=args.min_speech,
                         min_pause=args.min_pause)
        # a causal model detects onsets late by a typical delay measured on validation data (model.json)
        duration = samples / SAMPLE_RATE
        shift = (meta.get("start_shift", 0.0), meta.get("end_shift", 0.0))
        found = [(round(max(0.0, a - shift[0]), 3), round(min(duration, max(0.0, b - shift[1])), 3))
                 for a, b in found]
        results.append({"file": str(path), "seconds": samples / SAMPLE_RATE, "segments": found})
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return
    for r in results:
        if len(results) > 1:
            print(f"# {r['file']}")
        for start, end in r["segments"]:
            print(f"{start:.2f}\t{end:.2f}")


def _blocks(path: Path, seconds: float = 10.0):
    """The file's audio as 16 kHz mono float blocks: read block by block (bounded memory) when the file is
    already 16 kHz PCM/float, else converted whole by :func:`~softwidth_studies.data.audio.read_audio`."""
    import soundfile as sf

    from ..data.audio import AudioError, audio_info, read_audio
    from .models import SAMPLE_RATE

    info = audio_info(path)  # AudioError for empty, corrupt, truncated or non-audio files
    if info.sample_rate != SAMPLE_RATE or info.format not in ("WAV", "FLAC", "OGG"):
        yield read_audio(path, SAMPLE_RATE)
        return
    try:
        for block in sf.blocks(str(path), blocksize=int(seconds * SAMPLE_RATE), dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            if not np.isfinite(mono).all():
                raise AudioError(path, "the audio holds NaN or inf samples")
            yield mono
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(path, str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 60] seconds, got {text}")
    return value


def add_vad_parser(sub, positive_int) -> None:
    """Register ``vad train``, ``vad evaluate`` and ``vad detect`` on the top-level subparsers."""
    vsub, train = add_study_parser(
        sub, "vad", help="the VAD case study and the streaming detector", train=_train,
        train_help="train and score every VAD of the study, the peers, tables and plots",
        quick_help="small corpus, one seed, one budget (~2 minutes)", evaluate=_evaluate,
        corpus_help="a built VAD corpus (default: build/reuse the cached full or, with --quick, small one)",
        positive_int=positive_int)
    train.add_argument("--no-peers", action="store_true", help="skip Silero/WebRTC/TEN VAD")
    detect = vsub.add_parser("detect", help="print speech segments (start/end seconds) of audio files, streaming")
    detect.add_argument("files", type=Path, nargs="+", help="audio files (any rate/channels; resampled to 16 kHz "
                        "mono)")
    detect.add_argument("--model", type=Path, default=None, help="a model folder (default: the shipped model)")
    detect.add_argument("--json", action="store_true", help="print JSON")
    detect.add_argument("--threshold", type=_threshold, default=None, help="speech probability threshold "
                        "(default: the model's, chosen on validation data)")
    detect.add_argument("--min-speech", type=_seconds, default=0.1, help="shortest segment kept, s (default 0.1)")
    detect.add_argument("--min-pause", type=_seconds, default=0.2, help="shorter pauses are bridged, s (default 0.2)")
    detect.set_defaults(func=_detect)
    from .sweep_cli import add_sweep_parser

    add_sweep_parser(vsub, positive_int)
