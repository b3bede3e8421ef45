"""The offline VAD corpus: 8 s canvases of real speech over real or procedural noise, labelled every 10 ms.

``build_vad_corpus(out_dir, size="tiny")`` writes::

    out_dir/{train,val,test}/<id>.wav          16 kHz mono 16-bit PCM, exactly 8 s
    out_dir/{train,val,test}/<id>.labels.npy   uint8 (800,): 1 where the 10 ms frame holds speech
    out_dir/{train,val,test}/metadata.csv      id, speakers, languages, n_clips, speech_files (per clip, ";"),
                                               noise_type ("none" if clean), noise_file, snr_db (or "clean"),
                                               speech_frames, speech_ratio
    out_dir/summary.json, out_dir/summary.md   hours, voices, languages, SNR histogram, frames per class,
                                               held-out noise types, files left out and skipped, with reasons

Canvas: 0-3 speech clips (probabilities :data:`CLIP_COUNT_P`) of voices of the split, each trimmed to its
labelled speech +- 0.2 s, cropped to fit, faded in and out over 10 ms, brought to an active speech level of
-26 dBFS +- 6 dB and placed at 10 ms boundaries with random gaps (Dirichlet shares of the free time).
A fifth of the canvases stay clean; the others get one noise at an SNR uniform in [-5, 20] dB, where SNR is
the speech power over the speech frames divided by the noise power over the whole canvas (for a canvas
without speech the nominal clip level stands in for the speech power). Half the noisy canvases draw a real
noise category and half a procedural type (white, pink, brown, hum, clicks, babble of 4-7 talkers); in the test
split half the noisy canvases draw from the noise types unseen in training.
A mix that would clip is scaled down as a whole (the SNR stays).

Labels come from each clean clip alone, by clip energy against the clip's own noise floor, with a 100 ms
hangover (:func:`softwidth_studies.data.vad_signal.frame_labels`, constants in ``LABEL_RULE``); on clean canvases
they agree with silero-vad on >= 90 % of frames (:func:`label_agreement_with_silero`).

Splits (:mod:`softwidth_studies.data.vad_sources`): voices go to train, val, test or babble (babble noise is made only
from voices never heard as target speech), noise files (and babble clips) to train, val or test, so no voice
and no noise file is in two splits. The test split also has noise types never seen in training: the
procedural ``clicks`` and the real category ``ambience`` (or, for other noise sources, a tenth of the
categories drawn from the seed).

Determinism and resuming: item ``k`` of a split draws everything from its own generator seeded by
``(seed, split, k)``, so it does not depend on other items. Each item writes its wav, then its labels (both
atomically), then its record ``out_dir/.items/<id>.json``: an item is complete iff its record exists, a rerun
skips complete items and redoes the others, and the CSVs and summaries are rewritten from the records at the
end. A build interrupted at any point and rerun gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from softwidth.errors import SoftWidthError
from .audio import AudioError, read_audio, write_wav
from .cache import atomic_path, read_json, remove_stale_temps, write_atomic, write_json
from .vad_report import (
    label_agreement_with_silero,
    markdown,
    silero_segments,
    summarise,
)
from .vad_signal import (
    FRAME,
    LABEL_RULE,
    PROCEDURAL,
    SAMPLE_RATE,
    active_power,
    fade,
    frame_labels,
    mix_at_snr,
    procedural_noise,
)
from .vad_sources import NoiseFile, SpeechClip, assign_groups, resolve_sources

__all__ = ["SIZES", "VadCorpusSize", "build_vad_corpus", "describe_vad_corpus", "label_agreement_with_silero",
           "silero_segments"]

CANVAS_FRAMES = 800  # 8 s of 10 ms frames
SPLITS = ("train", "val", "test")
TRIM_FRAMES = 20  # silence kept around a clip's labelled speech
CLIP_COUNT_P = (0.1, 0.3, 0.3, 0.3)  # P(0, 1, 2, 3 clips on a canvas)
P_CLEAN = 0.2
P_HELD_OUT = 0.5  # share of the noisy test canvases with a noise type unseen in training
SNR_RANGE_DB = (-5.0, 20.0)
SPEECH_LEVEL_DBFS, LEVEL_JITTER_DB = -26.0, 6.0
HELD_OUT_PROCEDURAL, HELD_OUT_REAL = "clicks", "ambience"
VOICE_SHARES = {"train": 0.6, "test": 0.2, "val": 0.1, "babble": 0.1}  # priority order when voices are few
NOISE_SHARES = {"train": 0.7, "test": 0.2, "val": 0.1}
_COLUMNS = ("id", "speakers", "languages", "n_clips", "speech_files", "noise_type", "noise_file", "snr_db",
            "speech_frames", "speech_ratio")


@dataclass(frozen=True)
class VadCorpusSize:
    """How much to build: canvases per split, the package set (``sources``: a key of
    :data:`~softwidth_studies.data.vad_sources.SPEECH_PACKAGES`) and the most clips used per voice (None: all)."""

    name: str
    train: int
    val: int
    test: int
    sources: str = "tiny"
    clips_per_speaker: int | None = None


SIZES = {"tiny": VadCorpusSize("tiny", 24, 6, 12, "tiny", 40),  # 5.6 min
         "small": VadCorpusSize("small", 105, 15, 30, "small", 300),  # 20 min
         "full": VadCorpusSize("full", 1350, 150, 300, "full", None)}  # 3 h + 20 min + 40 min


# --- sources and plan -------------------------------------------------------------------------------------

def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator for one purpose (``keys``), independent of every other draw of the build."""
    return np.random.default_rng(np.random.SeedSequence([seed, *(zlib.crc32(k.encode()) for k in keys)]))


@functools.lru_cache(maxsize=512)
def _read_speech(path: str) -> np.ndarray:
    x = read_audio(path, SAMPLE_RATE, max_seconds=600.0)
    x.setflags(write=False)  # shared by the cache
    return x


@functools.lru_cache(maxsize=6)  # long music files: keep a few decoded
def _read_noise(path: str) -> np.ndarray:
    x = read_audio(path, SAMPLE_RATE, max_seconds=900.0)
    x.setflags(write=False)
    return x


@dataclass(frozen=True)
class _Clip:
    """A usable speech clip: its frames ``start`` .. ``start + len(labels)``, their labels, and the active
    speech power (mean square over the speech frames) of that part."""

    source: SpeechClip
    start: int
    labels: np.ndarray = field(repr=False)
    power: float

    def audio(self) -> np.ndarray:
        return _read_speech(str(self.source.path))[self.start * FRAME:(self.start + len(self.labels)) * FRAME]


def _prepare(clip: SpeechClip) -> _Clip:
    """Label a clip and trim it to its speech +- TRIM_FRAMES; AudioError if unreadable or without speech."""
    x = _read_speech(str(clip.path))
    labels = frame_labels(x)
    idx = np.flatnonzero(labels)
    if len(idx) == 0:
        raise AudioError(clip.path, "no speech above the clip's noise floor")
    a, b = max(0, int(idx[0]) - TRIM_FRAMES), min(len(labels), int(idx[-1]) + 1 + TRIM_FRAMES)
    return _Clip(clip, a, labels[a:b], active_power(x[a * FRAME: b * FRAME], labels[a:b]))


def _check_noise(f: NoiseFile) -> None:
    x = read_audio(f.path, SAMPLE_RATE, max_seconds=900.0)  # not cached: the check reads every file once
    if len(x) < 10 * FRAME:
        raise AudioError(f.path, "shorter than 0.1 s")
    if np.sqrt(np.mean(np.square(x, dtype=np.float64))) < 1e-4:
        raise AudioError(f.path, "silent (below -80 dBFS RMS)")


@dataclass
class _Plan:
    """Who and what each split draws from: voices and their clips, babble clips, noise files by type."""

    speakers: dict[str, list[str]]
    clips: dict[str, list[_Clip]]
    babble: dict[str, list[_Clip]]
    noise: dict[str, dict[str, list[NoiseFile]]]
    types: dict[str, list[str]]
    held_out: list[str]
    skipped: list[tuple[str, str]]


def _plan(clips: list[SpeechClip], files: list[NoiseFile], size: VadCorpusSize, seed: int, progress: bool) -> _Plan:
    from tqdm.auto import tqdm

    by_voice: dict[str, list[SpeechClip]] = defaultdict(list)
    for c in clips:
        by_voice[c.speaker].append(c)
    roles = assign_groups({v: float(len(cs)) for v, cs in by_voice.items()}, VOICE_SHARES, _rng(seed, "voices"))
    todo = []
    for v in sorted(by_voice):
        cs, cap = by_voice[v], size.clips_per_speaker
        if cap is not None and len(cs) > cap:
            cs = [cs[i] for i in sorted(_rng(seed, "clips", v).choice(len(cs), cap, replace=False))]
        todo.extend(cs)
    usable: dict[str, list[_Clip]] = defaultdict(list)
    skipped = []
    for c in tqdm(todo, desc="vad: labelling speech clips", unit="clip", disable=not progress, leave=False):
        try:
            usable[c.speaker].append(_prepare(c))
        except AudioError as err:
            skipped.append((c.key, err.reason))
    speakers = {r: sorted(v for v, role in roles.items() if role == r and usable.get(v)) for r in VOICE_SHARES}
    if not all(speakers.values()):
        raise SoftWidthError(f"VAD corpus: needs usable speech of at least 4 voices (train, val, test and babble "
                             f"are voice-disjoint), got {sorted(usable)}; add speech sources")
    pool = [c for v in speakers["babble"] for c in usable[v]]
    babble_roles = assign_groups({c.source.key: 1.0 for c in pool}, NOISE_SHARES, _rng(seed, "babble"))
    babble = {s: [c for c in pool if babble_roles[c.source.key] == s] for s in SPLITS}
    good = []
    for f in tqdm(files, desc="vad: checking noise files", unit="file", disable=not progress, leave=False):
        try:
            _check_noise(f)
            good.append(f)
        except AudioError as err:
            skipped.append((f.key, err.reason))
    categories = sorted({f.category for f in good})
    if HELD_OUT_REAL in categories:
        held = [HELD_OUT_REAL]
    elif len(categories) >= 2:
        n_held = max(1, round(0.1 * len(categories)))
        held = sorted(_rng(seed, "held-out").choice(categories, n_held, replace=False).tolist())
    else:
        held = []
    noise: dict[str, dict[str, list[NoiseFile]]] = {s: {} for s in SPLITS}
    for cat in categories:
        group_sizes = Counter(f.group for f in good if f.category == cat)
        where = (dict.fromkeys(group_sizes, "test") if cat in held else
                 assign_groups({g: float(n) for g, n in group_sizes.items()}, NOISE_SHARES, _rng(seed, "noise", cat)))
        for f in good:
            if f.category == cat:
                noise[where[f.group]].setdefault(cat, []).append(f)
    types = {s: sorted(noise[s]) + [t for t in PROCEDURAL if (t != HELD_OUT_PROCEDURAL or s == "test")
                                    and (t != "babble" or babble[s])] for s in SPLITS}
    held_types = sorted(set(types["test"]) - set(types["train"]))
    return _Plan({s: speakers[s] for s in VOICE_SHARES}, dict(usable), babble, noise, types, held_types, skipped)


# --- one canvas -------------------------------------------------------------------------------------------

def _fill(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` samples of noise ``x``: a random excerpt, or repeats with random 0-0.5 s gaps if ``x`` is short."""
    if len(x) >= n:
        a = int(rng.integers(0, len(x) - n + 1))
        return np.array(x[a:a + n], np.float64)
    out, piece = np.zeros(n), fade(x)
    pos = -int(rng.integers(0, len(x)))
    while pos < n:
        lo, hi = max(pos, 0), min(pos + len(x), n)
        out[lo:hi] += piece[lo - pos:hi - pos]
        pos += len(x) + int(rng.integers(0, SAMPLE_RATE // 2))
    return out


def _babble(pool: list[_Clip], n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """4-7 talkers, each a chain of clips at the same active level with 0-0.2 s pauses, summed."""
    out, keys = np.zeros(n), set()
    for _ in range(int(rng.integers(4, 8))):
        pos = -int(rng.integers(0, SAMPLE_RATE))
        while pos < n:
            c = pool[int(rng.integers(len(pool)))]
            x = fade(c.audio()) / np.sqrt(c.power)
            lo, hi = max(pos, 0), min(pos + len(x), n)
            if hi > lo:
                out[lo:hi] += x[lo - pos:hi - pos]
                keys.add(c.source.key)
            pos += len(x) + int(rng.integers(0, 21)) * FRAME
    return out, ";".join(sorted(keys))


def _noise(plan: _Plan, split: str, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """``(noise (samples,), noise file keys, noise type)`` for one canvas."""
    n = CANVAS_FRAMES * FRAME
    if kind == "babble":
        return (*_babble(plan.babble[split], n, rng), kind)
    if kind in PROCEDURAL:
        return procedural_noise(kind, n, rng), "", kind
    files = plan.noise[split][kind]
    for _ in range(10):  # an excerpt may be digital silence (a fade-out): draw another
        f = files[int(rng.integers(len(files)))]
        y = _fill(_read_noise(str(f.path)), n, rng)
        if np.mean(y**2) > 1e-10:
            return y, f.key, kind
    return procedural_noise("white", n, rng), "", "white"


def _render(plan: _Plan, split: str, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Canvas ``k`` of ``split``: ``(audio (128000,) float64, labels (800,) uint8, metadata row)``."""
    rng = _rng(seed, "item", split, str(k))
    n_clips = int(rng.choice(len(CLIP_COUNT_P), p=CLIP_COUNT_P))
    voices = plan.speakers[split]
    chosen = []
    for _ in range(n_clips):
        clips = plan.clips[voices[int(rng.integers(len(voices)))]]
        chosen.append(clips[int(rng.integers(len(clips)))])
    longest = int(0.9 * CANVAS_FRAMES) // max(1, n_clips)
    pieces = []
    for c in chosen:
        x, lab = c.audio(), c.labels
        if len(lab) > longest:  # crop to a random window so that all clips fit
            a = int(rng.integers(0, len(lab) - longest + 1))
            x, lab = x[a * FRAME:(a + longest) * FRAME], lab[a:a + longest]
        level_db = SPEECH_LEVEL_DBFS + rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)
        pieces.append((fade(x) * np.sqrt(10.0 ** (level_db / 10.0) / c.power), lab))
    free = CANVAS_FRAMES - sum(len(lab) for _, lab in pieces)
    gaps = np.floor(rng.dirichlet(np.ones(n_clips + 1)) * free).astype(int)
    speech, labels = np.zeros(CANVAS_FRAMES * FRAME), np.zeros(CANVAS_FRAMES, np.uint8)
    pos = int(gaps[0])
    for (x, lab), gap in zip(pieces, gaps[1:]):
        speech[pos * FRAME:pos * FRAME + len(x)] = x
        labels[pos:pos + len(lab)] = lab
        pos += len(lab) + int(gap)
    kind, noise_file, snr = "none", "", "clean"
    mix = speech
    if rng.random() >= P_CLEAN:
        seen = [t for t in plan.types[split] if t not in plan.held_out]
        if plan.held_out and split == "test" and (not seen or rng.random() < P_HELD_OUT):
            seen = plan.held_out  # half of the noisy test canvases have a noise type unseen in training
        real, proc = [t for t in seen if t not in PROCEDURAL], [t for t in seen if t in PROCEDURAL]
        family = real if real and (not proc or rng.random() < 0.5) else proc
        noise, noise_file, kind = _noise(plan, split, family[int(rng.integers(len(family)))], rng)
        snr_db = float(rng.uniform(*SNR_RANGE_DB))
        power = active_power(speech, labels)
        if power == 0.0:  # no speech: the noise level follows a nominal clip level
            power = 10.0 ** ((SPEECH_LEVEL_DBFS + rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)) / 10.0)
        mix, _ = mix_at_snr(speech, noise, snr_db, speech_power=power)
        snr = f"{snr_db:.2f}"
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:  # scale the whole mix: the SNR and the labels stay
        mix = mix * (0.99 / peak)
    row = {"id": f"{split}-{k:05d}", "speakers": ";".join(c.source.speaker for c in chosen),
           "languages": ";".join(c.source.language for c in chosen), "n_clips": n_clips,
           "speech_files": ";".join(c.source.key for c in chosen), "noise_type": kind, "noise_file": noise_file,
           "snr_db": snr, "speech_frames": int(labels.sum()), "speech_ratio": f"{labels.mean():.4f}"}
    return mix, labels, row


# --- build ------------------------------------------------------------------------------------------------

def _write_item(out: Path, split: str, audio: np.ndarray, labels: np.ndarray, row: dict) -> None:
    """wav, then labels, then the record: the record's existence marks the item complete."""
    write_wav(out / split / f"{row['id']}.wav", audio, SAMPLE_RATE)
    with atomic_path(out / split / f"{row['id']}.labels.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, labels)
    write_json(out / ".items" / f"{row['id']}.json", row)


def _done(out: Path, split: str, item_id: str) -> dict | None:
    row = read_json(out / ".items" / f"{item_id}.json")
    files = (out / split / f"{item_id}.wav", out / split / f"{item_id}.labels.npy")
    return row if row is not None and all(f.is_file() for f in files) else None


def _size(size: str | VadCorpusSize) -> VadCorpusSize:
    if isinstance(size, VadCorpusSize):
        spec = size
    elif isinstance(size, str) and size in SIZES:
        spec = SIZES[size]
    else:
        raise SoftWidthError(f"VAD corpus: size must be one of {sorted(SIZES)} or a VadCorpusSize, got {size!r}")
    counts = (spec.train, spec.val, spec.test)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts) or sum(counts) == 0:
        raise SoftWidthError(f"VAD corpus: canvas counts must be non-negative ints, not all 0, got {counts}")
    return spec


def _summary_readable(out: Path) -> bool:
    try:
        return read_json(out / "summary.json") is not None
    except SoftWidthError:  # a damaged summary is rewritten by a full pass
        return False


def build_vad_corpus(out_dir: str | os.PathLike[str], *, size: str | VadCorpusSize = "tiny", seed: int = 0,
                     speech: str | Sequence[SpeechClip] | None = None, noise: str | Sequence[NoiseFile] | None = None,
                     progress: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build (or finish building) the VAD corpus in ``out_dir``; return ``out_dir``. A finished build of the same
    settings (every item and the summary written) returns at once, without labelling the speech again.

    Args:
        out_dir: the corpus folder (created); layout in the module docstring.
        size: ``"tiny"`` (42 canvases, 5.6 min), ``"small"`` (150, 20 min), ``"full"`` (1800: 3 h train,
            20 min val, 40 min test) or a :class:`VadCorpusSize`.
        seed: a non-negative int; the same seed and sources give the same bytes.
        speech: None (Debian packages of the size), ``"vctk:PATH"``, or a list of
            :class:`~softwidth_studies.data.vad_sources.SpeechClip`.
        noise: None (Debian packages of the size), ``"esc50:PATH"``, or a list of
            :class:`~softwidth_studies.data.vad_sources.NoiseFile`. Procedural noises are always added.
        progress: show tqdm progress bars.
        cache_dir: where Debian packages are unpacked (default :func:`~softwidth_studies.data.cache.default_cache_dir`).

    Raises:
        SoftWidthError: bad arguments, too few voices, ``out_dir`` holding a build of other settings, or a
            package that cannot be fetched. Unreadable source files are skipped and listed in the summary.
    """
    from tqdm.auto import tqdm

    spec = _size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SoftWidthError(f"VAD corpus: seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    out = Path(out_dir)
    clips, files, excluded, info = resolve_sources(speech, noise, spec.sources, cache_dir)
    config = {"format": 1, "seed": seed, "size": asdict(spec), "speech": info["speech"], "noise": info["noise"]}
    old = read_json(out / ".items" / "config.json")
    if old is not None and old != config:
        raise SoftWidthError(f"VAD corpus: {out} holds a build with other settings ({old}); build into another "
                             f"folder or delete it")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    write_json(out / ".items" / "config.json", config)
    items = [(s, k) for s in SPLITS for k in range(getattr(spec, s))]
    rows: dict[str, dict] = {}
    for s, k in items:
        row = _done(out, s, f"{s}-{k:05d}")
        if row is not None:
            rows[row["id"]] = row
    if len(rows) == len(items) and _summary_readable(out):
        return out  # a finished build of these settings (the summary is written last): nothing to redo
    plan = _plan(clips, files, spec, seed, progress)
    with tqdm(total=len(items), initial=len(rows), desc=f"vad {spec.name}", unit="canvas",
              disable=not progress) as bar:
        for s, k in items:
            if f"{s}-{k:05d}" not in rows:
                audio, labels, row = _render(plan, s, k, seed)
                _write_item(out, s, audio, labels, row)
                rows[row["id"]] = row
                bar.update()
    by_split = {s: [rows[f"{s}-{k:05d}"] for k in range(getattr(spec, s))] for s in SPLITS}
    for s in SPLITS:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(by_split[s])
        write_atomic(out / s / "metadata.csv", text.getvalue())
    details = {
        "corpus": "vad", "size": asdict(spec), "seed": seed, "sample_rate_hz": SAMPLE_RATE, "canvas_seconds": 8.0,
        "frame_ms": 10, "labels": LABEL_RULE, "sources": info, "voices": plan.speakers,
        "mixing": {"clip_count_p": list(CLIP_COUNT_P), "p_clean": P_CLEAN, "snr_range_db": list(SNR_RANGE_DB),
                   "speech_level_dbfs": SPEECH_LEVEL_DBFS, "level_jitter_db": LEVEL_JITTER_DB},
        "noise_types": plan.types, "held_out_noise_types": plan.held_out,
        "excluded": dict(sorted(excluded.items())),
        "skipped": {"count": len(plan.skipped), "by_reason": dict(sorted(Counter(r for _, r in plan.skipped).items())),
                    "files": [{"file": k, "reason": r} for k, r in sorted(plan.skipped)]},
    }
    summary = summarise(by_split, details, CANVAS_FRAMES)
    write_json(out / "summary.json", summary)
    write_atomic(out / "summary.md", markdown(summary))
    return out


def describe_vad_corpus(corpus_dir: str | os.PathLike[str]) -> dict:
    """A portable description of the finished build in ``corpus_dir``, for records that leave the machine (a
    shipped model's ``model.json``): what was built and how, never where.

    Returns ``{"corpus": "vad", "size": {name, train, val, test, sources, clips_per_speaker}, "seed": int,
    "speech": str, "noise": str, "packages": {package: .deb file}, "canvases": {split: int}, "hours": float}``,
    read from ``summary.json``; a source given as ``KIND:PATH`` (``vctk:/data/VCTK-Corpus``) keeps only ``KIND``.

    Raises:
        SoftWidthError: ``corpus_dir`` holds no finished VAD corpus build (no readable ``summary.json``).
    """
    path = Path(corpus_dir)
    summary = read_json(path / "summary.json")
    if not isinstance(summary, dict) or summary.get("corpus") != "vad":
        raise SoftWidthError(f"{path} holds no finished VAD corpus (summary.json missing or not a VAD corpus's); "
                             f"build one with `softwidth data build vad --size SIZE --out {path}`")
    try:
        sources = summary["sources"]
        canvases = {s: int(summary["splits"][s]["canvases"]) for s in SPLITS}
        return {"corpus": "vad", "size": summary["size"], "seed": summary["seed"],
                "speech": _portable(sources["speech"]), "noise": _portable(sources["noise"]),
                "packages": sources.get("packages", {}), "canvases": canvases,
                "hours": round(sum(canvases.values()) * summary["canvas_seconds"] / 3600, 4)}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SoftWidthError(f"{path / 'summary.json'} is not a finished build's summary ({type(err).__name__}: "
                             f"{err}); delete it and rerun the `softwidth data build vad` that made {path} (the "
                             f"canvases are kept) to rewrite it") from None


def _portable(source: str) -> str:
    """``vctk:/data/VCTK-Corpus`` -> ``vctk``: a source's kind without the building machine's path."""
    kind, sep, rest = source.partition(":")
    return kind if sep and ("/" in rest or "\\" in rest or os.path.isabs(rest)) else source
