"""The bona fide side of the anti-spoofing corpus: real recordings by speaker, with their transcripts.

The recordings and who speaks them come from :func:`softwidth_studies.data.vad_sources.debian_speech` (the same
speaker rules as the VAD corpus); this module adds the split of every speaker (:data:`SPLIT_OF`) and the
transcripts TTS systems read, in the recording's language and in English:

* festvox-ru: ``etc/txt.done.data`` of the voice (``+`` marks stress and is dropped); no English.
* fillets-ng cs/nl: ``script/<level>/dialogs_<lang>.lua`` of fillets-ng-data holds, per dialog id, the
  English original (``dialogId(id, font, english)``) and the translation (``dialogStr(text)``).
* tuxpaint stamp descriptions: ``<stamp>.txt`` next to ``<stamp>_desc_<lang>.ogg``, the English text on its
  first line, then ``<lang>.utf8=<text>`` lines.
* Asterisk prompts: no transcripts (the resynthesis systems still use them); beeps and tones are dropped.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from .vad_sources import debian_speech

__all__ = ["PACKAGES", "SPLIT_OF", "SourceGroup", "Utterance", "load_groups"]


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


PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav", "asterisk-core-sounds-fr-wav",
            "asterisk-core-sounds-it-wav", "asterisk-core-sounds-ru-wav", "festvox-ru", "fillets-ng-data",
            "fillets-ng-data-cs", "fillets-ng-data-nl", "tuxpaint-stamps-default")
# Every bona fide speaker in one split. Train gets the largest speakers and the only English one (Allison,
# who also records es); val and test each get fillets nl, tuxpaint languages and an Asterisk voice.
SPLIT_OF: dict[str, str] = {
    **dict.fromkeys(("festvox:msu_ru_nsh", "fillets-cs:v", "fillets-cs:m", "tuxpaint:ro", "tuxpaint:es",
                     "tuxpaint:fr", "tuxpaint:bg", "asterisk:Allison"), "train"),
    **dict.fromkeys(("fillets-nl:m", "tuxpaint:ca", "tuxpaint:da", "asterisk:Carlo"), "val"),
    **dict.fromkeys(("fillets-nl:v", "tuxpaint:ru", "tuxpaint:el", "tuxpaint:be", "asterisk:June",
                     "asterisk:IvrvoiceRU"), "test"),
}
_FILLETS = "usr/share/games/fillets-ng"
_FESTVOX = "usr/share/festival/voices/russian/msu_ru_nsh_clunits"
_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(r"dialogId\(\s*" + _STR + r"\s*,\s*" + _STR + r"\s*,\s*" + _STR + r"\s*\)\s*dialogStr\(\s*"
                     + _STR + r"\s*\)", re.DOTALL)


def _clean(text: str) -> str:
    """Lua escapes undone, festvox stress marks dropped, whitespace collapsed."""
    return " ".join(re.sub(r"\\(.)", r"\1", text).replace("+", "").split())


def _festvox_texts(root: Path) -> dict[str, tuple[str, None]]:
    lines = (root / _FESTVOX / "etc/txt.done.data").read_text(encoding="utf-8").splitlines()
    matches = filter(None, (re.match(r'\(\s*(\S+)\s+"(.*)"\s*\)', ln) for ln in lines))
    return {f"festvox-ru:{_FESTVOX}/wav/{m.group(1)}.wav": (_clean(m.group(2)), None) for m in matches}


def _fillets_texts(script_root: Path, lang: str) -> dict[str, tuple[str, str]]:
    texts = {}
    for lua in sorted((script_root / _FILLETS / "script").glob(f"*/dialogs_{lang}.lua")):
        for ident, _font, english, text in _DIALOG.findall(lua.read_text(encoding="utf-8", errors="replace")):
            key = f"fillets-ng-data-{lang}:{_FILLETS}/sound/{lua.parent.name}/{lang}/{ident}.ogg"
            texts[key] = (_clean(text), _clean(english))
    return texts


def _tuxpaint_texts(path: Path, lang: str) -> tuple[str | None, str | None]:
    txt = path.with_name(re.sub(r"_desc_[a-z]+$", "", path.stem) + ".txt")
    if not txt.is_file():
        return None, None
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    english = next((_clean(ln) for ln in lines if ln.strip() and "=" not in ln), None)
    text = next((_clean(ln.split("=", 1)[1]) for ln in lines if ln.startswith(f"{lang}.utf8=")), None)
    return text or None, english or None


def load_groups(roots: dict[str, Path]) -> tuple[list[SourceGroup], Counter]:
    """The bona fide groups (one per speaker and language, speakers of :data:`SPLIT_OF` only) of the
    unpacked packages ``{package: tree root}`` (:data:`PACKAGES`), sorted by name; and the count of files
    left out by rule, by reason."""
    clips, excluded = debian_speech({p: r for p, r in roots.items() if p != "fillets-ng-data"})
    texts: dict[str, tuple[str | None, str | None]] = {}
    if "festvox-ru" in roots:
        texts |= _festvox_texts(roots["festvox-ru"])
    if "fillets-ng-data" in roots:
        for lang in ("cs", "nl"):
            texts |= _fillets_texts(roots["fillets-ng-data"], lang)
    members: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    packages: dict[tuple[str, str], str] = {}
    for clip in clips:
        package = clip.key.split(":", 1)[0]
        if clip.speaker not in SPLIT_OF:
            excluded["speakers outside the antispoof split table"] += 1
        else:  # (asterisk beeps and tones are already dropped by vad_sources)
            text, english = (_tuxpaint_texts(clip.path, clip.language) if package.startswith("tuxpaint")
                             else texts.get(clip.key, (None, None)))
            members[clip.speaker, clip.language].append(Utterance(clip.path, clip.key, text, english))
            packages[clip.speaker, clip.language] = package
    groups = [SourceGroup(f"{speaker}/{lang}", speaker, lang, SPLIT_OF[speaker], packages[speaker, lang], tuple(utts))
              for (speaker, lang), utts in sorted(members.items())]
    return groups, excluded
