"""Tests of ``softwidth vad detect/evaluate`` on the command line (in-process), including bad audio files."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

import softwidth as sw
from softwidth_studies.cli import main
from softwidth_studies.vad import get_speech_timestamps, load, speech_probabilities
from softwidth_studies.vad.models import build_model
from softwidth_studies.vad.store import DEFAULT_MODEL, load_vad, save_vad

from test_timestamps import speech_file_audio  # tests/vad is on sys.path (pytest rootdir-relative import)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    sizes = {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}
    plain = sw.consolidate(build_model("crnn", sizes).eval())
    return save_vad(plain, tmp_path_factory.mktemp("model"), kind="crnn", sizes=sizes, threshold=0.5)


def run(capsys, *argv):
    code = main(["vad", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_store_round_trip_is_exact(model_dir):
    a, meta = load_vad(model_dir)
    b, _ = load_vad(model_dir)
    x = torch.rand(1, 120, 201) * 5
    assert torch.equal(a(x), b(x)) and meta["sizes"]["bands"] == 16
    state = a.state_dict()
    assert all(torch.equal(state[k], v) for k, v in b.state_dict().items())


def test_detect_prints_segments_and_json(tmp_path, capsys, model_dir):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32), 16000)
    code, out, _err = run(capsys, "detect", wav, "--model", model_dir, "--threshold", "0")
    assert code == 0 and out.strip() == "0.00\t2.00"  # threshold 0: everything is speech
    code, out, _ = run(capsys, "detect", wav, "--model", model_dir, "--json", "--threshold", "1")
    result = json.loads(out)
    assert code == 0 and result == {"file": str(wav), "seconds": 2.0, "segments": []}


def test_detect_converts_multichannel_and_other_rates(tmp_path, capsys, model_dir):
    stereo = tmp_path / "stereo44k.wav"
    sf.write(stereo, np.random.default_rng(1).normal(0, 0.1, (44100, 2)).astype(np.float32), 44100)
    low = tmp_path / "mono8k.flac"
    sf.write(low, np.random.default_rng(2).normal(0, 0.1, 12000).astype(np.float32), 8000)
    code, out, err = run(capsys, "detect", stereo, low, "--model", model_dir, "--json", "--threshold", "0")
    assert code == 0, err
    results = json.loads(out)
    assert [r["seconds"] for r in results] == [1.0, 1.5]
    assert results[0]["segments"] == [[0.0, 1.0]]


@pytest.mark.parametrize("content, match", [
    (b"", "empty|no audio|cannot|not"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20, "cannot|corrupt|not|truncat"),
    (b"this is a text file, not audio\n" * 10, "cannot|not|format"),
])
def test_detect_refuses_bad_files_in_one_line(tmp_path, capsys, model_dir, content, match):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    code, out, err = run(capsys, "detect", bad, "--model", model_dir)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("softwidth: error:") and len(err.strip().splitlines()) == 1
    assert re.search(match, err, flags=re.IGNORECASE)


def test_detect_refuses_truncated_and_too_short_audio(tmp_path, capsys, model_dir):
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:-5001])
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32), 16000)
    for path, match in ((truncated, "truncat"), (short, "too short")):
        code, _, err = run(capsys, "detect", path, "--model", model_dir)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


def test_detect_errors_for_missing_or_wrong_models(tmp_path, capsys, model_dir):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    code, _, err = run(capsys, "detect", wav, "--model", tmp_path / "nothing")
    assert code == 2 and "no VAD model" in err
    sizes = {"bands": 8, "ff1": 8, "ff2": 8}
    trans = save_vad(sw.consolidate(build_model("transformer", sizes).eval()), tmp_path / "tr", kind="transformer",
                     sizes=sizes, threshold=0.5)
    code, _, err = run(capsys, "detect", wav, "--model", trans)
    assert code == 2 and "CRNN" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((model_dir / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    code, _, err = run(capsys, "detect", wav, "--model", broken)
    assert code == 2 and "cannot load the weights" in err
    with pytest.raises(SystemExit):
        main(["vad", "detect", str(wav), "--threshold", "2"])


def test_evaluate_without_results_says_what_to_run(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--out", tmp_path)
    assert code == 2 and "softwidth vad train" in err


def _long_wav(path, seconds: int) -> None:
    """A 16 kHz PCM wav of ``seconds`` of noise, written a minute at a time (never whole in memory)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(0, seconds, 60):
            f.write((rng.normal(0, 0.05, 16000 * 60)).astype(np.float32))


def _peak_rss_mb(*argv) -> float:
    import subprocess
    import sys

    code = ("import resource, sys; from softwidth_studies.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def test_detect_streams_long_files_in_bounded_memory(tmp_path, model_dir):
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    _long_wav(short, 60)
    _long_wav(long, 900)  # 15 min: 57 MB as float32, 115 MB as float64 if it were read whole
    small = _peak_rss_mb("vad", "detect", short, "--model", model_dir, "--json")
    big = _peak_rss_mb("vad", "detect", long, "--model", model_dir, "--json")
    assert big - small < 25, (small, big)


# -- detect's options and formats, with the shipped model on synthetic speech-like audio --------------------------
shipped = pytest.mark.skipif(not (DEFAULT_MODEL / "model.json").exists(), reason="no shipped model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """speech.wav (speech 1-3 s and 4-5.5 s, see test_timestamps.speech_file_audio), quiet.wav (faint noise), a
    corrupt wav and a second speech file."""
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for name, seed in (("speech", 0), ("speech2", 1)):
        audio, _ = speech_file_audio(seed)
        sf.write(folder / f"{name}.wav", audio, 16000)
        out[name] = folder / f"{name}.wav"
    out["quiet"] = folder / "quiet.wav"
    sf.write(out["quiet"], 1e-3 * np.random.default_rng(0).standard_normal(32000), 16000)
    out["corrupt"] = folder / "corrupt.wav"
    out["corrupt"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20)
    return out


def detect_json(capsys, *argv):
    code, out, err = run(capsys, "detect", *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


@shipped
@pytest.mark.parametrize("options, kwargs", [
    ([], {}),
    (["--threshold", "0.6", "--neg-threshold", "0.2"], {"threshold": 0.6, "neg_threshold": 0.2}),
    (["--min-silence-ms", "300", "--speech-pad-ms", "0"], {"min_silence_duration_ms": 300, "speech_pad_ms": 0}),
    (["--min-speech-ms", "0", "--max-speech-s", "0.5"], {"min_speech_duration_ms": 0, "max_speech_duration_s": 0.5}),
])
def test_detect_gives_the_segments_of_get_speech_timestamps_with_the_same_options(tmp_path, capsys, files, options,
                                                                                  kwargs):
    record = detect_json(capsys, files["speech"], *options)
    audio, _ = sf.read(files["speech"], dtype="float32")
    expected = get_speech_timestamps(audio, load(), return_seconds=True, **kwargs)
    assert record["segments"] == [[s["start"], s["end"]] for s in expected] and expected


@shipped
def test_detect_options_change_the_segments_as_documented(capsys, files):
    base = detect_json(capsys, files["speech"], "--min-silence-ms", "300")["segments"]
    assert len(base) == 2
    assert detect_json(capsys, files["speech"], "--min-silence-ms", "300", "--min-speech-ms", "1600")["segments"] \
        == [base[0]]  # the 1.5 s segment is dropped, the 2 s one kept
    unpadded = detect_json(capsys, files["speech"], "--min-silence-ms", "300", "--speech-pad-ms", "0")["segments"]
    assert [[round(a - 0.03, 3), round(b + 0.03, 3)] for a, b in unpadded] == base
    short = detect_json(capsys, files["speech"], "--min-silence-ms", "300", "--max-speech-s", "0.5",
                        "--min-speech-ms", "0")["segments"]
    assert len(short) > 4 and max(b - a for a, b in short) <= 0.5


@shipped
def test_each_format_parses_and_holds_the_same_segments(tmp_path, capsys, files):
    speech, quiet = files["speech"], files["quiet"]
    records = detect_json(capsys, speech, quiet)
    assert [r["file"] for r in records] == [str(speech), str(quiet)] and records[1]["segments"] == []
    segments = records[0]["segments"]
    assert len(segments) >= 2

    code, out, _ = run(capsys, "detect", speech, quiet, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["file"] for r in rows] == [str(speech)] * len(segments) + [str(quiet)]
    assert [[float(r["start"]), float(r["end"])] for r in rows[:-1]] == segments
    assert rows[-1]["start"] == rows[-1]["end"] == ""  # the file without speech still has its row

    code, out, _ = run(capsys, "detect", speech, quiet, "--format", "rttm")
    lines = [line.split() for line in out.splitlines()]
    assert code == 0 and all(len(f) == 10 and f[0] == "SPEAKER" and f[1] == "speech" and f[7] == "speech"
                             for f in lines)
    assert [[float(f[3]), round(float(f[3]) + float(f[4]), 3)] for f in lines] == segments

    code, out, _ = run(capsys, "detect", speech, "--format", "audacity")
    labels = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and [[float(a), float(b)] for a, b, _ in labels] == segments and {x for *_, x in labels} == {
        "speech"}

    code, out, _ = run(capsys, "detect", speech, quiet, "--format", "text")
    assert code == 0 and out.splitlines()[0] == f"# {speech}" and out.splitlines()[-1] == f"# {quiet}"
    assert [[float(x) for x in line.split("\t")] for line in out.splitlines()[1:-1]] == [
        [round(a, 2), round(b, 2)] for a, b in segments]


@shipped
def test_detect_writes_to_out_and_adds_probabilities(tmp_path, capsys, files):
    target = tmp_path / "segments.json"
    code, out, _ = run(capsys, "detect", files["speech"], "--json", "--probs", "--out", target)
    record = json.loads(target.read_text())
    frames = sf.info(files["speech"]).frames // 160
    assert code == 0 and out == "" and len(record["probabilities"]) == frames
    audio, _ = sf.read(files["speech"], dtype="float32")
    np.testing.assert_allclose(record["probabilities"], speech_probabilities(audio, load()), atol=1e-4)


@shipped
def test_a_corrupt_file_in_a_batch_is_reported_and_skipped(capsys, files):
    code, out, err = run(capsys, "detect", files["speech"], files["corrupt"], files["speech2"], "--format", "json")
    records = json.loads(out)
    assert code == 2 and [r["file"] for r in records] == [str(files["speech"]), str(files["speech2"])]
    assert all(r["segments"] for r in records) and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and str(files["corrupt"]) in lines[0] and "1 of 3 files failed" in lines[1]
    assert all(line.startswith("softwidth: error:") for line in lines)
    code, out, err = run(capsys, "detect", files["corrupt"], files["speech"], "--format", "csv")
    assert code == 2 and [r["file"] for r in csv.DictReader(io.StringIO(out))][0] == str(files["speech"])


@pytest.mark.parametrize("argv, message", [
    (["--format", "csv", "--json"], "contradicts --format csv"),
    (["--format", "csv", "--probs"], "--probs"),
    (["{b}", "--format", "audacity"], "one audio file"),
    (["--max-speech-s", "0.06"], "--max-speech-s 0.06: must be"),
    (["--threshold", "0.3", "--neg-threshold", "0.4"], "--neg-threshold 0.4: must be"),
])
def test_detect_refuses_contradicting_options_in_one_line(tmp_path, capsys, model_dir, argv, message):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    for path in (a, b):
        sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    code, out, err = run(capsys, "detect", a, *[x.replace("{b}", str(b)) for x in argv], "--model", model_dir)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
    assert not re.search(r"\w_\w", err), err  # the flags' names, not TimestampOptions'


def test_a_maximum_too_short_for_the_models_delay_is_one_error_not_every_file_failing(tmp_path, capsys):
    torch.manual_seed(0)
    sizes = {"bands": 16, "conv1": 8, "conv2": 8, "hidden": 8}
    late = save_vad(sw.consolidate(build_model("crnn", sizes).eval()), tmp_path / "late", kind="crnn", sizes=sizes,
                    threshold=0.5, start_shift=0.07, end_shift=0.04)
    files = [tmp_path / "a1.wav", tmp_path / "a2.wav"]
    for path in files:
        sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    # 0.1 s holds two 30 ms pads and a frame, but not the 70 ms the model's starts move back too
    code, out, err = run(capsys, "detect", *files, "--model", late, "--max-speech-s", "0.1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("softwidth: error: --max-speech-s 0.1: must be at least 0.14 s") and "--speech-pad-ms" in err
    assert "files failed" not in err and "max_speech_duration_s" not in err
    code, out, err = run(capsys, "detect", *files, "--model", late, "--max-speech-s", "0.1", "--speech-pad-ms", "0")
    assert code == 0 and out == f"# {files[0]}\n# {files[1]}\n", err


@pytest.mark.parametrize("argv, message", [
    (["vad"], "required: {train,evaluate,detect,sweep,export-onnx}"),
    (["vad", "detect"], "required: FILE"),
    (["vad", "detect", "a.wav", "--threshold", "abc"], "--threshold: must be a probability in [0, 1], got 'abc'"),
    (["vad", "detect", "a.wav", "--threshold", "nan"], "--threshold: must be a probability in [0, 1], got nan"),
    (["vad", "detect", "a.wav", "--min-speech-ms", "-1"], "--min-speech-ms: must be a number of milliseconds"),
    (["vad", "detect", "a.wav", "--max-speech-s", "x"], "--max-speech-s: must be a number of seconds"),
    (["vad", "detect", "a.wav", "--format", "xml"], "--format: invalid choice: 'xml'"),
])
def test_argparse_errors_read_naturally(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err, err
    assert not re.search(r"_command|invalid \w+ value|_threshold|_number|parse value", err), err


@shipped
def test_detect_model_default_is_the_shipped_model(capsys, files):
    assert detect_json(capsys, files["speech"], "--model", "default") == detect_json(capsys, files["speech"])


def test_export_onnx_without_onnxruntime_says_what_to_install_in_one_line(tmp_path, capsys, model_dir,
                                                                          monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "softwidth_studies.vad.onnx_runner", raising=False)
    code, out, err = run(capsys, "export-onnx", tmp_path / "vad.onnx", "--model", model_dir)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("softwidth: error: export_streaming_onnx needs") and "onnxruntime" in err
    assert not (tmp_path / "vad.onnx").exists()


@shipped
def test_detect_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["vad", "detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 250)", "(default: 100)", "(default: 30)", "(default: inf)", "(default: text)",
                    "threshold - 0.15", "the model's own"):
        assert default in text


def test_train_runs_only_the_models_named(monkeypatch, tmp_path):
    import softwidth_studies.vad.cli as vad_cli
    import softwidth_studies.vad.study as study
    from softwidth_studies.cli import build_parser

    seen = {}
    monkeypatch.setattr(study, "run_study", lambda config, out, **kw: seen.update(models=config.models) or {"runs": []})
    monkeypatch.setattr(vad_cli, "_corpus", lambda args: tmp_path)
    args = build_parser().parse_args(["vad", "train", "--models", "crnn", "--out", str(tmp_path / "out")])
    args.func(args)
    assert seen["models"] == ("crnn",)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["vad", "train", "--models", "rnn"])
