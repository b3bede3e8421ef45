"""Tests of softwidth_studies.data.loaders on tiny fixture trees in the corpora's exact on-disk layouts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softwidth_studies.data.audio import read_audio
from softwidth_studies.data.loaders import (ASVspoofTrial, ESC50Clip, LabelledFile, RecordList, VCTKUtterance,
                                    load_asvspoof2019_la, load_corpus, load_esc50, load_folder, load_vctk)
from softwidth.errors import SoftWidthError


def _audio(path: Path, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(160, 0.1, np.float32), rate)


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- VCTK -------------------------------------------------------------------------------------------------

@pytest.fixture
def vctk092(tmp_path) -> Path:
    root = tmp_path / "VCTK-Corpus-0.92"
    wav = root / "wav48_silence_trimmed"
    for name in ["p225/p225_001_mic1", "p225/p225_001_mic2", "p225/p225_002_mic1", "p315/p315_001_mic1",
                 "s5/s5_001_mic1", "p225/p226_003_mic1", "p225/notes_mic1"]:  # last two break the naming rule
        _audio(wav / f"{name}.flac", 48000)
    _text(wav / "log.txt", "not audio, ignored")
    _text(root / "txt/p225/p225_001.txt", "Please call Stella.\n")
    _text(root / "txt/p225/p225_002.txt", "Ask her to bring these things with her from the store.\n")
    _text(root / "txt/s5/s5_001.txt", "Hello.\n")  # p315 has no transcripts in VCTK
    _text(root / "speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
          "p225  23  F    English    Southern  England\np315  18  M    American    Connecticut\n")
    return root


def test_vctk_092(vctk092):
    recs = load_vctk(vctk092)
    assert isinstance(recs, RecordList) and isinstance(recs, list)
    assert [r.utterance for r in recs] == ["p225_001", "p225_002", "p315_001", "s5_001"]
    first = recs[0]
    assert first == VCTKUtterance(vctk092 / "wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225", "p225_001",
                                  "Please call Stella.", "mic1", "F", "English")
    assert recs[2].text is None and recs[2].gender == "M"
    assert recs[3].gender is None and recs[3].text == "Hello."
    assert recs.skipped == {"bad_name": 2} and recs.n_skipped == 2
    assert read_audio(first.path, 16000).shape == (160 // 3 + 1,)  # 48 kHz -> 16 kHz
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.speaker = "p999"


def test_vctk_092_mic_selection(vctk092):
    assert [r.mic for r in load_vctk(vctk092, mic="mic2")] == ["mic2"]
    both = load_vctk(vctk092, mic=None)
    assert [(r.utterance, r.mic) for r in both][:2] == [("p225_001", "mic1"), ("p225_001", "mic2")]
    with pytest.raises(SoftWidthError, match="mic must be"):
        load_vctk(vctk092, mic="mic3")


def test_vctk_080(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    _audio(root / "wav48/p225/p225_001.wav", 48000)
    _audio(root / "wav48/p226/p226_001.wav", 48000)
    _text(root / "txt/p225/p225_001.txt", "Please call Stella.\n")
    _text(root / "speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n")
    recs = load_vctk(root)
    assert [(r.speaker, r.mic, r.text, r.gender) for r in recs] == [
        ("p225", None, "Please call Stella.", "F"), ("p226", None, None, None)]


def test_vctk_wrong_layout(tmp_path):
    (tmp_path / "VCTK" / "wav").mkdir(parents=True)
    with pytest.raises(SoftWidthError, match="neither wav48_silence_trimmed/ .* nor wav48/"):
        load_vctk(tmp_path / "VCTK")
    with pytest.raises(SoftWidthError, match="is not a directory"):
        load_vctk(tmp_path / "nowhere")
    (tmp_path / "VCTK" / "wav48_silence_trimmed" / "p225").mkdir(parents=True)
    with pytest.raises(SoftWidthError, match="no .flac files"):
        load_vctk(tmp_path / "VCTK")


# --- ESC-50 -----------------------------------------------------------------------------------------------

ESC50_CSV = """filename,fold,target,category,esc10,src_file,take
1-100032-A-0.wav,1,0,dog,True,100032,A
1-100038-A-14.wav,1,14,chirping_birds,False,100038,A
2-102414-G-17.wav,2,17,pouring_water,False,102414,G
3-100018-A-18.wav,3,18,toilet_flush,False,100018,A
4-182395-A-1.wav,x,1,rooster,True,182395,A
5-9032-A-0.wav,5,70,dog,True,9032,A
"""


@pytest.fixture
def esc50(tmp_path) -> Path:
    root = tmp_path / "ESC-50-master"
    for name in ["1-100032-A-0", "1-100038-A-14", "2-102414-G-17", "4-182395-A-1", "5-9032-A-0"]:
        _audio(root / "audio" / f"{name}.wav", 44100)  # 3-100018-A-18.wav is listed but missing
    _text(root / "meta" / "esc50.csv", ESC50_CSV)
    return root


def test_esc50(esc50):
    recs = load_esc50(esc50)
    assert recs[0] == ESC50Clip(esc50 / "audio/1-100032-A-0.wav", "dog", 0, 1, True, "100032", "A")
    assert [(r.category, r.target, r.fold, r.esc10) for r in recs] == [
        ("dog", 0, 1, True), ("chirping_birds", 14, 1, False), ("pouring_water", 17, 2, False)]
    assert recs.skipped == {"bad_label": 1, "bad_row": 1, "missing_audio": 1}
    assert [r.fold for r in load_esc50(esc50, folds=[2])] == [2]
    with pytest.raises(SoftWidthError, match="folds must be among 1..5"):
        load_esc50(esc50, folds=[0, 6])


def test_esc50_wrong_layout(esc50, tmp_path):
    with pytest.raises(SoftWidthError, match=r"meta.esc50.csv is missing; .*holds \['ESC-50-master'\]"):
        load_esc50(esc50.parent)  # the parent folder instead of ESC-50-master
    (esc50 / "meta" / "esc50.csv").write_text("file,fold,label\n1-100032-A-0.wav,1,dog\n")
    with pytest.raises(SoftWidthError, match=r"lacks the columns \['filename', 'target', 'category', 'esc10'\]"):
        load_esc50(esc50)
    _text(tmp_path / "only_meta" / "meta" / "esc50.csv", ESC50_CSV)
    with pytest.raises(SoftWidthError, match="the audio folder .*only_meta.audio is missing"):
        load_esc50(tmp_path / "only_meta")


# --- ASVspoof 2019 LA -------------------------------------------------------------------------------------

PROTOCOLS = {
    "train": ("ASVspoof2019.LA.cm.train.trn.txt",
              ("LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1004644 - A01 spoof\n"
               "LA_0080 LA_T_1271820 - A06 spoof\nLA_0080 LA_T_9999999 - A02 spoof\n")),  # last: no flac
    "dev": ("ASVspoof2019.LA.cm.dev.trl.txt",
            "LA_0069 LA_D_1047731 - - bonafide\nLA_0070 LA_D_1105538 - A05 spoof\n\n"),
    "eval": ("ASVspoof2019.LA.cm.eval.trl.txt",
             ("LA_0039 LA_E_2834763 - A11 spoof\nLA_0031 LA_E_5932896 - - bonafide\n"
              "LA_0039 LA_E_1000001 - A11 bonafide\nLA_0039 LA_E_1000002 - - spoof\n"  # key and system disagree
              "garbage line\nLA_0039 LA_E_2834763 - A11 spoof\n")),  # malformed; duplicate
}


@pytest.fixture
def asvspoof(tmp_path) -> Path:
    la = tmp_path / "LA"
    for split, (name, text) in PROTOCOLS.items():
        _text(la / "ASVspoof2019_LA_cm_protocols" / name, text)
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 5 and fields[1] != "LA_T_9999999":
                _audio(la / f"ASVspoof2019_LA_{split}" / "flac" / f"{fields[1]}.flac")
    _text(la / "README.LA.txt", "ASVspoof 2019 LA\n")
    return la


def test_asvspoof2019_la(asvspoof):
    recs = load_asvspoof2019_la(asvspoof)
    assert recs[0] == ASVspoofTrial(asvspoof / "ASVspoof2019_LA_train/flac/LA_T_1138215.flac", "LA_0079",
                                    "LA_T_1138215", "-", "bonafide", "train")
    assert [(r.split, r.utterance, r.attack, r.is_spoof) for r in recs] == [
        ("train", "LA_T_1138215", "-", False), ("train", "LA_T_1004644", "A01", True),
        ("train", "LA_T_1271820", "A06", True), ("dev", "LA_D_1047731", "-", False),
        ("dev", "LA_D_1105538", "A05", True), ("eval", "LA_E_2834763", "A11", True),
        ("eval", "LA_E_5932896", "-", False)]
    assert recs.skipped == {"bad_label": 2, "bad_line": 2, "missing_audio": 1}
    assert all(r.path.is_file() for r in recs)


def test_asvspoof2019_la_parent_and_split_selection(asvspoof):
    evals = load_asvspoof2019_la(asvspoof.parent, splits=["eval"])
    assert {r.split for r in evals} == {"eval"} and len(evals) == 2
    assert load_asvspoof2019_la(asvspoof, splits="dev")[0].utterance == "LA_D_1047731"
    with pytest.raises(SoftWidthError, match="splits must be among"):
        load_asvspoof2019_la(asvspoof, splits=["test"])


def test_asvspoof2019_la_wrong_layout(asvspoof, tmp_path):
    import shutil

    shutil.rmtree(asvspoof / "ASVspoof2019_LA_dev" / "flac")
    with pytest.raises(SoftWidthError, match=r"the dev audio folder .*ASVspoof2019_LA_dev.flac is missing"):
        load_asvspoof2019_la(asvspoof)
    assert len(load_asvspoof2019_la(asvspoof, splits=("train", "eval"))) == 5  # dev not needed
    (asvspoof / "ASVspoof2019_LA_cm_protocols" / PROTOCOLS["train"][0]).unlink()
    with pytest.raises(SoftWidthError, match=r"the train protocol .*ASVspoof2019.LA.cm.train.trn.txt is missing"):
        load_asvspoof2019_la(asvspoof, splits=["train"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SoftWidthError, match="the protocol folder .*ASVspoof2019_LA_cm_protocols is missing"):
        load_asvspoof2019_la(tmp_path / "empty")


def test_asvspoof2019_la_all_audio_missing_is_an_error(asvspoof):
    for flac in (asvspoof / "ASVspoof2019_LA_eval" / "flac").iterdir():
        flac.unlink()
    counts = r"\(skipped: \{'bad_label': 2, 'bad_line': 1, 'missing_audio': 3\}\)"  # the duplicate line too
    with pytest.raises(SoftWidthError, match=r"no usable trial in .*eval.trl.txt " + counts):
        load_asvspoof2019_la(asvspoof, splits=["eval"])


# --- folder + CSV -----------------------------------------------------------------------------------------

def test_folder_csv(tmp_path):
    _audio(tmp_path / "a.wav")
    _audio(tmp_path / "sub" / "b.flac")
    _audio(tmp_path / "elsewhere" / "c.wav")
    _text(tmp_path / "labels.csv", f"path,label,who\na.wav,speech,alice\nsub/b.flac,noise,\n"
          f"missing.wav,speech,bob\nsub/b.flac,,bob\n{tmp_path / 'elsewhere' / 'c.wav'},speech,carol\n")
    recs = load_folder(tmp_path, speaker_column="who")
    assert recs == [LabelledFile(tmp_path / "a.wav", "speech", "alice"),
                    LabelledFile(tmp_path / "sub/b.flac", "noise", None),
                    LabelledFile(tmp_path / "elsewhere/c.wav", "speech", "carol")]
    assert recs.skipped == {"bad_row": 1, "missing_audio": 1}
    assert load_folder(tmp_path)[0].speaker is None


def test_folder_custom_columns_and_tsv(tmp_path):
    _audio(tmp_path / "clips" / "x.wav")
    _text(tmp_path / "meta.tsv", "\ufefffile\tclass\nx.wav\tdog\n")  # a BOM, as spreadsheets write it
    recs = load_folder(tmp_path / "clips", tmp_path / "meta.tsv", path_column="file", label_column="class")
    assert recs == [LabelledFile(tmp_path / "clips/x.wav", "dog")]
    with pytest.raises(SoftWidthError, match=r"has no column \['path', 'label'\] .*\['file', 'class'\]"):
        load_folder(tmp_path / "clips", tmp_path / "meta.tsv")
    with pytest.raises(SoftWidthError, match="label file .*labels.csv is missing"):
        load_folder(tmp_path / "clips")
    _text(tmp_path / "clips" / "labels.csv", "path,label\nnope.wav,dog\n")
    with pytest.raises(SoftWidthError, match="no row .* names an existing file"):
        load_folder(tmp_path / "clips")


# --- load_corpus ------------------------------------------------------------------------------------------

def test_load_corpus_dispatch(vctk092, esc50):
    assert load_corpus(f"vctk:{vctk092}") == load_vctk(vctk092)
    assert load_corpus(f"ESC50:{esc50}") == load_esc50(esc50)
    for bad in ("vctk", f"timit:{vctk092}", "vctk:"):
        with pytest.raises(SoftWidthError, match="KIND:PATH"):
            load_corpus(bad)
