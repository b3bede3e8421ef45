"""Tests of ``softwidth vad detect/evaluate`` on the command line (in-process), including bad audio files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

import softwidth as sw
from softwidth_studies.cli import main
from softwidth_studies.vad.models import build_model
from softwidth_studies.vad.store import load_vad, save_vad


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
