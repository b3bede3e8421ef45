"""Where the VAD corpus gets its speech and noise, who speaks, and which split each voice and noise file joins.

Speech (data-sources.md, real recordings only): the Asterisk prompts (one professional voice per package;
Allison records both en and es, so she is one speaker), the two main actors of fillets-ng cs/nl (speaker codes
``m`` and ``v`` in ``<level>-<code>-<id>.ogg``; the minor characters are left out because their actors are not
named and may be the main ones), festvox-ru (one male), the tuxpaint stamp descriptions (one volunteer per
language is assumed) and the hedgewars voice packs (a pack and its ``_xx`` variants are one voice; the sung
``Singer`` and vocoded ``Robot`` packs are left out).

:func:`resolve_sources` fetches the packages of a size (or reads VCTK / ESC-50, or takes lists of records) and
returns the clips and files of a build.

Noise: music (Asterisk music on hold, the hedgewars, fillets, colobot and lincity soundtracks), effects
(oxygen and tuxpaint UI sounds, game effects, alsa-utils ``Noise.wav``) and ambience (the lincity city
loops). Files with voices in them are dropped by name: :data:`NOISE_WITH_SPEECH` lists the files in which
silero-vad found at least 1 s of speech, or 20 % of the file, or 0.5 s making up 10 % of it (19 of 493 files;
:func:`screen_with_silero` redoes the screen); the alsa channel announcements ("Front left" ...) and the
hedgewars voice packs are never read as noise.

:func:`assign_groups` splits voices (and noise files) into roles so that no voice or noise file is in two
splits: groups are visited largest first and each goes to the role furthest below its share, with every role
getting at least one group while groups last.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softwidth.errors import SoftWidthError
from .cache import read_json

__all__ = ["NOISE_PACKAGES", "NOISE_WITH_SPEECH", "SPEECH_PACKAGES", "NoiseFile", "SpeechClip", "assign_groups",
           "debian_noise", "debian_speech", "esc50_noise", "resolve_sources", "screen_with_silero",
           "vctk_speech"]


@dataclass(frozen=True)
class SpeechClip:
    """One recording of one voice. ``key`` names it the same on every machine (``package:relative/path``),
    ``speaker`` is the voice the splits keep apart (``asterisk:Allison``), ``language`` an ISO 639-1 code."""

    key: str
    path: Path
    speaker: str
    language: str


@dataclass(frozen=True)
class NoiseFile:
    """One noise recording: ``category`` is its noise type (``music``, ``effects``, ``ambience`` or an ESC-50
    class) and ``group`` the files that must share a split (numbered takes of one sound, cuts of one clip)."""

    key: str
    path: Path
    category: str
    group: str


# Packages per corpus size. tiny: 5 voices (en, fr, it, cs) and 78 MB of speech packages, 62 MB of noise.
SPEECH_PACKAGES: dict[str, tuple[str, ...]] = {
    "tiny": ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav",
             "fillets-ng-data-cs"),
}
SPEECH_PACKAGES["small"] = SPEECH_PACKAGES["tiny"] + (
    "asterisk-core-sounds-es-wav", "asterisk-core-sounds-ru-wav", "asterisk-prompt-it-menardi-wav",
    "fillets-ng-data-nl")
SPEECH_PACKAGES["full"] = SPEECH_PACKAGES["small"] + ("festvox-ru", "tuxpaint-stamps-default", "hedgewars-data")
NOISE_PACKAGES: dict[str, tuple[str, ...]] = {
    "tiny": ("alsa-utils", "oxygen-sounds", "asterisk-moh-opsound-wav", "lincity-ng-data"),
}
NOISE_PACKAGES["small"] = NOISE_PACKAGES["tiny"] + ("tuxpaint-data", "fillets-ng-data")
NOISE_PACKAGES["full"] = NOISE_PACKAGES["small"] + ("hedgewars-data", "colobot-common-sounds")

# Made by screen_with_silero on every noise file of NOISE_PACKAGES["full"] (silero-vad 6.2.3, default settings).
NOISE_WITH_SPEECH = frozenset({
    "colobot-common-sounds:usr/share/games/colobot/sounds/sound036.wav",
    "colobot-common-sounds:usr/share/games/colobot/sounds/sound064.wav",
    "colobot-common-sounds:usr/share/games/colobot/sounds/sound073.wav",
    "hedgewars-data:usr/share/games/hedgewars/Data/Music/City.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/Hellish.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/bee.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/beewater.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/hell_ow.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/hell_ugh.ogg",
    "hedgewars-data:usr/share/games/hedgewars/Data/Sounds/lowgravity.ogg",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/FireStation1.wav",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/Shanty3.wav",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/Substation3.wav",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/Substation4.wav",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/SubstationOff.wav",
    "lincity-ng-data:usr/share/games/lincity-ng/sounds/SubstationOn.wav",
    "tuxpaint-data:usr/share/tuxpaint/sounds/areyousure.wav",
    "tuxpaint-data:usr/share/tuxpaint/sounds/tuxok.wav",
    "tuxpaint-data:usr/share/tuxpaint/sounds/youcannot.wav",
})

_AUDIO = (".wav", ".ogg", ".flac", ".gsm")
_HEDGEWARS_LANG = {"es": "es", "pl": "pl", "ru": "ru", "uk": "uk"}


def _files(root: Path, folder: str, pattern: str = "*") -> Iterator[Path]:
    """Audio files under ``root/folder`` matching ``pattern`` (recursive if it has ``**``), sorted."""
    base = root / folder
    if not base.is_dir():
        return iter(())
    found = base.glob(pattern)
    return iter(sorted(p for p in found if p.is_file() and p.suffix.lower() in _AUDIO))


def _key(package: str, root: Path, path: Path) -> str:
    return f"{package}:{path.relative_to(root).as_posix()}"


def _asterisk(package: str, root: Path, excluded: Counter) -> Iterator[SpeechClip]:
    base = root / "usr/share/asterisk/sounds"
    for voice in sorted(d for d in base.iterdir() if d.is_dir()) if base.is_dir() else ():
        parts = voice.name.split("_")  # en_US_f_Allison: language, country, sex, name
        if len(parts) < 4:
            continue
        for f in _files(voice, ".", "**/*"):
            if "silence" in f.relative_to(voice).parts:
                excluded["asterisk silence/ recordings"] += 1
                continue
            if re.search(r"beep|tone", f.name):  # beeps and tones (beep.wav, *-2tone.wav) are not speech
                excluded["asterisk beeps and tones"] += 1
                continue
            yield SpeechClip(_key(package, root, f), f, f"asterisk:{parts[-1]}", parts[0].lower())


def _fillets(package: str, root: Path, excluded: Counter) -> Iterator[SpeechClip]:
    lang = package.rsplit("-", 1)[-1]
    for f in _files(root, "usr/share/games/fillets-ng/sound", f"**/{lang}/*.ogg"):
        fields = f.stem.split("-")
        if len(fields) < 2 or fields[-2] not in ("m", "v"):
            excluded["fillets-ng minor characters (actor unknown)"] += 1
            continue
        yield SpeechClip(_key(package, root, f), f, f"fillets-{lang}:{fields[-2]}", lang)


def _festvox(package: str, root: Path, excluded: Counter) -> Iterator[SpeechClip]:
    for f in _files(root, "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav", "*.wav"):
        yield SpeechClip(_key(package, root, f), f, "festvox:msu_ru_nsh", "ru")


def _tuxpaint(package: str, root: Path, excluded: Counter) -> Iterator[SpeechClip]:
    for f in _files(root, "usr/share/tuxpaint/stamps", "**/*_desc*.ogg"):
        m = re.search(r"_desc(?:_([a-z]{2,3}))?$", f.stem)
        if m is None:
            excluded["tuxpaint descriptions of unknown language"] += 1
            continue
        lang = m.group(1) or "en"
        yield SpeechClip(_key(package, root, f), f, f"tuxpaint:{lang}", lang)


def _hedgewars(package: str, root: Path, excluded: Counter) -> Iterator[SpeechClip]:
    for f in _files(root, "usr/share/games/hedgewars/Data/Sounds/voices", "*/*.ogg"):
        pack = f.parent.name
        if pack in ("Singer", "Robot"):
            excluded["hedgewars sung or vocoded voice packs"] += 1
            continue
        base, _, suffix = pack.partition("_")
        lang = _HEDGEWARS_LANG.get(suffix, "ru" if base == "Russian" else "en")
        yield SpeechClip(_key(package, root, f), f, f"hedgewars:{base}", lang)


_SPEECH: dict[str, Callable[[str, Path, Counter], Iterator[SpeechClip]]] = {
    "asterisk-": _asterisk, "fillets-ng-data-": _fillets, "festvox-ru": _festvox,
    "tuxpaint-stamps-default": _tuxpaint, "hedgewars-data": _hedgewars}

# package -> (folder, glob, category, group numbered takes such as Farm1..Farm3 together)
_NOISE: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "alsa-utils": (("usr/share/sounds/alsa", "Noise.wav", "effects", False),),
    "oxygen-sounds": (("usr/share/sounds", "**/*", "effects", False),),
    "asterisk-moh-opsound-wav": (("usr/share/asterisk/moh", "*", "music", False),),
    "lincity-ng-data": (("usr/share/games/lincity-ng/sounds", "*", "ambience", True),
                        ("usr/share/games/lincity-ng/music", "**/*", "music", False)),
    "tuxpaint-data": (("usr/share/tuxpaint/sounds", "*", "effects", False),),
    "fillets-ng-data": (("usr/share/games/fillets-ng/music", "*", "music", False),
                        ("usr/share/games/fillets-ng/sound/share", "*", "effects", True)),
    "hedgewars-data": (("usr/share/games/hedgewars/Data/Music", "*", "music", False),
                       ("usr/share/games/hedgewars/Data/Sounds", "*", "effects", False)),
    "colobot-common-sounds": (("usr/share/games/colobot/music", "*", "music", False),
                              ("usr/share/games/colobot/sounds", "*", "effects", False)),
}


def debian_speech(roots: dict[str, Path]) -> tuple[list[SpeechClip], Counter]:
    """The speech clips of the unpacked packages ``{package: tree root}`` (packages without speech are
    ignored), sorted by key, and the count of files left out by rule, by reason."""
    clips, excluded = [], Counter()
    for package, root in roots.items():
        parser = next((p for prefix, p in _SPEECH.items() if package.startswith(prefix)), None)
        if parser is not None and package in {p for ps in SPEECH_PACKAGES.values() for p in ps}:
            clips.extend(parser(package, Path(root), excluded))
    return sorted(clips, key=lambda c: c.key), excluded


def debian_noise(roots: dict[str, Path]) -> tuple[list[NoiseFile], Counter]:
    """The noise files of the unpacked packages ``{package: tree root}``, sorted by key, without the files
    of :data:`NOISE_WITH_SPEECH`; and the count of files left out, by reason."""
    files, excluded = [], Counter()
    for package, root in roots.items():
        root = Path(root)
        for folder, pattern, category, numbered in _NOISE.get(package, ()):
            for f in _files(root, folder, pattern):
                key = _key(package, root, f)
                if key in NOISE_WITH_SPEECH:
                    excluded["noise files with speech (silero-vad screen)"] += 1
                    continue
                stem = re.sub(r"[_-]?\d+$", "", f.stem) if numbered else f.stem
                files.append(NoiseFile(key, f, category, f"{package}:{folder}/{stem}"))
    return sorted(files, key=lambda n: n.key), excluded


def vctk_speech(root: str | os.PathLike[str]) -> tuple[list[SpeechClip], Counter]:
    """VCTK (:func:`softwidth_studies.data.loaders.load_vctk`, mic1) as speech clips; speakers ``vctk:p225``."""
    from .loaders import load_vctk

    records = load_vctk(root)
    clips = [SpeechClip(f"vctk:{r.speaker}/{r.path.name}", r.path, f"vctk:{r.speaker}", "en") for r in records]
    return clips, Counter(records.skipped)


def esc50_noise(root: str | os.PathLike[str]) -> tuple[list[NoiseFile], Counter]:
    """ESC-50 (:func:`softwidth_studies.data.loaders.load_esc50`) as noise: the category is the ESC-50 class and the
    clips cut from one freesound recording form a group (they must not straddle splits). All 50 classes are
    kept, as in the paper's mixture (laughing and crying_baby are vocal but not speech)."""
    from .loaders import load_esc50

    records = load_esc50(root)
    files = [NoiseFile(f"esc50:{r.path.name}", r.path, r.category, f"esc50:{r.src_file or r.path.stem}")
             for r in records]
    return files, Counter(records.skipped)


def _digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _records(spec, what: str, corpus: str, load: Callable, record: type, debian: str, from_debian: Callable
             ) -> tuple[list, Counter, str]:
    """``(records, {reason: left out}, description)`` of one source: Debian (``spec`` None), ``CORPUS:PATH``
    read by ``load``, or a list of ``record`` instances."""
    if spec is None:
        return (*from_debian(), debian)
    if isinstance(spec, str):
        kind, _, path = spec.partition(":")
        if kind.lower() != corpus or not path:
            raise SoftWidthError(f"VAD corpus: {what} must be '{corpus}:PATH' or a list of {record.__name__}, "
                                 f"got {spec!r}")
        return (*load(path), spec)
    records = list(spec)
    if not all(isinstance(r, record) for r in records):
        raise SoftWidthError(f"VAD corpus: a {what} list must hold softwidth_studies.data.vad_sources.{record.__name__} "
                             "records")
    return records, Counter(), f"custom:{len(records)} {what} records:{_digest([r.key for r in records])}"


def resolve_sources(speech, noise, package_set: str, cache_dir=None) -> tuple[list, list, Counter, dict]:
    """The speech clips and noise files of a build, the files left out by rule, and a description of them.

    Args:
        speech: None (the Debian packages of ``package_set``), ``"vctk:PATH"`` or a list of :class:`SpeechClip`.
        noise: None (the Debian packages of ``package_set``), ``"esc50:PATH"`` or a list of :class:`NoiseFile`.
        package_set: a key of :data:`SPEECH_PACKAGES` (``tiny``, ``small``, ``full``).
        cache_dir: where packages are unpacked (:func:`softwidth_studies.data.packages.fetch_package`).

    Returns:
        ``(clips sorted by key, noise files sorted by key, {reason: files left out}, {"speech": description,
        "noise": description, "packages": {package: .deb file}})``.
    """
    excluded: Counter = Counter()
    info: dict = {}
    wanted = (list(SPEECH_PACKAGES.get(package_set, ())) if speech is None else []) + (
        list(NOISE_PACKAGES.get(package_set, ())) if noise is None else [])
    if (speech is None or noise is None) and package_set not in SPEECH_PACKAGES:
        raise SoftWidthError(f"VAD corpus: package_set must be one of {sorted(SPEECH_PACKAGES)}, "
                             f"got {package_set!r}")
    roots = {}
    if wanted:
        from .packages import fetch_package

        roots = {p: fetch_package(p, cache_dir) for p in dict.fromkeys(wanted)}
        info["packages"] = {p: (read_json(r.parent / ".done", {}) or {}).get("deb", "") for p, r in roots.items()}
    debian = f"debian:{package_set}"
    clips, ex, info["speech"] = _records(speech, "speech", "vctk", vctk_speech, SpeechClip, debian, lambda: (
        debian_speech({p: roots[p] for p in SPEECH_PACKAGES[package_set]})))
    excluded.update(ex)
    files, ex, info["noise"] = _records(noise, "noise", "esc50", esc50_noise, NoiseFile, debian, lambda: (
        debian_noise({p: roots[p] for p in NOISE_PACKAGES[package_set]})))
    excluded.update(ex)
    return sorted(clips, key=lambda c: c.key), sorted(files, key=lambda f: f.key), excluded, info



def assign_groups(weights: dict[str, float], shares: dict[str, float], rng: np.random.Generator) -> dict[str, str]:
    """Give each group one role so that the roles' total weights follow ``shares``.

    Args:
        weights: ``{group: weight}`` (e.g. the number of clips of a voice); positive.
        shares: ``{role: share}`` in priority order: when there are fewer groups than roles, the first roles
            get one each.
        rng: breaks ties between groups of equal weight.

    Returns:
        ``{group: role}``; every role gets at least one group when there are at least as many groups as roles.
    """
    roles = list(shares)
    names = [sorted(weights)[i] for i in rng.permutation(len(weights))]
    names.sort(key=lambda g: -weights[g])  # stable: groups of equal weight keep the shuffled order
    total = float(sum(weights.values()))
    load = dict.fromkeys(roles, 0.0)
    out: dict[str, str] = {}
    for i, g in enumerate(names):
        empty = [r for r in roles if r not in out.values()]
        pool = empty if len(names) - i <= len(empty) else roles  # the last groups fill the empty roles
        role = max(pool, key=lambda r: (shares[r] * total - load[r], -roles.index(r)))
        out[g] = role
        load[role] += weights[g]
    return out


def screen_with_silero(files: Sequence[NoiseFile]) -> dict[str, float]:
    """``{key: seconds of speech}`` for the noise files in which silero-vad (default settings) finds speech:
    at least 1 s, or 20 % of the file, or 0.5 s making up 10 % of it. This made :data:`NOISE_WITH_SPEECH`;
    needs ``pip install silero-vad``. Unreadable files are ignored (the builder skips them anyway)."""
    from .audio import AudioError, read_audio
    from .vad_report import silero_segments
    from .vad_signal import SAMPLE_RATE

    flagged = {}
    for f in files:
        try:
            x = read_audio(f.path, SAMPLE_RATE)
        except AudioError:
            continue
        seconds = sum(b - a for a, b in silero_segments(x)) / SAMPLE_RATE
        share = seconds * SAMPLE_RATE / len(x)
        if seconds >= 1.0 or share >= 0.2 or (seconds >= 0.5 and share >= 0.1):
            flagged[f.key] = round(seconds, 2)
    return flagged
