"""Tests of softwidth_studies.data.antispoof_corpus. Unit tests build from fixture sources (synthetic recordings
written in tmp, stand-in TTS systems and the real Griffin-Lim resynthesis) injected through ``sources`` and
``systems``; one ``network`` test builds the real tiny corpus from Debian packages."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softwidth_studies.data import antispoof_corpus as ac
from softwidth_studies.data.antispoof_corpus import (
    CLIP_SECONDS,
    build_antispoof_corpus,
    shortcut_eer,
)
from softwidth_studies.data.antispoof_sources import SourceGroup, Utterance
from softwidth_studies.data.tts import SpoofSystem, mel_griffin_lim
from softwidth.errors import SoftWidthError

SR = 16000
FIXTURE_SIZE = {"train": 3, "val": 1, "test": 2}  # clips per system and split (tiny is 6/2/3)


def voiced(rng: np.random.Generator, seconds: float, f0: float, top_hz: float = 7000) -> np.ndarray:
    """Harmonic syllables with gaps, padded with 0.2 s of low noise: a stand-in utterance."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, int(top_hz / f0)))
    env = (np.sin(2 * np.pi * 3 * t) > -0.3).astype(float)
    pad = 1e-3 * rng.standard_normal(int(0.2 * SR))
    return np.concatenate([pad, 0.1 * x * env, pad]).astype(np.float32)


def fake_tts(texts, language, voice, rng, workdir):
    """A 'TTS' that buzzes at a voice-dependent pitch for 0.08 s per character; fails on 'FAIL'."""
    f0 = {"a": 110.0, "b": 220.0, "c": 150.0}[voice]
    return [None if "FAIL" in t else voiced(rng, 0.08 * len(t), f0) for t in texts]


def griffin_lim(audio, voice, rng, workdir):
    return mel_griffin_lim(audio, n_mels=40, n_iter=4, seed=int(rng.integers(2**31)))


SYSTEMS = (
    SpoofSystem("buzz", "stand-in TTS", "tts", frozenset({"xx", "yy"}),
                {"train": ("a",), "val": ("b",), "test": ("b",)}, fake_tts, "fixture"),
    SpoofSystem("gl", "Griffin-Lim", "resynthesis", None, {s: ("mel40",) for s in ("train", "val", "test")},
                griffin_lim, "torch"),
    SpoofSystem("buzz-unseen", "stand-in TTS", "tts", frozenset({"xx", "yy"}), {"test": ("c",)}, fake_tts, "fixture"),
)


def make_sources(root: Path) -> list[SourceGroup]:
    """Two speakers per split (one of the train speakers has two languages), 8 utterances each, band-limited
    and noisy like the real recordings; one empty and one corrupt file among them."""
    rng = np.random.default_rng(0)
    layout = [("s1", "xx", "train", 120.0), ("s1", "yy", "train", 120.0), ("s2", "yy", "train", 200.0),
              ("s3", "xx", "val", 140.0), ("s4", "yy", "val", 180.0), ("s5", "xx", "test", 100.0),
              ("s6", "yy", "test", 230.0)]
    groups = []
    for speaker, lang, split, f0 in layout:
        utts = []
        for i in range(8):
            path = root / f"{speaker}-{lang}-{i}.wav"
            rate = 8000 if speaker == "s4" else 22050  # s4 is a narrowband telephone voice
            audio = voiced(rng, rng.uniform(0.8, 1.6), f0, top_hz=min(5000, rate / 2 - 200))
            audio = audio + 3e-3 * rng.standard_normal(len(audio)).astype(np.float32)
            sf.write(path, audio[:: SR // rate] if rate == 8000 else np.interp(
                np.arange(int(len(audio) * rate / SR)) * SR / rate, np.arange(len(audio)), audio), rate)
            utts.append(Utterance(path, f"fixture:{path.name}", f"text {speaker} {lang} number {i} " * 2,
                                  f"english {i} " * 3))
        groups.append(SourceGroup(f"{speaker}/{lang}", speaker, lang, split, "fixture", tuple(utts)))
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    bad = (Utterance(root / "empty.wav", "fixture:empty.wav", "FAIL here"),
           Utterance(root / "corrupt.wav", "fixture:corrupt.wav", "FAIL there"))
    return [*groups, SourceGroup("s7/xx", "s7", "xx", "train", "fixture", bad)]  # nothing usable


def build(out: Path, sources, **kwargs) -> Path:
    return build_antispoof_corpus(out, size="tiny", seed=kwargs.pop("seed", 0), progress=False, sources=sources,
                                  systems=kwargs.pop("systems", SYSTEMS), **kwargs)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("antispoof")
    (root / "src").mkdir()
    sources = make_sources(root / "src")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ac.SIZES, "tiny", FIXTURE_SIZE)
        build(root / "ref", sources)
    with open(root / "ref/metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return root, sources, rows, json.loads((root / "ref/summary.json").read_text())


def test_clips_are_equal_length_16k_and_counts_balanced(corpus):
    root, _, rows, summary = corpus
    failed = summary["failed_clips"]
    assert len(rows) + len(failed) == 2 * (3 * 2 + 1 * 2 + 2 * 3) and len(rows) == summary["clips"]
    for r in rows:
        info = sf.info(root / "ref" / r["path"])
        assert (info.samplerate, info.frames, info.subtype) == (SR, int(CLIP_SECONDS * SR), "PCM_16")
    for split, n in FIXTURE_SIZE.items():
        lost = sum(f["id"].startswith(split) for f in failed)
        systems = 3 if split == "test" else 2
        assert sum(summary["counts"][split].values()) + lost == 2 * n * systems


def test_speakers_disjoint_and_unseen_systems_only_in_test(corpus):
    _, _, rows, summary = corpus
    speakers = {s: {r["speaker"] for r in rows if r["split"] == s and r["label"] == "bonafide"}
                for s in ("train", "val", "test")}
    assert speakers == {"train": {"s1", "s2"}, "val": {"s3", "s4"}, "test": {"s5", "s6"}}
    # Resynthesised clips are made from their own split's speakers.
    assert all(r["speaker"] in speakers[r["split"]] for r in rows if r["system"] == "gl")
    assert {r["split"] for r in rows if r["system"] == "buzz-unseen"} == {"test"}
    assert summary["unseen_systems"] == ["buzz-unseen"]
    assert summary["systems"]["buzz-unseen"]["clips"] == {"train": 0, "val": 0, "test": 2}


def test_channel_is_shared_by_both_classes(corpus):
    _, _, rows, summary = corpus
    for split in ("train", "test"):
        bona = sorted(float(r["cutoff_hz"]) for r in rows if r["split"] == split and r["label"] == "bonafide")
        for r in rows:  # a spoof's cutoff is one of its split's bona fide cutoffs
            if r["split"] == split and r["label"] == "spoof":
                assert float(r["cutoff_hz"]) in bona or float(r["cutoff_hz"]) == float(r["source_bandwidth_hz"])
    narrow = [r for r in rows if r["speaker"] == "s4"]  # 8 kHz files: 4 kHz, plus the resampler's slope
    assert narrow and all(float(r["cutoff_hz"]) <= 4500 for r in narrow)
    assert all(-32 <= float(r["level_dbfs"]) <= -22 and 25 <= float(r["snr_db"]) <= 45 for r in rows)
    sc = summary["shortcut"]
    assert sc["n_train"] == sum(r["split"] == "train" for r in rows) and 0.0 <= sc["eer_test"] <= 1.0
    assert set(sc["eer_test_by_feature"]) == set(sc["features"])


def test_bad_sources_are_skipped_and_counted(corpus):
    _, _, rows, summary = corpus
    reasons = {f["source"]: f["reason"] for f in summary["skipped_files"]["files"]}
    assert "empty" in reasons["fixture:empty.wav"] and "fixture:corrupt.wav" in reasons
    assert all(r["speaker"] != "s7" and "fixture:empty.wav" not in r["utterances"] for r in rows)
    # The group without one usable file costs clips, not the build: each is listed with its reason.
    assert summary["failed_clips"] and all("s7/xx" in f["reason"] for f in summary["failed_clips"])


def test_content_is_language_matched_text(corpus):
    _, sources, rows, _ = corpus
    text_of = {u.ident: u for g in sources for u in g.utterances}
    for r in rows:
        if r["system"] in ("buzz", "buzz-unseen"):  # the TTS read transcripts of its split, in their language
            used = [text_of[i] for i in r["utterances"].split(";")]
            assert all(f" {r['language']} " in u.text for u in used)
            assert all(next(g for g in sources if u in g.utterances).split == r["split"] for u in used)


def test_rerun_is_idempotent_and_settings_are_guarded(corpus, monkeypatch):
    root, sources, _, _ = corpus
    before = files(root / "ref")
    monkeypatch.setitem(ac.SIZES, "tiny", FIXTURE_SIZE)
    monkeypatch.setattr(ac, "_render", lambda *a: pytest.fail("a finished clip was rendered again"))
    build(root / "ref", sources)
    assert files(root / "ref") == before
    with pytest.raises(SoftWidthError, match="other settings"):
        build(root / "ref", sources, seed=1)


def test_killed_build_resumes_to_identical_bytes(corpus, monkeypatch, tmp_path):
    root, sources, _, _ = corpus
    monkeypatch.setitem(ac.SIZES, "tiny", FIXTURE_SIZE)
    real, calls = ac._render, []

    def dying(*args):
        calls.append(1)
        if len(calls) == 17:  # killed in the spoof phase
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(ac, "_render", dying)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "out", sources)
    (tmp_path / "out/train/.half.wav.abc.tmp").write_bytes(b"partial")  # what a kill inside a write leaves
    monkeypatch.setattr(ac, "_render", real)
    build(tmp_path / "out", sources)
    assert files(tmp_path / "out") == files(root / "ref")


def test_invalid_sources_and_arguments_raise(tmp_path):
    group = SourceGroup("a/xx", "same", "xx", "train", "f", ())
    with pytest.raises(SoftWidthError, match="disjoint across splits"):
        build(tmp_path, [group, SourceGroup("b/xx", "same", "xx", "test", "f", ())])
    with pytest.raises(SoftWidthError, match="size must be one of"):
        build_antispoof_corpus(tmp_path, size="huge", sources=[group], systems=SYSTEMS)
    with pytest.raises(SoftWidthError, match="seed"):
        build_antispoof_corpus(tmp_path, seed=-1, sources=[group], systems=SYSTEMS)
    with pytest.raises(SoftWidthError, match="no metadata.csv"):
        shortcut_eer(tmp_path)


def test_english_bona_fide_share_matches_english_only_systems(tmp_path):
    utt = (Utterance(tmp_path / "x.wav", "x", "some text here", "english text"),)
    groups = [SourceGroup(f"{s}/{lang}", s, lang, "train", "f", utt)
              for s, lang in (("en1", "en"), ("o1", "xx"), ("o2", "yy"), ("o3", "xx"))]
    english = SpoofSystem("eng", "en-only", "tts", frozenset({"en"}), {"train": ("v",)}, fake_tts)
    multi = SpoofSystem("multi", "multi", "tts", frozenset({"xx", "yy", "en"}), {"train": ("v",)}, fake_tts)
    items, _ = ac._plan(groups, [english, multi], "small", seed=0)
    bona = [i for i in items if i.system == "bonafide"]
    lang = {g.name: g.language for g in groups}
    assert sum(lang[i.group] == "en" for i in bona) == len(bona) // 2  # 1 of 2 systems speaks only English
    assert all(lang[i.group] != "en" for i in items if i.system == "multi")
    assert all(i.stream == "text_en" for i in items if i.system == "eng")


@pytest.mark.network
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt")
def test_network_tiny_build_from_debian_packages(tmp_path):
    out = build_antispoof_corpus(tmp_path / "antispoof", size="tiny", progress=False)  # default cache dir
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["systems"]) >= 8 and len(summary["unseen_systems"]) >= 3
    assert all(info["clips"][s] > 0 for info in summary["systems"].values() for s in info["voices"])
    assert summary["counts"]["test"]["bonafide"] == summary["counts"]["test"]["spoof"] > 0
    assert summary["shortcut"]["eer_test"] >= 0.4, summary["shortcut"]
    assert len(summary["failed_clips"]) == 0 and summary["hours"]["total"] > 0.1
