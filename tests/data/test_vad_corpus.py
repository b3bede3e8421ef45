"""Tests of the VAD corpus builder (softwidth_studies.data.vad_corpus, vad_signal, vad_sources, vad_report).

Unit tests build from synthetic "speech" (harmonic syllables between pauses over a faint noise floor) and noise
files written in tmp_path and handed to the builder as source lists, so they need no network. One test marked
``network`` builds ``size="tiny"`` from the real Debian packages.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softwidth_studies.data import vad_corpus
from softwidth_studies.data.vad_corpus import (VadCorpusSize, build_vad_corpus, describe_vad_corpus,
                                              label_agreement_with_silero)
from softwidth_studies.data.vad_report import segments_to_frames
from softwidth_studies.data.vad_signal import (FRAME, LABEL_RULE, SAMPLE_RATE, active_power, frame_labels, mix_at_snr,
                                       procedural_noise)
from softwidth_studies.data.vad_sources import NoiseFile, SpeechClip, assign_groups, debian_noise, debian_speech
from softwidth.errors import SoftWidthError

SR = SAMPLE_RATE


def _tone(frames: int, level: float = 0.1, f0: float = 200.0) -> np.ndarray:
    t = np.arange(frames * FRAME) / SR
    return level * np.sqrt(2) * np.sin(2 * np.pi * f0 * t)


def _with_floor(*parts: np.ndarray, seed: int = 0) -> np.ndarray:
    x = np.concatenate(parts)
    return x + 1e-3 * np.random.default_rng(seed).standard_normal(len(x))


def _silence(frames: int) -> np.ndarray:
    return np.zeros(frames * FRAME)


# --- labels -----------------------------------------------------------------------------------------------

def test_labels_cover_speech_with_onset_and_hangover():
    x = _with_floor(_silence(50), _tone(50), _silence(100))
    labels = frame_labels(x)
    assert labels.dtype == np.uint8 and labels.shape == (200,)
    onset, hang = LABEL_RULE["onset_frames"], LABEL_RULE["hangover_frames"]
    expected = np.zeros(200, np.uint8)
    expected[50 - onset:100 + hang] = 1  # frames 47..109: 3 frames early, 10 frames of hangover
    np.testing.assert_array_equal(labels, expected)


def test_labels_bridge_short_pauses_drop_blips_and_ignore_digital_silence():
    bridge, hang = LABEL_RULE["bridge_frames"], LABEL_RULE["hangover_frames"]
    short = frame_labels(_with_floor(_silence(40), _tone(30), _silence(bridge - 2), _tone(30), _silence(60)))
    assert short[40:40 + 30 + bridge - 2 + 30].all()  # a pause shorter than bridge_frames is speech
    long_gap = 2 * bridge + hang
    two = frame_labels(_with_floor(_silence(40), _tone(30), _silence(long_gap), _tone(30), _silence(60)))
    assert two[40 + 30 + hang + 1:40 + 30 + long_gap - LABEL_RULE["onset_frames"] - 1].sum() == 0
    blip = frame_labels(_with_floor(_silence(80), _tone(LABEL_RULE["min_speech_frames"] - 1), _silence(80)))
    assert blip.sum() == 0  # a burst under min_speech_frames is not speech
    assert frame_labels(np.zeros(100 * FRAME)).sum() == 0  # all digital silence: no speech
    gated = frame_labels(np.concatenate([_silence(60), _tone(30), _silence(60)]))  # exact zeros around a tone
    assert gated[:57].sum() == 0 and gated[57:100].all() and gated[100:].sum() == 0


def test_labels_are_level_invariant():
    x = _with_floor(_silence(30), _tone(40), _silence(20), _tone(25, f0=300), _silence(50))
    np.testing.assert_array_equal(frame_labels(x), frame_labels(0.05 * x))


# --- mixing and procedural noise --------------------------------------------------------------------------

@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.3, 20.0])
def test_mix_has_requested_snr(snr_db):
    rng = np.random.default_rng(1)
    speech = np.concatenate([np.zeros(200 * FRAME), 0.1 * rng.standard_normal(300 * FRAME), np.zeros(300 * FRAME)])
    labels = np.zeros(800, np.uint8)
    labels[200:500] = 1
    noise = procedural_noise("pink", len(speech), rng) * 3.0
    mix, scaled = mix_at_snr(speech, noise, snr_db, speech_power=active_power(speech, labels))
    measured = 10 * np.log10(active_power(speech, labels) / np.mean(scaled**2))
    assert abs(measured - snr_db) < 0.1
    np.testing.assert_allclose(mix - scaled, speech, atol=1e-12)
    with pytest.raises(SoftWidthError):
        mix_at_snr(speech, np.zeros_like(noise), 0.0, speech_power=1.0)


def test_procedural_noises_are_unit_rms_seeded_and_shaped():
    n = SR * 2
    for kind in ("white", "pink", "brown", "hum", "clicks"):
        x = procedural_noise(kind, n, np.random.default_rng(3))
        assert x.shape == (n,) and abs(np.sqrt(np.mean(x**2)) - 1) < 1e-6
        np.testing.assert_array_equal(x, procedural_noise(kind, n, np.random.default_rng(3)))
    power = {k: np.abs(np.fft.rfft(procedural_noise(k, n, np.random.default_rng(0)))) ** 2 for k in ("white", "pink")}
    f = np.fft.rfftfreq(n, 1 / SR)
    low, high = (f > 100) & (f < 200), (f > 4000) & (f < 8000)
    ratio = {k: p[low].mean() / p[high].mean() for k, p in power.items()}
    assert ratio["white"] < 2 and ratio["pink"] > 10  # 1/f: 100-200 Hz ~30x stronger than 4-8 kHz
    hum = np.abs(np.fft.rfft(procedural_noise("hum", n, np.random.default_rng(0))))
    line = f[np.argmax(hum)]
    assert min(abs(line / m - round(line / m)) for m in (50, 60)) < 0.01  # strongest line: a mains harmonic
    with pytest.raises(SoftWidthError):
        procedural_noise("babble", n, np.random.default_rng(0))


def test_assign_groups_fills_every_role_and_follows_shares():
    shares = {"train": 0.6, "test": 0.2, "val": 0.1, "babble": 0.1}
    weights = {f"g{i}": float(w) for i, w in enumerate([50, 40, 30, 30, 20, 10, 10, 5, 5, 5])}
    roles = assign_groups(weights, shares, np.random.default_rng(0))
    assert set(roles) == set(weights) and set(roles.values()) == set(shares)
    train = sum(w for g, w in weights.items() if roles[g] == "train") / sum(weights.values())
    assert 0.45 < train < 0.75
    few = assign_groups({"a": 1.0, "b": 1.0}, shares, np.random.default_rng(0))
    assert sorted(few.values()) == ["test", "train"]  # the first roles get the few groups
    assert roles == assign_groups(weights, shares, np.random.default_rng(0))


def test_segments_to_frames_uses_frame_centres():
    frames = segments_to_frames([(FRAME * 2 + 80, FRAME * 4 + 81)], 6)
    np.testing.assert_array_equal(frames, [0, 0, 1, 1, 1, 0])


# --- fixture sources --------------------------------------------------------------------------------------

def _speechlike(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 220)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 9))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 0.5
    pad = np.zeros(int(0.3 * rate))
    x = np.concatenate([pad, 0.2 * voiced * envelope, pad])
    return x + 1e-3 * rng.standard_normal(len(x))


@pytest.fixture
def sources(tmp_path) -> tuple[list[SpeechClip], list[NoiseFile]]:
    """6 voices x 4 clips (16 and 22.05 kHz), one empty clip; music, effects, ambience and a broken file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    clips = []
    for v in range(6):
        for i in range(4):
            rate = 22050 if v % 2 else SR
            path = root / "speech" / f"v{v}" / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _speechlike(rng, rng.uniform(0.8, 2.5), rate).astype(np.float32), rate)
            clips.append(SpeechClip(f"fx:speech/v{v}/{i}.wav", path, f"fx:v{v}", "xx" if v < 3 else "yy"))
    empty = root / "speech" / "v0" / "empty.wav"
    empty.write_bytes(b"")
    clips.append(SpeechClip("fx:speech/v0/empty.wav", empty, "fx:v0", "xx"))
    files = []
    t = np.arange(SR * 10) / SR
    for i in range(4):
        music = root / "noise" / f"music{i}.flac"
        music.parent.mkdir(parents=True, exist_ok=True)
        chord = sum(np.sin(2 * np.pi * f * (i + 1) * t) for f in (220, 277, 330)) * (0.5 + 0.5 * np.sin(t))
        sf.write(music, (0.1 * chord).astype(np.float32), SR)
        files.append(NoiseFile(f"fx:noise/music{i}.flac", music, "music", f"fx:music{i}"))
    for name, category, seconds in [("beep1", "effects", 0.4), ("beep2", "effects", 0.3), ("bang", "effects", 1.0),
                                    ("knock", "effects", 0.6), ("city1", "ambience", 3.0), ("wind", "ambience", 9.0)]:
        path = root / "noise" / f"{name}.wav"
        x = rng.standard_normal(int(seconds * 44100)) * np.exp(-np.arange(int(seconds * 44100)) / 20000)
        sf.write(path, (0.2 * x).astype(np.float32), 44100)
        files.append(NoiseFile(f"fx:noise/{name}.wav", path, category, f"fx:{name}"))
    broken = root / "noise" / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not really a wav file")
    files.append(NoiseFile("fx:noise/broken.wav", broken, "effects", "fx:broken"))
    return clips, files


SIZE = VadCorpusSize("unit", 10, 4, 16)


def _build(out, sources, size=SIZE, seed=0):
    return build_vad_corpus(out, size=size, seed=seed, speech=sources[0], noise=sources[1], progress=False)


def _rows(out: Path, split: str) -> list[dict]:
    with open(out / split / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_layout_labels_and_summary(tmp_path, sources):
    out = _build(tmp_path / "vad", sources)
    summary = json.loads((out / "summary.json").read_text())
    for split, n in (("train", 10), ("val", 4), ("test", 16)):
        rows = _rows(out, split)
        assert [r["id"] for r in rows] == [f"{split}-{k:05d}" for k in range(n)]
        for r in rows:
            wav = out / split / f"{r['id']}.wav"
            audio, rate = sf.read(wav, dtype="float32")
            assert rate == SR and audio.shape == (8 * SR,) and sf.info(wav).subtype == "PCM_16"
            labels = np.load(out / split / f"{r['id']}.labels.npy")
            assert labels.dtype == np.uint8 and labels.shape == (800,) and set(np.unique(labels)) <= {0, 1}
            assert int(r["speech_frames"]) == labels.sum()
            assert float(r["speech_ratio"]) == pytest.approx(labels.mean(), abs=1e-4)
            assert (labels.sum() > 0) == (int(r["n_clips"]) > 0)
            energy = np.mean(audio[:800 * FRAME].reshape(800, FRAME).astype(np.float64) ** 2, axis=1)
            if r["snr_db"] == "clean":
                assert r["noise_type"] == "none" and r["noise_file"] == ""
                assert energy[labels == 0].mean() < 0.05 * energy[labels == 1].mean() if labels.any() else True
            else:
                assert -5 <= float(r["snr_db"]) <= 20 and r["noise_type"] != "none"
        assert summary["splits"][split]["canvases"] == n
    assert summary["checks"]["voices_disjoint"] and summary["checks"]["noise_files_disjoint"]
    assert summary["checks"]["babble_voices_unheard"]
    assert {"clicks", "ambience"} <= set(summary["held_out_noise_types"])
    assert summary["skipped"]["count"] == 2  # the empty speech clip and the broken noise file
    assert {f["file"] for f in summary["skipped"]["files"]} == {"fx:speech/v0/empty.wav", "fx:noise/broken.wav"}
    assert "| train | 10 |" in (out / "summary.md").read_text()


def test_splits_are_disjoint_by_voice_and_noise_file(tmp_path, sources):
    out = _build(tmp_path / "vad", sources)
    voices, noise_files, types = {}, {}, {}
    for split in ("train", "val", "test"):
        rows = _rows(out, split)
        voices[split] = {v for r in rows for v in r["speakers"].split(";") if v}
        noise_files[split] = {f for r in rows for f in r["noise_file"].split(";") if f}
        types[split] = {r["noise_type"] for r in rows}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not voices[a] & voices[b] and not noise_files[a] & noise_files[b]
    babble_voices = {f.split("/")[1] for s in noise_files.values() for f in s if f.startswith("fx:speech/")}
    assert babble_voices and not {f"fx:{v}" for v in babble_voices} & set().union(*voices.values())
    assert types["test"] - types["train"] - {"none"}  # the test split has noise types unseen in training
    assert not {"clicks", "ambience"} & (types["train"] | types["val"])


def test_interrupted_build_resumes_to_identical_bytes(tmp_path, sources, monkeypatch):
    reference = _build(tmp_path / "a", sources)
    real_write = vad_corpus.write_wav
    calls = []

    def failing_write(path, audio, rate):
        real_write(path, audio, rate)
        calls.append(path)
        if len(calls) == 7:  # the 7th item has its wav but neither labels nor record
            raise RuntimeError("killed")

    monkeypatch.setattr(vad_corpus, "write_wav", failing_write)
    with pytest.raises(RuntimeError, match="killed"):
        _build(tmp_path / "b", sources)
    partial = tmp_path / "b" / "train" / "train-00006"
    assert partial.with_suffix(".wav").is_file() and not Path(f"{partial}.labels.npy").exists()
    assert not (tmp_path / "b" / ".items" / "train-00006.json").exists()
    assert not (tmp_path / "b" / "summary.json").exists()
    monkeypatch.setattr(vad_corpus, "write_wav", real_write)
    resumed = _build(tmp_path / "b", sources)
    assert _files(resumed) == _files(reference)
    counted = []
    monkeypatch.setattr(vad_corpus, "write_wav", lambda *a: counted.append(a))
    before = (resumed / "train" / "train-00000.wav").stat().st_mtime_ns
    _build(tmp_path / "b", sources)  # complete: nothing is rendered again
    assert counted == [] and (resumed / "train" / "train-00000.wav").stat().st_mtime_ns == before
    assert _files(resumed) == _files(reference)


def test_a_finished_build_is_not_planned_again_but_a_lost_summary_is_rewritten(tmp_path, sources, monkeypatch):
    out = _build(tmp_path / "vad", sources)
    reference = _files(out)
    real_plan = vad_corpus._plan
    planned = []

    def counting_plan(*args, **kwargs):
        planned.append(1)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(vad_corpus, "_plan", counting_plan)
    _build(out, sources)  # complete: the speech is not labelled again
    assert planned == [] and _files(out) == reference
    (out / "summary.json").write_text("{not json")  # damaged, as by a disk error: the full pass writes it again
    _build(out, sources)
    assert planned == [1] and _files(out) == reference
    (out / "summary.json").unlink()
    _build(out, sources)
    assert planned == [1, 1] and _files(out) == reference


def test_items_are_independent_and_seeded(tmp_path, sources):
    a = _files(_build(tmp_path / "a", sources, size=VadCorpusSize("unit", 6, 2, 3)))
    b = _files(_build(tmp_path / "b", sources, size=VadCorpusSize("unit", 3, 2, 3)))
    for k in range(3):  # item k does not depend on how many items come after it
        for suffix in (".wav", ".labels.npy"):
            assert a[f"train/train-{k:05d}{suffix}"] == b[f"train/train-{k:05d}{suffix}"]
    c = _files(_build(tmp_path / "c", sources, size=VadCorpusSize("unit", 6, 2, 3), seed=1))
    assert a["train/train-00001.wav"] != c["train/train-00001.wav"]
    with pytest.raises(SoftWidthError, match="other settings"):
        _build(tmp_path / "a", sources, size=VadCorpusSize("unit", 6, 2, 3), seed=2)


def test_bad_arguments_raise(tmp_path, sources):
    with pytest.raises(SoftWidthError, match="size"):
        build_vad_corpus(tmp_path, size="huge", progress=False)
    with pytest.raises(SoftWidthError, match="seed"):
        _build(tmp_path / "x", sources, seed=-1)
    with pytest.raises(SoftWidthError, match="vctk"):
        build_vad_corpus(tmp_path / "y", speech="librispeech:/data", noise=sources[1], progress=False)
    clips = [c for c in sources[0] if c.speaker in ("fx:v0", "fx:v1", "fx:v2")]
    with pytest.raises(SoftWidthError, match="4 voices"):
        build_vad_corpus(tmp_path / "z", size=SIZE, speech=clips, noise=sources[1], progress=False)
    with pytest.raises(SoftWidthError, match="no clean canvases"):
        label_agreement_with_silero(tmp_path / "nothing")


def vctk_and_esc50(root: Path) -> tuple[Path, Path]:
    """Stand-ins for VCTK (5 speakers x 2 speech-like clips at 48 kHz) and ESC-50 (12 noise clips of 4
    classes) in their own layouts under ``root``; returns their two folders (also test_doc_commands.py's)."""
    rng = np.random.default_rng(0)
    vctk = root / "VCTK" / "wav48_silence_trimmed"
    for spk in ("p225", "p226", "p227", "p228", "p229"):
        for i in (1, 2):
            path = vctk / spk / f"{spk}_00{i}_mic1.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _speechlike(rng, 1.2, 48000).astype(np.float32), 48000)
    (root / "VCTK" / "txt").mkdir()
    esc = root / "ESC-50"
    (esc / "audio").mkdir(parents=True)
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    classes = [(0, "dog"), (10, "rain"), (20, "crying_baby"), (30, "door_wood_knock")]
    for i, (target, category) in enumerate(classes * 3):
        name = f"{i % 5 + 1}-{1000 + i}-A-{target}.wav"
        sf.write(esc / "audio" / name, (0.1 * rng.standard_normal(5 * 44100)).astype(np.float32), 44100)
        lines.append(f"{name},{i % 5 + 1},{target},{category},False,{1000 + i},A")
    (esc / "meta").mkdir()
    (esc / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root / "VCTK", esc


def test_vctk_and_esc50_hooks(tmp_path):
    vctk, esc = vctk_and_esc50(tmp_path)
    out = build_vad_corpus(tmp_path / "vad", size=VadCorpusSize("unit", 6, 2, 6), speech=f"vctk:{vctk}",
                           noise=f"esc50:{esc}", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == {"speech": f"vctk:{vctk}", "noise": f"esc50:{esc}"}
    assert all(v.startswith("vctk:p22") for vs in summary["voices"].values() for v in vs)
    assert len(summary["held_out_noise_types"]) >= 2  # one ESC-50 class (a tenth of 4, at least 1) + clicks
    assert summary["checks"]["voices_disjoint"] and summary["checks"]["noise_files_disjoint"]
    described = describe_vad_corpus(out)  # what a shipped model records: the build, not this machine's paths
    assert described == {"corpus": "vad", "size": {"name": "unit", "train": 6, "val": 2, "test": 6, "sources": "tiny",
                                                   "clips_per_speaker": None},
                         "seed": 0, "speech": "vctk", "noise": "esc50", "packages": {},
                         "canvases": {"train": 6, "val": 2, "test": 6}, "hours": round(14 * 8 / 3600, 4)}
    assert str(tmp_path) not in json.dumps(described) and "/" not in json.dumps(described)


def test_describing_a_folder_without_a_finished_build_names_the_fix(tmp_path):
    with pytest.raises(SoftWidthError, match="no finished VAD corpus.*softwidth data build vad"):
        describe_vad_corpus(tmp_path)


def test_debian_catalogue_parses_package_layouts(tmp_path):
    def touch(pkg, rel):
        p = tmp_path / pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        return tmp_path / pkg

    roots = {}
    for rel in ("usr/share/asterisk/sounds/en_US_f_Allison/hello.wav",
                "usr/share/asterisk/sounds/en_US_f_Allison/digits/1.wav",
                "usr/share/asterisk/sounds/en_US_f_Allison/silence/1.wav"):
        roots["asterisk-core-sounds-en-wav"] = touch("asterisk-core-sounds-en-wav", rel)
    for rel in ("usr/share/games/fillets-ng/sound/city/cs/vit-m-hlava.ogg",
                "usr/share/games/fillets-ng/sound/city/cs/vit-hs-klid1.ogg",
                "usr/share/games/fillets-ng/sound/x/cs/v-a.ogg"):
        roots["fillets-ng-data-cs"] = touch("fillets-ng-data-cs", rel)
    for rel in ("usr/share/sounds/alsa/Noise.wav", "usr/share/sounds/alsa/Front_Left.wav"):
        roots["alsa-utils"] = touch("alsa-utils", rel)
    for rel in ("usr/share/games/lincity-ng/sounds/Farm1.wav", "usr/share/games/lincity-ng/sounds/Farm2.wav",
                "usr/share/games/lincity-ng/sounds/Substation3.wav", "usr/share/games/lincity-ng/music/default/a.ogg"):
        roots["lincity-ng-data"] = touch("lincity-ng-data", rel)
    clips, excluded = debian_speech(roots)
    assert [(c.speaker, c.language) for c in clips] == [("asterisk:Allison", "en")] * 2 + [("fillets-cs:m", "cs"),
                                                                                           ("fillets-cs:v", "cs")]
    assert excluded == {"asterisk silence/ recordings": 1, "fillets-ng minor characters (actor unknown)": 1}
    noise, excluded = debian_noise(roots)
    assert [(n.key.split("/")[-1], n.category) for n in noise] == [
        ("Noise.wav", "effects"), ("a.ogg", "music"), ("Farm1.wav", "ambience"), ("Farm2.wav", "ambience")]
    assert noise[2].group == noise[3].group != noise[1].group  # numbered takes of one sound share a split
    assert excluded == {"noise files with speech (silero-vad screen)": 1}


@pytest.mark.network
def test_network_tiny_build(tmp_path):
    out = build_vad_corpus(tmp_path / "vad", size="tiny", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert {s: v["canvases"] for s, v in summary["splits"].items()} == {"train": 24, "val": 6, "test": 12}
    assert all(summary["checks"][k] for k in ("voices_disjoint", "noise_files_disjoint", "babble_voices_unheard"))
    assert summary["checks"]["test_only_noise_types"]
    assert len(summary["sources"]["packages"]) == 8 and summary["skipped"]["count"] <= 5
    assert 0.2 < summary["splits"]["train"]["speech_ratio"] < 0.8
    pytest.importorskip("silero_vad")
    assert label_agreement_with_silero(out) >= 0.9
