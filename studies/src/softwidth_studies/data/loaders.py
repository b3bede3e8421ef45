"""Readers for the real corpora users have on disk: VCTK, ESC-50, ASVspoof 2019 LA, and a folder + CSV.

Each loader checks the on-disk layout, raises a :class:`SoftWidthError` naming the missing file or folder if
it is wrong, and returns a :class:`RecordList`: a plain list of small frozen dataclass records (one per audio
file, sorted as the corpus lists them) whose ``skipped`` attribute counts the entries left out, by reason
(``missing_audio``: a listed file that is not there; ``bad_line``/``bad_row``: a malformed protocol or CSV
line; ``bad_label``: a label the corpus does not define; ``bad_name``: an audio file named against the
corpus convention). Audio is not opened here: :func:`softwidth_studies.data.audio.read_audio` does that, and raises
:class:`~softwidth_studies.data.audio.AudioError` for files that exist but are unreadable.

Layouts (the paths below the folder you pass):

- VCTK 0.92: ``wav48_silence_trimmed/p225/p225_001_mic1.flac`` (and ``_mic2``), ``txt/p225/p225_001.txt``;
  VCTK 0.80: ``wav48/p225/p225_001.wav``, same ``txt/``; optional ``speaker-info.txt``.
- ESC-50: ``audio/1-100032-A-0.wav``, ``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``).
- ASVspoof 2019 LA: ``ASVspoof2019_LA_<split>/flac/LA_T_1138215.flac`` and
  ``ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt`` (``dev.trl``, ``eval.trl``), lines
  ``SPEAKER UTTERANCE - SYSTEM KEY`` such as ``LA_0079 LA_T_1138215 - - bonafide`` or
  ``LA_0039 LA_E_2834763 - A11 spoof``; the ``LA/`` folder or its parent may be passed.
- Folder: any audio files below ``root`` plus a CSV (default ``root/labels.csv``; ``.tsv`` is tab-separated)
  with a path column (relative to ``root`` or absolute) and a label column.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from softwidth.errors import SoftWidthError

__all__ = [
    "ASVspoofTrial",
    "ESC50Clip",
    "LabelledFile",
    "RecordList",
    "VCTKUtterance",
    "load_asvspoof2019_la",
    "load_corpus",
    "load_esc50",
    "load_folder",
    "load_vctk",
]

PathLike = str | os.PathLike[str]


class RecordList(list):
    """A list of records; ``skipped`` maps a reason to how many corpus entries were left out for it."""

    def __init__(self, records: Iterable[object] = (), skipped: Counter[str] | dict[str, int] | None = None):
        super().__init__(records)
        self.skipped: dict[str, int] = {k: int(v) for k, v in sorted((skipped or {}).items()) if v}

    @property
    def n_skipped(self) -> int:
        """Entries left out, all reasons together."""
        return sum(self.skipped.values())


@dataclass(frozen=True)
class VCTKUtterance:
    """One VCTK recording: ``speaker`` (``p225``), ``utterance`` (``p225_001``), ``text`` (None where VCTK has
    no transcript, e.g. p315), ``mic`` (``mic1``/``mic2`` in 0.92, None in 0.80), ``gender`` (``F``/``M``) and
    ``accent`` from speaker-info.txt (None if absent). Audio: 48 kHz (0.92 flac is silence-trimmed)."""

    path: Path
    speaker: str
    utterance: str
    text: str | None
    mic: str | None
    gender: str | None
    accent: str | None


@dataclass(frozen=True)
class ESC50Clip:
    """One ESC-50 clip (5 s, 44.1 kHz): ``category`` name, ``target`` class index 0..49, ``fold`` 1..5,
    ``esc10`` (in the ESC-10 subset), ``src_file`` (the freesound clip it was cut from) and ``take``."""

    path: Path
    category: str
    target: int
    fold: int
    esc10: bool
    src_file: str
    take: str


@dataclass(frozen=True)
class ASVspoofTrial:
    """One ASVspoof 2019 LA trial: ``speaker`` (``LA_0079``), ``utterance`` (``LA_T_1138215``), ``attack`` (the
    protocol's system id: ``-`` for bona fide, ``A01``..``A19`` for spoofs; A07-A19 occur only in eval),
    ``label`` (``bonafide`` or ``spoof``) and ``split`` (``train``, ``dev``, ``eval``). Audio: 16 kHz flac."""

    path: Path
    speaker: str
    utterance: str
    attack: str
    label: str
    split: str

    @property
    def is_spoof(self) -> bool:
        return self.label == "spoof"


@dataclass(frozen=True)
class LabelledFile:
    """One file of a folder + CSV corpus: its ``label`` and, if a speaker column was named, ``speaker``."""

    path: Path
    label: str
    speaker: str | None = None


def _require(path: Path, what: str, corpus: str) -> Path:
    """``path`` if it exists, else an error that also lists what its nearest existing folder holds."""
    if not path.exists():
        near = path.parent
        while not near.is_dir() and near != near.parent:
            near = near.parent
        children = sorted(c.name for c in near.iterdir())[:8] if near.is_dir() else []
        hint = f"; {near} holds {children}" if children else f"; {near} is empty"
        raise SoftWidthError(f"{corpus}: {what} {path} is missing{hint}; pass the corpus's top folder")
    return path


def _counts(skipped: Counter[str]) -> dict[str, int]:
    return dict(sorted(skipped.items()))


def _root(root: PathLike, corpus: str) -> Path:
    p = Path(root).expanduser()
    if not p.is_dir():
        raise SoftWidthError(f"{corpus}: {p} is not a directory; pass the folder the corpus was unpacked to")
    return p


# --- VCTK -------------------------------------------------------------------------------------------------

_VCTK_092 = re.compile(r"^(?P<spk>[a-z]+\d+)_(?P<num>\d+)_(?P<mic>mic[12])$")
_VCTK_080 = re.compile(r"^(?P<spk>[a-z]+\d+)_(?P<num>\d+)$")


def _vctk_speaker_info(path: Path) -> dict[str, tuple[str, str]]:
    """``speaker -> (gender, accent)`` from speaker-info.txt (``ID AGE GENDER ACCENTS ...``; ids are ``p225``
    in 0.92 and ``225`` in 0.80, normalised to ``p225``)."""
    info: dict[str, tuple[str, str]] = {}
    if not path.is_file():
        return info
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4:
            spk = fields[0] if not fields[0].isdigit() else f"p{fields[0]}"
            info[spk] = (fields[2], fields[3])
    return info


def load_vctk(root: PathLike, *, mic: str | None = "mic1") -> RecordList:
    """VCTK 0.92 (``wav48_silence_trimmed/``, flac) or 0.80 (``wav48/``, wav) under ``root``.

    Args:
        root: the corpus folder (holding ``wav48_silence_trimmed/`` or ``wav48/`` and ``txt/``).
        mic: 0.92 only: keep ``"mic1"`` (default), ``"mic2"``, or None for both (each sentence twice).

    Returns a :class:`RecordList` of :class:`VCTKUtterance`, sorted by speaker and utterance.
    """
    base = _root(root, "VCTK")
    if mic not in ("mic1", "mic2", None):
        raise SoftWidthError(f"load_vctk: mic must be 'mic1', 'mic2' or None, got {mic!r}")
    if (base / "wav48_silence_trimmed").is_dir():
        audio_dir, ext, pattern = base / "wav48_silence_trimmed", ".flac", _VCTK_092
    elif (base / "wav48").is_dir():
        audio_dir, ext, pattern = base / "wav48", ".wav", _VCTK_080
    else:
        raise SoftWidthError(f"VCTK: {base} holds neither wav48_silence_trimmed/ (VCTK 0.92) nor wav48/ "
                             "(VCTK 0.80); pass the folder that contains them and txt/")
    info = _vctk_speaker_info(base / "speaker-info.txt")
    records, skipped = [], Counter()
    for spk_dir in sorted(d for d in audio_dir.iterdir() if d.is_dir()):
        for f in sorted(spk_dir.glob(f"*{ext}")):
            m = pattern.match(f.stem)
            if m is None or m["spk"] != spk_dir.name:
                skipped["bad_name"] += 1
                continue
            file_mic = m.groupdict().get("mic")
            if mic is not None and file_mic is not None and file_mic != mic:
                continue
            utt = f"{m['spk']}_{m['num']}"
            txt = base / "txt" / m["spk"] / f"{utt}.txt"
            text = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else None
            gender, accent = info.get(m["spk"], (None, None))
            records.append(VCTKUtterance(f, m["spk"], utt, text or None, file_mic, gender, accent))
    if not records:
        raise SoftWidthError(f"VCTK: no {ext} files named like p225_001{'_mic1' if ext == '.flac' else ''}{ext} "
                             f"in the speaker folders of {audio_dir}")
    return RecordList(records, skipped)


# --- ESC-50 -----------------------------------------------------------------------------------------------

_ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10")


def load_esc50(root: PathLike, *, folds: Iterable[int] | None = None) -> RecordList:
    """ESC-50 under ``root`` (``audio/`` and ``meta/esc50.csv``).

    Args:
        root: the corpus folder (``ESC-50-master`` as unpacked).
        folds: keep only these folds (1..5); None keeps all 2000 clips.

    Returns a :class:`RecordList` of :class:`ESC50Clip` in the CSV's order.
    """
    base = _root(root, "ESC-50")
    meta = _require(base / "meta" / "esc50.csv", "the metadata file", "ESC-50")
    audio = _require(base / "audio", "the audio folder", "ESC-50")
    keep = None if folds is None else set(folds)
    if keep is not None and not keep <= {1, 2, 3, 4, 5}:
        raise SoftWidthError(f"load_esc50: folds must be among 1..5, got {sorted(keep, key=str)}")
    records, skipped = [], Counter()
    with open(meta, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _ESC50_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SoftWidthError(f"ESC-50: {meta} lacks the columns {missing} (has {reader.fieldnames}); "
                                 "expected the header filename,fold,target,category,esc10,src_file,take")
        for row in reader:
            try:
                fold, target = int(row["fold"]), int(row["target"])
                esc10 = {"true": True, "false": False}[row["esc10"].strip().lower()]
                name, category = row["filename"].strip(), row["category"].strip()
            except (KeyError, ValueError, AttributeError, TypeError):
                skipped["bad_row"] += 1
                continue
            if not name or not category or not 0 <= target < 50 or not 1 <= fold <= 5:
                skipped["bad_label"] += 1
                continue
            if keep is not None and fold not in keep:
                continue
            path = audio / name
            if not path.is_file():
                skipped["missing_audio"] += 1
                continue
            records.append(ESC50Clip(path, category, target, fold, esc10,
                                     (row.get("src_file") or "").strip(), (row.get("take") or "").strip()))
    if not records and keep is None:
        raise SoftWidthError(f"ESC-50: none of the clips listed in {meta} is in {audio} "
                             f"(skipped: {_counts(skipped)}); unpack the audio next to meta/")
    return RecordList(records, skipped)


# --- ASVspoof 2019 LA -------------------------------------------------------------------------------------

_ASV_SPLITS = ("train", "dev", "eval")
_ASV_PROTOCOL = {"train": "ASVspoof2019.LA.cm.train.trn.txt", "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
                 "eval": "ASVspoof2019.LA.cm.eval.trl.txt"}
_ASV_ATTACK = re.compile(r"^A\d\d$")


def load_asvspoof2019_la(root: PathLike, *, splits: Iterable[str] = _ASV_SPLITS) -> RecordList:
    """ASVspoof 2019 logical access, countermeasure (CM) protocols, under ``root``.

    Args:
        root: the ``LA`` folder (holding ``ASVspoof2019_LA_cm_protocols/`` and ``ASVspoof2019_LA_<split>/``),
            or its parent.
        splits: which of ``"train"``, ``"dev"``, ``"eval"`` to read.

    Returns a :class:`RecordList` of :class:`ASVspoofTrial`, split by split in protocol order. Lines whose
    flac is absent are skipped and counted (``missing_audio``); so are malformed lines and lines whose key
    and system id disagree (a spoof needs ``A01``..``A19``, bona fide ``-``).
    """
    base = _root(root, "ASVspoof 2019 LA")
    if not (base / "ASVspoof2019_LA_cm_protocols").is_dir() and (base / "LA").is_dir():
        base = base / "LA"
    wanted = [splits] if isinstance(splits, str) else list(splits)
    unknown = [s for s in wanted if s not in _ASV_SPLITS]
    if unknown or not wanted:
        raise SoftWidthError(f"load_asvspoof2019_la: splits must be among {_ASV_SPLITS}, got {wanted}")
    protocols = _require(base / "ASVspoof2019_LA_cm_protocols", "the protocol folder", "ASVspoof 2019 LA")
    records, skipped = [], Counter()
    for split in dict.fromkeys(wanted):
        protocol = _require(protocols / _ASV_PROTOCOL[split], f"the {split} protocol", "ASVspoof 2019 LA")
        flac = _require(base / f"ASVspoof2019_LA_{split}" / "flac", f"the {split} audio folder", "ASVspoof 2019 LA")
        found, seen, split_skips = 0, set(), Counter()
        for line in protocol.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5 or fields[1] in seen:
                split_skips["bad_line"] += 1
                continue
            speaker, utt, _, attack, key = fields
            if not (key == "bonafide" and attack == "-") and not (key == "spoof" and _ASV_ATTACK.match(attack)):
                split_skips["bad_label"] += 1
                continue
            path = flac / f"{utt}.flac"
            if not path.is_file():
                split_skips["missing_audio"] += 1
                continue
            seen.add(utt)
            records.append(ASVspoofTrial(path, speaker, utt, attack, key, split))
            found += 1
        if found == 0:
            raise SoftWidthError(f"ASVspoof 2019 LA: no usable trial in {protocol} (skipped: {_counts(split_skips)}); "
                                 f"expected lines like 'LA_0079 LA_T_1138215 - - bonafide' naming files in {flac}")
        skipped.update(split_skips)
    return RecordList(records, skipped)


# --- folder + CSV -----------------------------------------------------------------------------------------

def load_folder(root: PathLike, csv_file: PathLike | None = None, *, path_column: str = "path",
                label_column: str = "label", speaker_column: str | None = None) -> RecordList:
    """A folder of audio files labelled by a CSV.

    Args:
        root: the folder; relative paths in the CSV are relative to it.
        csv_file: the label file (default ``root/labels.csv``); ``.tsv`` files are read tab-separated.
        path_column, label_column, speaker_column: the CSV header names to read (speaker optional).

    Returns a :class:`RecordList` of :class:`LabelledFile` in the CSV's order; rows with an empty path or
    label are counted as ``bad_row``, rows naming a missing file as ``missing_audio``.
    """
    base = _root(root, "folder corpus")
    table = Path(csv_file).expanduser() if csv_file is not None else base / "labels.csv"
    _require(table, "the label file", "folder corpus")
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    records, skipped = [], Counter()
    with open(table, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = [path_column, label_column] + ([speaker_column] if speaker_column else [])
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise SoftWidthError(f"folder corpus: {table} has no column {missing} (its header is "
                                 f"{reader.fieldnames}); pass path_column=/label_column= naming yours")
        for row in reader:
            rel, label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
            speaker = ((row.get(speaker_column) or "").strip() or None) if speaker_column else None
            if not rel or not label:
                skipped["bad_row"] += 1
                continue
            path = Path(rel) if Path(rel).is_absolute() else base / rel
            if not path.is_file():
                skipped["missing_audio"] += 1
                continue
            records.append(LabelledFile(path, label, speaker))
    if not records:
        raise SoftWidthError(f"folder corpus: no row of {table} names an existing file below {base} "
                             f"(skipped: {_counts(skipped)})")
    return RecordList(records, skipped)


_LOADERS = {"vctk": load_vctk, "esc50": load_esc50, "asvspoof2019la": load_asvspoof2019_la, "folder": load_folder}


def load_corpus(spec: str) -> RecordList:
    """Load a corpus named as on the command line: ``KIND:PATH`` with KIND one of ``vctk``, ``esc50``,
    ``asvspoof2019la``, ``folder`` (which reads ``PATH/labels.csv``), e.g. ``"vctk:/data/VCTK-Corpus-0.92"``."""
    kind, sep, path = spec.partition(":")
    if not sep or not path or kind.lower() not in _LOADERS:
        raise SoftWidthError(f"corpus {spec!r} should be KIND:PATH with KIND one of {sorted(_LOADERS)}, "
                             "e.g. vctk:/data/VCTK-Corpus-0.92")
    return _LOADERS[kind.lower()](path)
