"""The bona fide side of the anti-spoofing corpus: real recordings from Debian packages, by speaker.

:data:`GROUPS` lists every speaker (in every language they speak) with the one split it belongs to:

* festvox-ru (``usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav``, transcripts in
  ``etc/txt.done.data``, ``+`` marks stress and is dropped): 1 male speaker, train.
* fillets-ng (``sound/<level>/<lang>/<id>.ogg``; transcripts and the English original in
  ``script/<level>/dialogs_<lang>.lua`` of fillets-ng-data): the two main actors per language, the big fish
  ``v`` and the small fish ``m`` (ids ``<prefix>-v-<word>`` or ``v-<word>``). Minor characters are left out:
  they may be voiced by the same actors, which would break speaker-disjoint splits. cs in train, nl-m in
  val, nl-v in test.
* tuxpaint stamp descriptions (``stamps/**/<name>_desc_<lang>.ogg``; ``<name>.txt`` holds the English text
  on its first line and ``<lang>.utf8=`` lines): one volunteer per language is assumed.
* Asterisk core sounds (``sounds/<voice>/**/*.wav``, 8 kHz, no transcripts; ``silence/``, beeps and tones
  left out): Allison (en and es, one person) in train, Carlo (it) val, June (fr) and the Russian voice test.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GROUPS", "SourceGroup", "Utterance", "bonafide_packages", "load_groups"]


@dataclass(frozen=True)
class Utterance:
    """One recording: ``path``; ``ident`` a portable id (``package:relative/path``); its transcript ``text``
    in the group's language and ``text_en``, the same content in English (None when unknown)."""

    path: Path
    ident: str
    text: str | None = None
    text_en: str | None = None


@dataclass(frozen=True)
class SourceGroup:
    """The recordings of one speaker in one language, all in one split. ``speaker`` names the person (two
    groups of one person, e.g. Allison en and es, share it); ``source`` is the Debian package."""

    name: str
    speaker: str
    language: str
    split: str
    source: str
    utterances: tuple[Utterance, ...]


# -- bona fide sources ---------------------------------------------------------------------------------
_FILLETS = "usr/share/games/fillets-ng"
_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(r"dialogId\(\s*" + _STR + r"\s*,\s*" + _STR + r"\s*,\s*" + _STR + r"\s*\)\s*dialogStr\(\s*"
                     + _STR + r"\s*\)", re.DOTALL)


def _clean(text: str) -> str:
    return " ".join(re.sub(r"\\(.)", r"\1", text).replace("+", "").split())


def _festvox_ru(root: Path) -> dict[str, list[Utterance]]:
    voice = root / "usr/share/festival/voices/russian/msu_ru_nsh_clunits"
    lines = (voice / "etc/txt.done.data").read_text(encoding="utf-8").splitlines()
    utts = []
    for match in filter(None, (re.match(r'\(\s*(\S+)\s+"(.*)"\s*\)', ln) for ln in lines)):
        wav = voice / "wav" / f"{match.group(1)}.wav"  # '+' marks stress in the transcripts
        utts.append(Utterance(wav, f"festvox-ru:{match.group(1)}", _clean(match.group(2))))
    return {"nsh": utts}


def _fillets(script_root: Path, sound_root: Path, lang: str, package: str) -> dict[str, list[Utterance]]:
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for lua in sorted((script_root / _FILLETS / "script").glob(f"*/dialogs_{lang}.lua")):
        level = lua.parent.name
        for ident, _font, english, text in _DIALOG.findall(lua.read_text(encoding="utf-8", errors="replace")):
            parts = ident.split("-")
            speaker = parts[1] if len(parts) >= 3 else parts[0]  # "sp-v-no0" and "v-nenifer": big fish v
            ogg = sound_root / _FILLETS / "sound" / level / lang / f"{ident}.ogg"
            if speaker in ("v", "m") and ogg.is_file():  # minor characters may share actors: left out
                groups[speaker].append(Utterance(ogg, f"{package}:{level}/{ident}", _clean(text), _clean(english)))
    return groups


def _tuxpaint(root: Path, lang: str) -> dict[str, list[Utterance]]:
    utts = []
    for ogg in sorted((root / "usr/share/tuxpaint/stamps").rglob(f"*_desc_{lang}.ogg")):
        text = english = None
        txt = ogg.with_name(ogg.name[: -len(f"_desc_{lang}.ogg")] + ".txt")
        if txt.is_file():
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            english = next((_clean(ln) for ln in lines if ln.strip() and "=" not in ln), None)
            text = next((_clean(ln.split("=", 1)[1]) for ln in lines if ln.startswith(f"{lang}.utf8=")), None)
        rel = ogg.relative_to(root / "usr/share/tuxpaint/stamps")
        utts.append(Utterance(ogg, f"tuxpaint-stamps-default:{rel}", text or None, english or None))
    return {lang: utts}


def _asterisk(root: Path, voice_dir: str, package: str) -> dict[str, list[Utterance]]:
    base = root / "usr/share/asterisk/sounds" / voice_dir
    utts = [Utterance(p, f"{package}:{p.relative_to(base)}") for p in sorted(base.rglob("*.wav"))
            if "silence" not in p.parts and not re.search(r"beep|tone", p.name)]  # no speech in these
    return {voice_dir: utts}


_F = "fillets-ng-data"
_A = "asterisk-core-sounds-{}-wav"
# Every bona fide speaker in exactly one split: (group, speaker, language, split, reader, packages, key).
GROUPS: tuple[tuple[str, str, str, str, str, tuple[str, ...], str], ...] = (
    ("festvox-ru", "festvox-ru:nsh", "ru", "train", "festvox", ("festvox-ru",), "nsh"),
    ("fillets-cs-v", "fillets-cs:v", "cs", "train", "fillets", (_F, f"{_F}-cs"), "v"),
    ("fillets-cs-m", "fillets-cs:m", "cs", "train", "fillets", (_F, f"{_F}-cs"), "m"),
    ("fillets-nl-m", "fillets-nl:m", "nl", "val", "fillets", (_F, f"{_F}-nl"), "m"),
    ("fillets-nl-v", "fillets-nl:v", "nl", "test", "fillets", (_F, f"{_F}-nl"), "v"),
    *((f"tuxpaint-{lang}", f"tuxpaint:{lang}", lang, split, "tuxpaint", ("tuxpaint-stamps-default",), lang)
      for lang, split in (("ro", "train"), ("es", "train"), ("fr", "train"), ("bg", "train"), ("ca", "val"),
                          ("da", "val"), ("ru", "test"), ("el", "test"), ("be", "test"))),
    *((f"asterisk-{name}-{lang}", f"asterisk:{name}", lang, split, "asterisk", (_A.format(lang),), voice)
      for name, lang, split, voice in (
          ("allison", "en", "train", "en_US_f_Allison"), ("allison", "es", "train", "es_MX_f_Allison"),
          ("carlo", "it", "val", "it_IT_m_Carlo"), ("june", "fr", "test", "fr_CA_f_June"),
          ("ivrvoice", "ru", "test", "ru_RU_f_IvrvoiceRU"))),
)


def bonafide_packages() -> list[str]:
    """The Debian packages the bona fide groups read."""
    return sorted({p for g in GROUPS for p in g[5]})


def load_groups(roots: dict[str, Path]) -> list[SourceGroup]:
    """The bona fide :class:`SourceGroup` list of :data:`GROUPS` from unpacked trees ``{package: root}``."""
    read: dict[tuple, dict[str, list[Utterance]]] = {}
    out = []
    for name, speaker, lang, split, reader, packages, key in GROUPS:
        trees = [roots[p] for p in packages]
        if (reader, packages, lang) not in read:
            read[reader, packages, lang] = (
                _festvox_ru(trees[0]) if reader == "festvox" else
                _fillets(trees[0], trees[1], lang, packages[1]) if reader == "fillets" else
                _tuxpaint(trees[0], lang) if reader == "tuxpaint" else _asterisk(trees[0], key, packages[0]))
        out.append(SourceGroup(name, speaker, lang, split, packages[-1], tuple(read[reader, packages, lang].get(key, ()))))
    return out
