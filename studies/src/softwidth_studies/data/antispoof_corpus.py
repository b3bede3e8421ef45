"""The offline anti-spoofing corpus: real recordings (bona fide) against ten TTS and resynthesis systems.

``build_antispoof_corpus(out_dir, size="tiny")`` writes ``out_dir/{train,val,test}/<id>.wav`` (16 kHz, 16-bit,
exactly :data:`CLIP_SECONDS` long), ``metadata.csv`` (one row per clip: id, path, split, label, system,
family, speaker, voice, language, source, unseen, channel settings and the source utterances) and
``summary.json`` / ``summary.md`` (hours, speakers and voices, languages, per-class and per-system counts,
skipped files with reasons, the shortcut check).

Design, against the pitfalls of data-sources.md:

* Bona fide speech (:mod:`~softwidth_studies.data.antispoof_sources`): festvox-ru, fillets-ng cs/nl, tuxpaint stamp
  descriptions and Asterisk prompts, every speaker in exactly one split.
* Spoofs (:mod:`softwidth_studies.data.tts`): TTS reads the transcripts of the same split's bona fide recordings,
  in their language (espeak-ng, festival ru) or their English version (flite, festival en: fillets and
  tuxpaint carry English text); resynthesis systems re-render the same split's bona fide audio. Five
  systems appear only in ``test`` (unseen attacks).
* Languages: English-only systems would make English a spoof cue; where a split has English bona fide
  (train: Allison) its share of bona fide clips equals the English share of spoof clips and the
  multilingual systems take the other languages. Val/test have no English bona fide speaker left, so their
  English clips are all spoofs (reported in the summary).
* Channel: every clip, of both classes, is assembled the same way (utterances trimmed of leading and
  trailing silence, inner pauses cut to 0.25 s, joined with 0.1-0.3 s gaps, a random 4 s crop) and then
  goes through :func:`~softwidth_studies.data.antispoof_channel.neutralise`: a noise floor at 25-45 dB SNR, a
  random band (high-pass 50-150 Hz, low-pass at ``cutoff_hz``), a codec round trip (GSM 06.10 at 8 kHz
  below a 4 kHz cutoff, Ogg Vorbis otherwise) and a random level (-32 to -22 dBFS RMS). Bona fide cutoffs
  are drawn (half narrowband 3.3-3.9 kHz, half 4-7.6 kHz) and capped at the recording's own bandwidth;
  spoof clips draw theirs from the bona fide cutoffs of their split, so the band-limit distribution is the
  same for both classes although many recordings are band-limited and TTS output is full-band.

:func:`shortcut_eer` fits a logistic regression on duration, level, silence ratio and bandwidth statistics
of the train clips and reports its equal error rate on test (near 50 % means no channel shortcut). Seed 0
gives 0.53 on tiny (60 test clips) and 0.455 on small (400 test clips; a gradient-boosted tree ensemble on
the same statistics scores 0.44).

Builds are deterministic from ``seed``, resumable and atomic per clip: each clip is rendered from its own
RNG, written atomically, then recorded in ``out_dir/.items/<id>.json``; a rerun skips recorded clips, so a
killed build rerun gives byte-identical files.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softwidth.errors import SoftWidthError
from .antispoof_channel import (
    bandwidth_hz,
    draw_channel,
    neutralise,
    trim,
)
from .antispoof_report import shortcut_eer, write_reports
from .antispoof_sources import PACKAGES, SourceGroup, load_groups
from .audio import AudioError, audio_info, read_audio, write_wav
from .cache import (
    default_cache_dir,
    read_json,
    remove_stale_temps,
    write_json,
)
from .tts import (
    SAMPLE_RATE,
    SPLITS,
    SpoofSystem,
    default_systems,
    fetch_all,
    fetch_toolbox,
)

__all__ = ["CLIP_SECONDS", "SIZES", "build_antispoof_corpus", "shortcut_eer"]

CLIP_SECONDS = 4.0
SIZES = {"tiny": {"train": 6, "val": 2, "test": 3}, "small": {"train": 40, "val": 10, "test": 20},
         "full": {"train": 180, "val": 40, "test": 60}}  # clips per spoof system per split (bona fide: as many)
_FORMAT = 1  # bump when the rendering changes: a build dir of another format is refused


# -- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    """One clip to render: ``system`` is ``"bonafide"`` or a spoof system's name; the content comes from
    ``stream`` (``audio``, ``text`` or ``text_en``) of ``group``, read from position ``start`` on."""

    id: str
    split: str
    system: str
    group: str
    voice: str
    stream: str
    start: int


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _apportion(n: int, weights: dict[str, float], rng: np.random.Generator) -> list[str]:
    """``n`` keys in shuffled order, each key about ``n * weight / sum`` times (largest remainder)."""
    keys = sorted(k for k, w in weights.items() if w > 0)
    if not keys or n <= 0:
        return []
    total = sum(weights[k] for k in keys)
    exact = [n * weights[k] / total for k in keys]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(keys)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    out = [k for k, c in zip(keys, counts) for _ in range(c)]
    return [out[i] for i in rng.permutation(len(out))]


def _pool(group: SourceGroup, stream: str) -> list[int]:
    """Indices of the group's utterances that can feed ``stream``."""
    attr = {"audio": "path", "text": "text", "text_en": "text_en"}[stream]
    return [i for i, u in enumerate(group.utterances) if getattr(u, attr) is not None]


def _stride(group: SourceGroup, stream: str, order: list[int]) -> int:
    """How many utterances one clip is expected to use, from the first few in ``order``: consecutive clips
    start this far apart, so they rarely share an utterance."""
    seconds = []
    for i in order[:8]:
        u = group.utterances[i]
        if stream == "audio":
            try:
                seconds.append(audio_info(u.path).duration * 0.8)  # trimming removes about a fifth
            except AudioError:
                continue
        else:
            seconds.append(len(u.text if stream == "text" else u.text_en) / 14)  # about 14 characters/s
    mean = float(np.mean(seconds)) if seconds else 1.0
    return max(1, math.ceil((CLIP_SECONDS + 0.5) / max(mean, 0.2)))


def _english_only(system: SpoofSystem | None) -> bool:
    return system is not None and system.languages == frozenset({"en"})


def _eligible(system: SpoofSystem | None, groups: list[SourceGroup], english_only: bool) -> dict[str, float]:
    """Group weights for bona fide clips (``system`` None) or one spoof system in one split."""
    if _english_only(system):
        return {g.name: 1.0 for g in groups if _pool(g, "text_en")}
    weights = {}
    for g in groups:
        if english_only and g.language == "en":
            continue  # English is reserved for bona fide: the English-only systems supply the spoofs
        if system is None or system.kind == "resynthesis" or (g.language in system.languages and _pool(g, "text")):
            weights[g.name] = 1.0
    return weights


def _plan(groups: Sequence[SourceGroup], systems: Sequence[SpoofSystem], size: str, seed: int
         ) -> tuple[list[_Item], dict[str, tuple[list[int], int]]]:
    """All clips of a build, and per ``group/stream`` the utterance order and stride the clips read."""
    items, orders, cursors = [], {}, Counter()
    for split in SPLITS:
        members = [g for g in groups if g.split == split and g.utterances]
        present = [s for s in systems if split in s.voices]
        per_system = SIZES[size][split]
        english = [s for s in present if _english_only(s)]
        has_en = any(g.language == "en" for g in members)
        bona = _eligible(None, members, False)
        if english and has_en:  # English bona fide share = English share of the spoofs
            share = len(english) / len(present)
            n_en = sum(g.language == "en" for g in members if g.name in bona)
            n_other = len(bona) - n_en
            bona = {k: share / n_en if _by_name(members, k).language == "en" else (1 - share) / max(n_other, 1)
                    for k in bona}
        jobs = [(None, len(present) * per_system, bona)]
        jobs += [(s, per_system, _eligible(s, members, bool(english) and has_en)) for s in present]
        for system, count, weights in jobs:
            name = system.name if system else "bonafide"
            stream = ("audio" if system is None or system.kind == "resynthesis" else
                      "text_en" if _english_only(system) else "text")
            for j, group_name in enumerate(_apportion(count, weights, _rng(seed, split, name))):
                group = _by_name(members, group_name)
                key = f"{group.name}/{stream}"
                if key not in orders:
                    pool = _pool(group, stream)
                    order = [pool[i] for i in _rng(seed, key).permutation(len(pool))]
                    orders[key] = (order, _stride(group, stream, order))
                voices = system.voices[split] if system else ("",)
                items.append(_Item(f"{split}_{name}_{j:05d}", split, name, group.name, voices[j % len(voices)],
                                   stream, cursors[key] * orders[key][1]))
                cursors[key] += 1
    return items, orders


def _by_name(groups: Sequence[SourceGroup], name: str) -> SourceGroup:
    return next(g for g in groups if g.name == name)


# -- rendering -----------------------------------------------------------------------------------------
@dataclass
class _Context:
    groups: dict[str, SourceGroup]
    systems: dict[str, SpoofSystem]
    orders: dict[str, tuple[list[int], int]]
    seed: int
    cutoffs: dict[str, list[float]]  # split -> cutoffs of its finished bona fide clips (Hz), sorted


def _speech(item: _Item, ctx: _Context, rng: np.random.Generator, work: Path, skipped: list) -> tuple[list, list]:
    """Trimmed utterances (16 kHz) for one clip, enough for a crop, and their ids; bad sources are skipped."""
    group, system = ctx.groups[item.group], ctx.systems.get(item.system)
    order, stride = ctx.orders[f"{group.name}/{item.stream}"]
    pieces, used, total, k = [], [], 0, 0
    need = int((CLIP_SECONDS + 0.25) * SAMPLE_RATE)
    while total < need and k < len(order):
        # Audio is read one file at a time; texts go to the synthesiser in batches (festival starts slowly).
        size = 1 if item.stream == "audio" else stride
        batch = [group.utterances[order[(item.start + i) % len(order)]] for i in range(k, min(k + size, len(order)))]
        k += len(batch)
        if item.stream == "audio":
            audios = []
            for u in batch:
                try:
                    audios.append(read_audio(u.path, SAMPLE_RATE, max_seconds=120))
                except AudioError as err:
                    audios.append(None)
                    skipped.append((u.ident, err.reason))
        else:
            texts = [u.text if item.stream == "text" else u.text_en for u in batch]
            language = group.language if item.stream == "text" else "en"
            tts_dir = Path(tempfile.mkdtemp(dir=work))
            audios = system.run(texts, language, item.voice, rng, tts_dir)
            for u, a in zip(batch, audios):
                if a is None:
                    skipped.append((f"{item.system}:{u.ident}", f"{item.system} failed on this text"))
        for u, a in zip(batch, audios):
            a = trim(a) if a is not None else None
            if a is not None and len(a) >= SAMPLE_RATE // 5:
                pieces.append(a)
                used.append(u.ident)
                total += len(a)
            elif a is not None:
                skipped.append((u.ident, "under 0.2 s of speech after trimming silence"))
    return (pieces, used) if total >= need else ([], used)


def _render(item: _Item, ctx: _Context, work: Path) -> tuple[np.ndarray | None, dict]:
    """One clip and its metadata record (``audio`` None when the clip could not be made)."""
    rng = _rng(ctx.seed, item.id)
    group, system = ctx.groups[item.group], ctx.systems.get(item.system)
    skipped: list = []
    meta = {"id": item.id, "split": item.split, "label": "bonafide" if system is None else "spoof",
            "system": item.system, "family": "bona fide" if system is None else system.family,
            "speaker": group.speaker if system is None or system.kind == "resynthesis" else
            f"{system.source}:{item.voice}", "voice": item.voice,
            "language": "en" if item.stream == "text_en" else group.language,
            "source": group.source if system is None else system.source,
            "unseen": bool(system is not None and system.unseen)}
    pieces, used = _speech(item, ctx, rng, work, skipped)
    meta.update(utterances=used, skipped=sorted(set(skipped)))
    if not pieces:
        return None, {**meta, "status": "failed", "reason": f"not {CLIP_SECONDS} s of usable speech in {group.name}"}
    joined = [pieces[0]]
    for piece in pieces[1:]:
        joined += [np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE), np.float32), piece]
    audio = np.concatenate(joined).astype(np.float32)
    n, pad = int(CLIP_SECONDS * SAMPLE_RATE), SAMPLE_RATE // 10
    offset = int(rng.integers(0, len(audio) - n + 1))
    if system is not None and system.kind == "resynthesis":  # resynthesise the crop and 0.1 s around it
        lo, hi = max(offset - pad, 0), min(offset + n + pad, len(audio))
        audio = np.asarray(system.run(audio[lo:hi], item.voice, rng, work), dtype=np.float32)
        offset -= lo
    audio = np.pad(audio, (0, max(0, offset + n - len(audio))))[offset: offset + n]  # a short vocoder output
    source_bw = bandwidth_hz(audio)
    if system is None:  # half narrowband, half wideband, never above what the recording holds
        draw = rng.uniform(3300, 3900) if rng.random() < 0.5 else rng.uniform(4000, 7600)
        cutoff = min(float(draw), source_bw)
    else:  # the same cutoffs as the bona fide clips of this split (those the source can carry)
        pool = [c for c in ctx.cutoffs.get(item.split, []) if c <= source_bw + 50] or [source_bw]
        cutoff = float(pool[int(rng.integers(len(pool)))])
    channel = draw_channel(rng, max(cutoff, 1000.0))
    audio = neutralise(audio, channel, rng)
    meta.update(status="ok", path=f"{item.split}/{item.id}.wav", source_bandwidth_hz=round(source_bw, 1),
                cutoff_hz=round(channel.cutoff_hz, 1), codec=channel.codec, snr_db=round(channel.snr_db, 2),
                level_dbfs=round(channel.level_dbfs, 2))
    return audio, meta


# -- the build -----------------------------------------------------------------------------------------
def _check(groups: Sequence[SourceGroup], systems: Sequence[SpoofSystem]) -> None:
    if len({g.name for g in groups}) != len(groups) or len({s.name for s in systems}) != len(systems):
        raise SoftWidthError("antispoof sources: group names and system names must be unique")
    splits_of: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        if g.split not in SPLITS:
            raise SoftWidthError(f"antispoof source group {g.name!r}: split {g.split!r} is not one of {SPLITS}")
        splits_of[g.speaker].add(g.split)
    shared = {k: sorted(v) for k, v in splits_of.items() if len(v) > 1}
    if shared:
        raise SoftWidthError(f"antispoof sources: speakers must be disjoint across splits, but {shared} are in "
                             "several; put each speaker's groups in one split")
    for s in systems:
        if s.kind not in ("tts", "resynthesis") or not set(s.voices) <= set(SPLITS) or not all(s.voices.values()):
            raise SoftWidthError(f"spoof system {s.name!r}: kind must be 'tts' or 'resynthesis' and voices a "
                                 f"non-empty tuple per split among {SPLITS}")


def _resolve(sources, systems, cache: Path, progress: bool) -> tuple[list[SourceGroup], list[SpoofSystem], Counter]:
    """The given sources and systems, or the default ones from Debian packages (fetched concurrently), and
    the bona fide files left out by rule."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        tools = pool.submit(fetch_toolbox, cache, progress=progress) if systems is None else None
        roots = pool.submit(fetch_all, PACKAGES, cache, progress=progress, what="speech packages") \
            if sources is None else None
        groups, excluded = (list(sources), Counter()) if sources is not None else load_groups(roots.result())
        return groups, list(systems) if systems is not None else list(default_systems(tools.result())), excluded


def build_antispoof_corpus(out_dir: str | os.PathLike[str], *, size: str = "tiny", seed: int = 0,
                           progress: bool = True, sources: Sequence[SourceGroup] | None = None,
                           systems: Sequence[SpoofSystem] | None = None,
                           cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build (or finish) the anti-spoofing corpus in ``out_dir``; return ``out_dir``.

    Args:
        size: ``"tiny"`` (140 clips, 9 min: a smoke test), ``"small"`` (900 clips, 1 h) or ``"full"``
            (3400 clips, 3.8 h); :data:`SIZES` gives the clips per spoof system and split.
        seed: everything random (which utterances, voices, crops, channels) follows from it.
        progress: show a progress bar.
        sources: bona fide :class:`SourceGroup` list instead of the Debian corpora (tests use fixtures).
        systems: spoof systems instead of :func:`~softwidth_studies.data.tts.default_systems`.
        cache_dir: where Debian packages are unpacked (default :func:`~softwidth_studies.data.cache.default_cache_dir`).

    A rerun with the same arguments skips finished clips and rewrites identical metadata and summary; a
    directory built with other arguments is refused. Raises :class:`SoftWidthError` for bad arguments or
    a package that cannot be fetched (one line that says what to install).
    """
    if size not in SIZES:
        raise SoftWidthError(f"build_antispoof_corpus: size must be one of {sorted(SIZES)}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SoftWidthError(f"build_antispoof_corpus: seed must be an int >= 0, got {seed!r}")
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    groups, systems, excluded = _resolve(sources, systems, cache, progress)
    _check(groups, systems)
    config = {"corpus": "antispoof", "format": _FORMAT, "size": size, "seed": seed,
              "groups": [g.name for g in groups], "systems": [s.name for s in systems]}
    previous = read_json(out / ".build.json")
    if previous is not None and previous != config:
        raise SoftWidthError(f"{out} holds an antispoof build with other settings ({previous['size']}, seed "
                             f"{previous['seed']}); choose another directory or delete it")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ".build.json", config)
    remove_stale_temps(out)
    items, orders = _plan(groups, systems, size, seed)
    ctx = _Context({g.name: g for g in groups}, {s.name: s for s in systems}, orders, seed, {})
    records: dict[str, dict] = {}
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="softwidth-antispoof-") as tmp, \
            tqdm(total=len(items), desc="antispoof clips", unit="clip", disable=not progress) as bar:
        for phase in ("bonafide", "spoof"):
            if phase == "spoof":  # spoof cutoffs are drawn from the finished bona fide clips of their split
                ctx.cutoffs = {s: sorted(r["cutoff_hz"] for r in records.values() if r["split"] == s and
                                         r["status"] == "ok") for s in SPLITS}
            for item in (i for i in items if (i.system == "bonafide") == (phase == "bonafide")):
                sidecar = out / ".items" / f"{item.id}.json"
                meta = read_json(sidecar)
                if meta is None or (meta["status"] == "ok" and not (out / meta["path"]).is_file()):
                    work = Path(tempfile.mkdtemp(dir=tmp))
                    audio, meta = _render(item, ctx, work)
                    shutil.rmtree(work, ignore_errors=True)
                    if audio is not None:
                        write_wav(out / meta["path"], audio, SAMPLE_RATE)
                    write_json(sidecar, meta)  # written last: the clip counts as done only with it
                records[item.id] = meta
                bar.update()
    rank = {s: i for i, s in enumerate(SPLITS)}
    done = sorted((r for r in records.values() if r["status"] == "ok"), key=lambda r: (rank[r["split"]], r["id"]))
    failed = [r for r in records.values() if r["status"] != "ok"]
    write_reports(out, done, failed, systems, excluded,
                  {"size": size, "seed": seed, "format": _FORMAT, "clip_seconds": CLIP_SECONDS})
    return out
