"""``softwidth vad train | evaluate | detect``: the VAD case study and the streaming detector on the command line."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..errors import SoftWidthError

__all__ = ["add_vad_parser"]

DEFAULT_OUT = {False: Path("results/vad"), True: Path("results/vad_quick")}


def _corpus(args: argparse.Namespace) -> Path:
    if args.corpus is not None:
        return args.corpus
    from ..data.cache import default_cache_dir
    from ..data.vad_corpus import build_vad_corpus

    size = "small" if args.quick else "full"
    return build_vad_corpus(default_cache_dir() / "corpora" / f"vad-{size}", size=size)


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
    save_vad(model, target, kind="crnn", sizes=chosen["sizes"], threshold=chosen["metrics"]["threshold"],
             flops_per_s=chosen["flops_per_s"], params=chosen["params"], run=_key(task, config),
             test_eer=pooled["eer"], test_auroc=pooled["auroc"], corpus=results["config"]["corpus"])
    if install:
        shutil.copytree(target, DEFAULT_MODEL, dirs_exist_ok=True)


def _evaluate(args: argparse.Namespace) -> None:
    from .report import write_report

    out = args.out or DEFAULT_OUT[args.quick]
    try:
        results = json.loads((out / "results.json").read_text())
    except FileNotFoundError:
        raise SoftWidthError(f"no finished VAD study in {out} (results.json missing); run `softwidth vad train`"
                             f"{' --quick' if args.quick else ''} first") from None
    summary = write_report(results, out)
    print(json.dumps(summary["checks"], indent=2))


def _detect(args: argparse.Namespace) -> None:
    from ..data.audio import AudioError, read_audio
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
        try:
            audio = read_audio(path, SAMPLE_RATE)
        except AudioError as err:
            raise SoftWidthError(str(err)) from None
        if audio.size <= 200:
            raise SoftWidthError(f"{path}: too short for detection ({audio.size} samples at 16 kHz; needs > 200)")
        vad.reset()
        probs = [vad.push(audio[i:i + SAMPLE_RATE]) for i in range(0, audio.size, SAMPLE_RATE)]
        probs.append(vad.flush())
        import numpy as np

        found = segments(np.concatenate(probs), threshold=threshold, min_speech=args.min_speech,
                         min_pause=args.min_pause)
        results.append({"file": str(path), "seconds": audio.size / SAMPLE_RATE, "segments": found})
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return
    for r in results:
        if len(results) > 1:
            print(f"# {r['file']}")
        for start, end in r["segments"]:
            print(f"{start:.2f}\t{end:.2f}")


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
    vad = sub.add_parser("vad", help="the VAD case study and the streaming detector")
    vsub = vad.add_subparsers(dest="vad_command", required=True)
    train = vsub.add_parser("train", help="train and score every VAD of the study, the peers, tables and plots")
    train.add_argument("--quick", action="store_true", help="small corpus, one seed, one budget (~2 minutes)")
    train.add_argument("--corpus", type=Path, default=None,
                       help="a built VAD corpus (default: build/reuse the cached full or, with --quick, small one)")
    train.add_argument("--out", type=Path, default=None, help="default results/vad or results/vad_quick")
    train.add_argument("--workers", type=positive_int, default=2, help="parallel processes (default 2)")
    train.add_argument("--fresh", action="store_true", help="retrain runs already stored in the output folder")
    train.add_argument("--no-peers", action="store_true", help="skip Silero/WebRTC/TEN VAD")
    train.set_defaults(func=_train)
    evaluate = vsub.add_parser("evaluate", help="rewrite the tables, checks and plots from results.json")
    evaluate.add_argument("--quick", action="store_true", help="use results/vad_quick")
    evaluate.add_argument("--out", type=Path, default=None, help="the study folder (default results/vad)")
    evaluate.set_defaults(func=_evaluate)
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
