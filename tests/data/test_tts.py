"""Tests of softwidth_studies.data.tts without network: Griffin-Lim and WORLD resynthesis on synthetic signals,
the codec2 plumbing with stand-in binaries, the apt dependency walk with a fake apt-cache, the festival tree
merge and the system table. The real engines run in the network build test of test_antispoof_corpus."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from softwidth_studies.data import tts
from softwidth_studies.data.tts import (
    SPLITS,
    Toolbox,
    codec2_resynthesis,
    default_systems,
    fetch_toolbox,
    griffin_lim,
    mel_griffin_lim,
    world_resynthesis,
)
from softwidth.errors import SoftWidthError

SR = 16000


def harmonic(seconds: float = 1.0, f0: float = 200.0, top: float = 4000.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, int(top / f0)))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spectrum)])


def test_griffin_lim_recovers_a_consistent_spectrogram():
    x = torch.as_tensor(harmonic(1.0), dtype=torch.float64)
    window = torch.hann_window(512, dtype=torch.float64)
    mag = torch.stft(x, 512, 128, window=window, return_complex=True).abs()  # (257, frames)

    def convergence(n_iter: int) -> float:
        y = griffin_lim(mag, n_fft=512, hop_length=128, n_iter=n_iter, generator=torch.Generator().manual_seed(0))
        assert y.shape == (128 * (mag.shape[1] - 1),) and y.dtype == torch.float32
        rebuilt = torch.stft(y.double(), 512, 128, window=window, return_complex=True).abs()
        return float(torch.linalg.norm(rebuilt - mag) / torch.linalg.norm(mag))

    # Spectral convergence: random phase starts far off; 32 fast-GL iterations get close.
    assert convergence(32) < 0.25 < convergence(0)


def test_mel_griffin_lim_shape_energy_and_seed():
    x = harmonic(1.0)
    y = mel_griffin_lim(x, n_mels=64, n_iter=16, seed=1)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(db(y) - db(x)) < 3.0 and abs(dominant_hz(y) - 200) <= 15  # 64 mel bands blur the harmonics
    assert np.array_equal(y, mel_griffin_lim(x, n_mels=64, n_iter=16, seed=1))
    assert not np.array_equal(y, mel_griffin_lim(x, n_mels=64, n_iter=16, seed=2))


def test_world_resynthesis_keeps_pitch_length_and_energy():
    pytest.importorskip("pyworld")
    x = harmonic(1.0, f0=180.0)
    y = world_resynthesis(x, dims=40)
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(db(y[SR // 10: -SR // 10]) - db(x)) < 6.0
    assert abs(dominant_hz(y) - 180) <= 9


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def test_codec2_plumbing_with_stand_in_binaries(tmp_path):
    root = tmp_path / "codec2"
    _script(root / "usr/bin/c2enc", 'cp "$2" "$3"')  # c2enc MODE in.raw out.bit: identity codec
    _script(root / "usr/bin/c2dec", 'cp "$2" "$3"')
    tools = Toolbox({"codec2": root})
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    work = tmp_path / "work"
    work.mkdir()
    y = codec2_resynthesis(tools, x, "1300", work)
    assert y.shape == x.shape and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y[SR // 10: -SR // 10]))
    freqs = np.fft.rfftfreq(len(y) - SR // 5, 1 / SR)
    # The 8 kHz round trip keeps the 1 kHz tone and removes the 6 kHz one.
    assert spectrum[np.abs(freqs - 1000) < 20].max() > 100 * spectrum[np.abs(freqs - 6000) < 20].max()


def test_toolbox_run_reports_the_failing_tool_in_one_line(tmp_path):
    _script(tmp_path / "pkg/usr/bin/tool", 'echo "first" >&2; echo "voice not found" >&2; exit 3')
    tools = Toolbox({"pkg": tmp_path / "pkg"})
    with pytest.raises(SoftWidthError, match=r"^synth: tool exited with 3 \(voice not found\)$"):
        tools.run([str(tools.binary("pkg", "tool"))], "synth")
    with pytest.raises(SoftWidthError, match="no package 'other'"):
        tools.binary("other", "x")


def test_toolbox_env_points_at_every_library_dir(tmp_path):
    (tmp_path / "a/usr/lib/x86_64-linux-gnu/pulseaudio").mkdir(parents=True)
    (tmp_path / "b/usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "c/usr/bin").mkdir(parents=True)
    env = Toolbox({p: tmp_path / p for p in "abc"}).env
    dirs = env["LD_LIBRARY_PATH"].split(":")
    assert dirs[:3] == [str(tmp_path / "a/usr/lib/x86_64-linux-gnu"),
                        str(tmp_path / "a/usr/lib/x86_64-linux-gnu/pulseaudio"),
                        str(tmp_path / "b/usr/lib/x86_64-linux-gnu")]


APT_CACHE = """festival
  Depends: libc6
  Depends: libestools2.5
  Depends: adduser
 |Depends: libfoo1
  Depends: libbar1
  Depends: <libvirtual>
    libprovider
libestools2.5
  Depends: libpulse0
  Depends: libasound2
libpulse0
  Depends: libsndfile1
libfoo1
libbar1
libsndfile1
  Depends: libogg0
libogg0
"""


def test_dependency_walk_follows_uninstalled_libraries(monkeypatch):
    def fake_query(cmd):
        if cmd[0] == "apt-cache":
            wanted = set(cmd[cmd.index("--no-enhances") + 1:])
            blocks, keep = [], False
            for line in APT_CACHE.splitlines():
                if line and not line[0].isspace():
                    keep = line in wanted
                if keep:
                    blocks.append(line)
            return subprocess.CompletedProcess(cmd, 0, "\n".join(blocks) + "\n", "")
        installed = {"libc6", "libasound2", "libbar1"}  # dpkg-query -W -f=... names
        out = "".join(f"{n} ii \n" for n in cmd[3:] if n in installed)
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(tts, "_query", fake_query)
    monkeypatch.setattr(tts.shutil, "which", lambda name: "/usr/bin/" + name)
    groups = tts._depends(["festival"])["festival"]
    assert groups == [["libc6"], ["libestools2.5"], ["adduser"], ["libfoo1", "libbar1"], []]
    # adduser is not a library; libfoo1|libbar1 is met by the installed libbar1; libasound2 is installed.
    assert tts._closure(("festival",)) == ["festival", "libestools2.5", "libogg0", "libpulse0", "libsndfile1"]


def test_merge_trees_links_every_file_first_source_wins(tmp_path):
    trees = {"a": {"init.scm": "a", "voices/x/v.scm": "x"}, "b": {"init.scm": "b", "dicts/cmu.scm": "c"}}
    for name, files in trees.items():
        for rel, text in files.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
    merged = tts._merge_trees([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert (merged / "init.scm").read_text() == "a" and (merged / "dicts/cmu.scm").read_text() == "c"
    assert (merged / "voices/x/v.scm").is_symlink()
    (tmp_path / "b/new.scm").write_text("n")
    assert tts._merge_trees([tmp_path / "a", tmp_path / "b"], merged) == merged  # done once: marker kept
    assert not (merged / "new.scm").exists()


def test_scheme_strings_cannot_break_out_of_the_festival_script():
    s = tts._scheme_string('say "hi" \\ (quit)')
    assert s.startswith('"') and s.endswith('"') and '"' not in s[1:-1] and "\\" not in s


def test_default_systems_table():
    systems = default_systems(Toolbox({}))
    names = [s.name for s in systems]
    assert len(names) == len(set(names)) >= 8
    unseen = [s for s in systems if s.unseen]
    assert len(unseen) >= 3 and all(set(s.voices) == {"test"} for s in unseen)
    assert {s.kind for s in systems} == {"tts", "resynthesis"}
    assert {"world", "griffin-lim", "codec2"} <= set(names)
    seen = [s for s in systems if not s.unseen]
    assert all(set(s.voices) == set(SPLITS) and all(s.voices.values()) for s in seen)
    espeak = next(s for s in systems if s.name == "espeak-formant").voices
    assert all(not set(espeak[a]) & set(espeak[b]) for a in SPLITS for b in SPLITS if a < b)  # voices disjoint


def test_fetch_toolbox_rejects_unknown_tools(tmp_path):
    with pytest.raises(SoftWidthError, match="unknown tools"):
        fetch_toolbox(tmp_path, tools=("mbrola",))
    assert os.environ.get("LD_LIBRARY_PATH") is None or "debs" not in os.environ["LD_LIBRARY_PATH"]
