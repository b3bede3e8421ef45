"""What a VAD corpus holds (summary.json / summary.md) and how its labels compare with silero-vad.

:func:`summarise` turns the metadata rows of each split into hours, voices, languages, noise types, an SNR
histogram, frames per class and disjointness checks. :func:`label_agreement_with_silero` runs silero-vad
(``pip install silero-vad``; its weights ship in the wheel) on the clean canvases of a built corpus and
returns the share of 10 ms frames on which it agrees with the corpus labels.
"""

from __future__ import annotations

import csv
import functools
import os
from collections import Counter
from itertools import combinations, pairwise
from pathlib import Path

import numpy as np

from softwidth.errors import SoftWidthError
from .vad_signal import FRAME, SAMPLE_RATE

__all__ = ["label_agreement_with_silero", "markdown", "silero_segments", "summarise"]

_SNR_EDGES = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
ATTRIBUTION = ("Speech: Asterisk prompts recorded by Allison Smith, June Wallack and other voices (Digium, "
               "CC BY-SA 3.0); Italian prompts by Marco Menardi and Paola Dal Zot (http://www.voip.ammdomus.it, "
               "CC BY-SA 3.0, credit to be shown to end users); Fish Fillets NG, festvox-ru, Tux Paint stamps and "
               "Hedgewars voices. Noise: the Debian packages listed under sources. Licences: "
               "/usr/share/doc/<package>/copyright in each package.")


def _snr_bin(snr: str) -> str:
    if snr == "clean":
        return "clean"
    value = float(snr)
    for lo, hi in pairwise(_SNR_EDGES):
        if value < hi or hi == _SNR_EDGES[-1]:
            return f"[{lo:g}, {hi:g}{']' if hi == _SNR_EDGES[-1] else ')'}"
    return "clean"  # unreachable: SNRs are drawn inside the edges


def _split_list(text: str) -> list[str]:
    return [t for t in str(text).split(";") if t]


def summarise(by_split: dict[str, list[dict]], details: dict, canvas_frames: int) -> dict:
    """The corpus summary: ``details`` (settings, sources, voices per role, skipped files ...) plus, per split,
    canvases, hours, voices, languages (clips per language), noise types and files, an SNR histogram (5 dB
    bins and ``clean``), frames per class and the speech ratio; and checks that splits share no voice and no
    noise file, and which noise types only the test split has."""
    splits = {}
    for s, rows in by_split.items():
        speech = sum(int(r["speech_frames"]) for r in rows)
        total = canvas_frames * len(rows)
        snr = Counter(_snr_bin(r["snr_db"]) for r in rows)
        splits[s] = {
            "canvases": len(rows),
            "hours": round(total * FRAME / SAMPLE_RATE / 3600, 4),
            "speech_clips": sum(int(r["n_clips"]) for r in rows),
            "voices": sorted({v for r in rows for v in _split_list(r["speakers"])}),
            "languages": dict(sorted(Counter(x for r in rows for x in _split_list(r["languages"])).items())),
            "noise_types": dict(sorted(Counter(r["noise_type"] for r in rows).items())),
            "noise_files": len({f for r in rows for f in _split_list(r["noise_file"])}),
            "snr_histogram": {b: snr.get(b, 0) for b in [_snr_bin(str(x)) for x in _SNR_EDGES[:-1]] + ["clean"]},
            "frames": {"speech": speech, "non_speech": total - speech},
            "speech_ratio": round(speech / total, 4) if total else 0.0,
        }
    voices = {s: set(v["voices"]) for s, v in splits.items()}
    files = {s: {f for r in rows for f in _split_list(r["noise_file"])} for s, rows in by_split.items()}
    babble = set(details.get("voices", {}).get("babble", []))
    types = {s: set(v["noise_types"]) for s, v in splits.items()}
    checks = {
        "voices_disjoint": all(not (voices[a] & voices[b]) for a, b in combinations(voices, 2)),
        "noise_files_disjoint": all(not (files[a] & files[b]) for a, b in combinations(files, 2)),
        "babble_voices_unheard": not (babble & set().union(*voices.values())),
        "test_only_noise_types": sorted(types.get("test", set()) - types.get("train", set()) - {"none"}),
    }
    return {**details, "splits": splits, "checks": checks}


def markdown(summary: dict) -> str:
    """summary.md: the summary as tables."""
    sp = summary["splits"]
    lines = [f"# VAD corpus: size {summary['size']['name']}, seed {summary['seed']}", "",
             "Built by `softwidth_studies.data.vad_corpus.build_vad_corpus`; 8 s canvases at 16 kHz, labels per 10 ms.", "",
             ("| split | canvases | hours | speech clips | voices | languages | speech frames | non-speech frames |"
             " speech ratio |")]
    lines.append("|---" * 9 + "|")
    for s, v in sp.items():
        langs = ", ".join(f"{k} {n}" for k, n in v["languages"].items())
        lines.append(f"| {s} | {v['canvases']} | {v['hours']:.3f} | {v['speech_clips']} | {len(v['voices'])} | "
                     f"{langs} | {v['frames']['speech']} | {v['frames']['non_speech']} | {v['speech_ratio']:.3f} |")
    lines += ["", "## Voices", ""] + [f"- {role}: {', '.join(vs) or '-'}" for role, vs in summary["voices"].items()]
    types = sorted({t for v in sp.values() for t in v["noise_types"]})
    lines += ["", "## Noise types (canvases)", "", "| type | " + " | ".join(sp) + " |",
              "|---|" + "---|" * len(sp)]
    lines += [f"| {t} | " + " | ".join(str(v["noise_types"].get(t, 0)) for v in sp.values()) + " |" for t in types]
    bins = list(next(iter(sp.values()))["snr_histogram"]) if sp else []
    lines += ["", "## SNR histogram (canvases; SNR = active speech power / noise power)", "",
              "| SNR dB | " + " | ".join(sp) + " |", "|---|" + "---|" * len(sp)]
    lines += [f"| {b} | " + " | ".join(str(v["snr_histogram"][b]) for v in sp.values()) + " |" for b in bins]
    c = summary["checks"]
    lines += ["", "## Checks", "", f"- voices disjoint across splits: {c['voices_disjoint']}",
              f"- noise files disjoint across splits: {c['noise_files_disjoint']}",
              f"- babble voices never heard as speech: {c['babble_voices_unheard']}",
              f"- noise types only in test: {', '.join(c['test_only_noise_types']) or 'none'}",
              "", "## Sources", "", f"- speech: {summary['sources']['speech']}",
              f"- noise: {summary['sources']['noise']} (+ procedural)"]
    lines += [f"- package {p}: {deb}" for p, deb in summary["sources"].get("packages", {}).items()]
    lines += ["", "## Left out", ""] + [f"- by rule, {r}: {n}" for r, n in summary["excluded"].items()]
    sk = summary["skipped"]
    lines += [f"- skipped (unreadable or unusable): {sk['count']}"] + [
        f"  - {r}: {n}" for r, n in sk["by_reason"].items()] + [
        f"  - `{f['file']}`: {f['reason']}" for f in sk["files"][:100]]
    lines += ["", "## Labels", "", "Energy rule (softwidth_studies.data.vad_signal.frame_labels): "
              + ", ".join(f"{k} = {v}" for k, v in summary["labels"].items()), "", "## Attribution", "",
              ATTRIBUTION, ""]
    return "\n".join(lines)


# --- silero-vad -------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _silero():
    try:
        import silero_vad
    except ImportError:
        raise SoftWidthError("comparing with silero-vad needs its package: pip install silero-vad") from None
    return silero_vad, silero_vad.load_silero_vad()


def silero_segments(audio: np.ndarray) -> list[tuple[int, int]]:
    """silero-vad's speech segments ``[(start, end), ...]`` (samples) in ``audio`` (samples,) at 16 kHz,
    with its default settings (threshold 0.5, 250 ms min speech, 100 ms min silence, 30 ms padding)."""
    import torch

    module, model = _silero()
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return [(int(t["start"]), int(t["end"])) for t in module.get_speech_timestamps(x, model, sampling_rate=SAMPLE_RATE)]


def segments_to_frames(segments: list[tuple[int, int]], n_frames: int) -> np.ndarray:
    """``(n_frames,)`` uint8: 1 for the 10 ms frames whose centre lies in a segment."""
    centres = np.arange(n_frames) * FRAME + FRAME // 2
    out = np.zeros(n_frames, np.uint8)
    for a, b in segments:
        out[(centres >= a) & (centres < b)] = 1
    return out


def label_agreement_with_silero(out_dir: str | os.PathLike[str]) -> float:
    """Share of 10 ms frames where the labels of a built corpus agree with silero-vad, over its clean
    canvases that hold speech (all splits). Raises :class:`SoftWidthError` if there are none."""
    from .audio import read_audio

    root = Path(out_dir)
    agree = total = 0
    for meta in sorted(root.glob("*/metadata.csv")):
        with open(meta, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["snr_db"] == "clean" and int(r["n_clips"]) > 0]
        for r in rows:
            labels = np.load(meta.parent / f"{r['id']}.labels.npy")
            audio = read_audio(meta.parent / f"{r['id']}.wav", SAMPLE_RATE)
            ref = segments_to_frames(silero_segments(audio), len(labels))
            agree += int(np.sum(ref == labels))
            total += len(labels)
    if total == 0:
        raise SoftWidthError(f"label_agreement_with_silero: no clean canvases with speech under {root}; "
                             "build the corpus first (build_vad_corpus)")
    return agree / total
