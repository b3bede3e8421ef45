"""``softwidth vad train | evaluate | detect``: the VAD case study and the streaming detector on the command line."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
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
    if args.models:
        config = replace(config, models=tuple(dict.fromkeys(args.models)))
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
             test_eer=pooled["eer"], test_auroc=pooled["auroc"],
             corpus=_corpus_record(results["config"]["corpus"]))
    if install:
        shutil.copytree(target, DEFAULT_MODEL, dirs_exist_ok=True)


def _corpus_record(corpus: str) -> dict:
    """The corpus by its build settings (:func:`~softwidth_studies.data.vad_corpus.describe_vad_corpus`), never by
    the training machine's path; a corpus not made by the builder by its folder's name."""
    from ..data.vad_corpus import describe_vad_corpus

    try:
        return describe_vad_corpus(corpus)
    except SoftWidthError:
        return {"corpus": "vad", "name": Path(corpus).name}


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
    # at least 0: a causal model reports late, and timestamps_from_probabilities refuses negative delays
    return {"start_shift": max(0.0, float(np.median(starts))) if starts else 0.0,
            "end_shift": max(0.0, float(np.median(ends))) if ends else 0.0, "shift_segments": len(starts)}


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
    """Speech segments of each file, in one of the formats; a file that fails is reported and skipped."""
    from .stream import StreamingVAD
    from .timestamps import TimestampOptions, load, timestamps_from_probabilities

    fmt = _format(args)
    model = load(args.model)
    meta = model.vad_info
    if meta["model"] != "crnn":
        raise SoftWidthError(f"detect streams frame by frame and needs a CRNN VAD; {args.model} holds a "
                             f"{meta['model']} model")
    delays = (meta.get("start_shift", 0.0), meta.get("end_shift", 0.0))  # the causal model's, measured on val
    try:  # every check of the options, the ones that depend on the model's delays included, once for all files
        options = TimestampOptions(
            threshold=meta["threshold"] if args.threshold is None else args.threshold,
            neg_threshold=args.neg_threshold, min_speech_duration_ms=args.min_speech_ms,
            min_silence_duration_ms=args.min_silence_ms, speech_pad_ms=args.speech_pad_ms,
            max_speech_duration_s=args.max_speech_s)
        timestamps_from_probabilities([], options, delays=delays)
    except SoftWidthError as err:
        raise SoftWidthError(_flag_names(str(err))) from None
    vad = StreamingVAD(model)
    records, failed = [], []
    for path in args.files:
        vad.reset()
        try:
            records.append(_detect_file(path, vad, options, delays=delays, probs=args.probs))
        except SoftWidthError as err:  # unreadable, corrupt, truncated or too short: report, go on
            if len(args.files) == 1:
                raise
            print(f"softwidth: error: {err}", file=sys.stderr)
            failed.append(path)
    text = FORMATS[fmt](records, several=len(args.files) > 1)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    if failed:
        raise SoftWidthError(f"{len(failed)} of {len(args.files)} files failed (above); the other files' segments "
                             f"were written")


_FLAGS = {"neg_threshold": "--neg-threshold", "threshold": "--threshold", "min_speech_duration_ms": "--min-speech-ms",
          "min_silence_duration_ms": "--min-silence-ms", "speech_pad_ms": "--speech-pad-ms",
          "max_speech_duration_s": "--max-speech-s"}


def _flag_names(message: str) -> str:
    """A :class:`TimestampOptions` refusal in the words of the command line: ``speech_pad_ms=30`` becomes
    ``--speech-pad-ms 30``."""
    return re.sub(rf"\b({'|'.join(_FLAGS)})=", lambda m: f"{_FLAGS[m.group(1)]} ", message)


def _format(args: argparse.Namespace) -> str:
    """The output format, after the checks that need several options."""
    if args.json and args.format not in ("text", "json"):
        raise SoftWidthError(f"--json is --format json; it contradicts --format {args.format}")
    fmt = "json" if args.json else args.format
    if args.probs and fmt != "json":
        raise SoftWidthError("--probs adds each file's frame probabilities to its JSON record: use --format json")
    if fmt == "audacity" and len(args.files) > 1:
        raise SoftWidthError(f"an Audacity label file holds the labels of one audio file, got {len(args.files)} "
                             f"files: run detect once per file, or use --format json, csv or rttm")
    return fmt


def _detect_file(path: Path, vad, options, *, delays: tuple[float, float], probs: bool) -> dict:
    """``{"file", "seconds", "segments": [[start_s, end_s], ...]}`` (+ ``"probabilities"``) of one file, streamed
    through ``vad`` (a fresh :class:`~softwidth_studies.vad.stream.StreamingVAD`)."""
    from .models import SAMPLE_RATE
    from .timestamps import timestamps_from_probabilities

    found, samples = [], 0
    for block in _blocks(path):
        found.append(vad.push(block))
        samples += block.size
    if samples <= 200:
        raise SoftWidthError(f"{path}: too short for detection ({samples} samples at 16 kHz; needs > 200)")
    found.append(vad.flush())
    frames = np.concatenate(found)
    segments = timestamps_from_probabilities(frames, options, num_samples=samples, delays=delays)
    record = {"file": str(path), "seconds": samples / SAMPLE_RATE,
              "segments": [[round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3)] for s in segments]}
    if probs:
        record["probabilities"] = [round(float(p), 4) for p in frames]
    return record


def _text(records: list[dict], *, several: bool) -> str:
    lines = []
    for r in records:
        if several:
            lines.append(f"# {r['file']}")
        lines += [f"{start:.2f}\t{end:.2f}" for start, end in r["segments"]]
    return "".join(f"{line}\n" for line in lines)


def _json(records: list[dict], *, several: bool) -> str:
    if not several and not records:
        return ""
    return json.dumps(records if several else records[0], indent=2) + "\n"


def _csv(records: list[dict], *, several: bool) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "start", "end"])
    for r in records:  # a file without speech: one row with empty start and end
        writer.writerows([[r["file"], f"{a:.3f}", f"{b:.3f}"] for a, b in r["segments"]] or [[r["file"], "", ""]])
    return out.getvalue()


def _rttm(records: list[dict], *, several: bool) -> str:
    stems = [Path(r["file"]).stem for r in records]
    lines = []
    for r, stem in zip(records, stems):
        uri = "_".join((stem if stems.count(stem) == 1 else r["file"]).split())  # fields are space-separated
        lines += [f"SPEAKER {uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> speech <NA> <NA>" for a, b in r["segments"]]
    return "".join(f"{line}\n" for line in lines)


def _audacity(records: list[dict], *, several: bool) -> str:
    return "".join(f"{a:.6f}\t{b:.6f}\tspeech\n" for r in records for a, b in r["segments"])


FORMATS = {"text": _text, "json": _json, "csv": _csv, "rttm": _rttm, "audacity": _audacity}


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


def _number(low: float, high: float, what: str):
    """An argparse type: a float in ``[low, high]``; every refusal says what is wanted (never the function name)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


_probability = _number(0.0, 1.0, "a probability in [0, 1]")
_milliseconds = _number(0.0, 60_000.0, "a number of milliseconds in [0, 60000]")
_max_seconds = _number(0.05, math.inf, "a number of seconds >= 0.05, or inf")


def add_vad_parser(sub, positive_int) -> None:
    """Register ``vad train``, ``vad evaluate`` and ``vad detect`` on the top-level subparsers."""
    vsub, train = add_study_parser(
        sub, "vad", help="the VAD case study and the streaming detector", train=_train,
        train_help="train and score every VAD of the study, the peers, tables and plots",
        quick_help="small corpus, one seed, one budget (~2 minutes)", evaluate=_evaluate,
        corpus_help="a built VAD corpus (default: build/reuse the cached full or, with --quick, small one)",
        positive_int=positive_int)
    train.add_argument("--no-peers", action="store_true", help="skip Silero/WebRTC/TEN VAD")
    train.add_argument("--models", nargs="+", choices=("crnn", "transformer"), default=None, metavar="MODEL",
                       help="the models to run: crnn, transformer (default: both)")
    detect = vsub.add_parser(
        "detect", help="speech segments of audio files (streaming; Silero-style options)",
        description="Speech segments (start, end in seconds) of each file, streamed through a consolidated CRNN "
        "VAD frame by frame, with the options of softwidth_studies.vad.get_speech_timestamps. A file that cannot "
        "be read (or is too short) is reported on stderr and skipped; the command then exits 2.")
    detect.add_argument("files", type=Path, nargs="+", metavar="FILE",
                        help="audio files (any rate and channel count; converted to 16 kHz mono)")
    detect.add_argument("--model", type=Path, default=None, metavar="DIR",
                        help="a model folder written by save_vad, or default: the shipped model (the default)")
    detect.add_argument("--threshold", type=_probability, default=None, metavar="P",
                        help="a segment starts at a frame with probability >= P (default: the model's own, chosen "
                        "on validation data)")
    detect.add_argument("--neg-threshold", type=_probability, default=None, metavar="P",
                        help="a pause starts at a frame with probability < P (default: threshold - 0.15)")
    detect.add_argument("--min-speech-ms", type=_milliseconds, default=250.0, metavar="MS",
                        help="shorter segments are dropped (default: %(default)g)")
    detect.add_argument("--min-silence-ms", type=_milliseconds, default=100.0, metavar="MS",
                        help="a pause this long ends a segment; shorter ones are bridged (default: %(default)g)")
    detect.add_argument("--speech-pad-ms", type=_milliseconds, default=30.0, metavar="MS",
                        help="padding on both sides of each segment (default: %(default)g)")
    detect.add_argument("--max-speech-s", type=_max_seconds, default=math.inf, metavar="S",
                        help="longer segments are split, at a pause if there is one (default: %(default)g)")
    detect.add_argument("--format", choices=tuple(FORMATS), default="text",
                        help="text: 'start<TAB>end' lines (a '# FILE' line before each file's when several); json: "
                        "one record per file; csv: file,start,end (a file without speech: one row, empty start "
                        "and end); rttm: SPEAKER lines of type speech; audacity: a label file, one audio file only "
                        "(default: %(default)s)")
    detect.add_argument("--json", action="store_true", help="the same as --format json")
    detect.add_argument("--out", type=Path, default=None, metavar="PATH", help="write there (default: stdout)")
    detect.add_argument("--probs", action="store_true",
                        help="with --format json: each file's speech probability per 10 ms frame too")
    detect.set_defaults(func=_detect)
    from .sweep_cli import add_sweep_parser

    add_sweep_parser(vsub, positive_int)
    from .onnx_cli import add_export_onnx_parser

    add_export_onnx_parser(vsub)
    vsub.metavar = "{" + ",".join(vsub.choices) + "}"  # "required: {train,...}", not the internal "vad_command"
