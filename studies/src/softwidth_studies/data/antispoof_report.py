"""What an anti-spoofing corpus build writes besides the audio: ``metadata.csv``, ``summary.json`` and
``summary.md``, and the no-shortcut check :func:`shortcut_eer` that reads a finished build."""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from softwidth.errors import SoftWidthError
from .antispoof_channel import (
    STAT_NAMES,
    clip_statistics,
    equal_error_rate,
    logistic_regression,
)
from .cache import write_atomic, write_json
from .tts import SAMPLE_RATE, SPLITS, SpoofSystem

__all__ = ["COLUMNS", "shortcut_eer", "write_reports"]


def shortcut_eer(out_dir: str | os.PathLike[str]) -> dict:
    """Fit a logistic regression on :func:`clip_statistics` of the train clips of a built corpus; report
    its EER on val and test (all features, and each feature alone). EER >= 0.4 means the channel gives
    a detector next to nothing."""
    root = Path(out_dir)
    rows = _read_metadata(root)
    stats = {r["id"]: clip_statistics(sf.read(root / r["path"], dtype="float64")[0]) for r in rows}
    out: dict = {"features": list(STAT_NAMES), "classifier": "logistic regression (L2 0.01, standardised)"}
    data = {}
    for split in SPLITS:
        chosen = [r for r in rows if r["split"] == split]
        data[split] = (np.array([[stats[r["id"]][k] for k in STAT_NAMES] for r in chosen]).reshape(-1, len(STAT_NAMES)),
                       np.array([r["label"] == "spoof" for r in chosen], dtype=float))
        out[f"n_{split}"] = len(chosen)
    x_train, y_train = data["train"]
    if len(x_train) < 4 or y_train.min() == y_train.max():
        return {**out, "eer_test": None, "note": "too few train clips of both classes"}

    def fit_eval(columns: list[int]) -> dict[str, float]:
        mean, std = x_train[:, columns].mean(0), x_train[:, columns].std(0)
        usable = std > 1e-9  # duration is constant: a feature that never varies carries nothing
        if not usable.any():
            return {split: 0.5 for split in SPLITS}
        scale = lambda x: (x[:, columns][:, usable] - mean[usable]) / std[usable]
        w = logistic_regression(scale(x_train), y_train)
        return {split: equal_error_rate(scale(data[split][0]) @ w[:-1], data[split][1]) if len(data[split][0])
                else float("nan") for split in SPLITS}

    every = fit_eval(list(range(len(STAT_NAMES))))
    out.update({f"eer_{split}": _rounded(every[split], 4) for split in SPLITS})
    out["eer_test_by_feature"] = {k: _rounded(fit_eval([i])["test"], 4) for i, k in enumerate(STAT_NAMES)}
    out["class_means"] = {label: {k: _rounded(np.mean([stats[r["id"]][k] for r in rows if r["label"] == label]
                                                      or [math.nan]), 3) for k in STAT_NAMES}
                          for label in ("bonafide", "spoof")}
    return out


def _rounded(value: float, digits: int) -> float | None:
    """``value`` rounded, or None where it is undefined (JSON has no NaN)."""
    return None if not math.isfinite(float(value)) else round(float(value), digits)


COLUMNS = ("id", "path", "split", "label", "system", "family", "speaker", "voice", "language", "source", "unseen",
           "source_bandwidth_hz", "cutoff_hz", "codec", "snr_db", "level_dbfs", "utterances")


def _read_metadata(root: Path) -> list[dict[str, str]]:
    path = root / "metadata.csv"
    if not path.is_file():
        raise SoftWidthError(f"{root} holds no metadata.csv: build it with build_antispoof_corpus({str(root)!r})")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_metadata(root: Path, records: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({**{k: r[k] for k in COLUMNS if k != "utterances"}, "utterances": ";".join(r["utterances"])})
    write_atomic(root / "metadata.csv", buffer.getvalue())


def write_reports(root: Path, records: list[dict], failed: list[dict], systems: Sequence[SpoofSystem],
                  excluded: Counter, settings: dict) -> dict:
    """Write ``metadata.csv`` (``records``: the finished clips, in order), then run :func:`shortcut_eer` and
    write ``summary.json`` and ``summary.md``; return the summary. ``failed`` are the clips that could not be
    made, ``excluded`` the source files left out by rule, ``settings`` the build's size, seed, format and
    clip_seconds. Every value is deterministic, so a rerun rewrites the same bytes."""
    _write_metadata(root, records)
    summary = _summary(records, failed, systems, settings, shortcut_eer(root), excluded)
    write_json(root / "summary.json", summary)
    write_atomic(root / "summary.md", _markdown(summary))
    return summary


def _summary(records: list[dict], failed: list[dict], systems: Sequence[SpoofSystem], settings: dict,
             shortcut: dict, excluded: Counter) -> dict:
    hours = lambda rs: round(len(rs) * settings["clip_seconds"] / 3600, 4)
    split_rows = {s: [r for r in records if r["split"] == s] for s in SPLITS}
    count = lambda rs, key: dict(sorted(Counter(r[key] for r in rs).items()))
    skipped = sorted({tuple(s) for r in records + failed for s in r["skipped"]})
    return {
        "corpus": "antispoof", **settings, "sample_rate": SAMPLE_RATE, "clips": len(records),
        "hours": {"total": hours(records),
                                                                      **{s: hours(rs) for s, rs in split_rows.items()}},
        "counts": {s: count(rs, "label") for s, rs in split_rows.items()},
        "systems": {s.name: {"family": s.family, "kind": s.kind, "source": s.source, "unseen": s.unseen,
                             "voices": {k: list(v) for k, v in s.voices.items()},
                             "clips": {sp: sum(r["system"] == s.name for r in rs) for sp, rs in split_rows.items()}}
                    for s in systems},
        "unseen_systems": sorted(s.name for s in systems if s.unseen),
        "speakers": {s: {"bonafide": sorted({r["speaker"] for r in rs if r["label"] == "bonafide"}),
                         "spoof": sorted({r["speaker"] for r in rs if r["label"] == "spoof"})}
                     for s, rs in split_rows.items()},
        "languages": {s: {lab: count([r for r in rs if r["label"] == lab], "language") for lab in ("bonafide", "spoof")}
                      for s, rs in split_rows.items()},
        "channel": {s: {lab: {"narrowband_share": round(float(np.mean([r["codec"] == "gsm" for r in sel])), 3),
                              "median_cutoff_hz": float(np.median([r["cutoff_hz"] for r in sel])),
                              "snr_db_histogram": {f"{lo}-{lo + 5}": sum(lo <= r["snr_db"] < lo + 5 for r in sel)
                                                   for lo in range(25, 45, 5)}}
                        for lab in ("bonafide", "spoof")
                        if (sel := [r for r in rs if r["label"] == lab])} for s, rs in split_rows.items()},
        "skipped_files": {"count": len(skipped), "by_reason": dict(Counter(reason for _, reason in skipped)),
                          "files": [{"source": src, "reason": reason} for src, reason in skipped]},
        "failed_clips": [{"id": r["id"], "reason": r["reason"]} for r in failed],
        "excluded_by_rule": dict(sorted(excluded.items())),
        "shortcut": shortcut,
    }


def _markdown(summary: dict) -> str:
    lines = [f"# Anti-spoofing corpus ({summary['size']}, seed {summary['seed']})", "",
             (f"{summary['clips']} clips of {summary['clip_seconds']} s at {summary['sample_rate']} Hz, "
             f"{summary['hours']['total']:.2f} h. Unseen (test-only) systems: "
             f"{', '.join(summary['unseen_systems'])}."), "",
             "| split | bona fide | spoof | hours | bona fide speakers | languages (bona fide / spoof) |",
             "|---|---|---|---|---|---|"]
    for s in SPLITS:
        c, lang = summary["counts"][s], summary["languages"][s]
        fmt = lambda d: " ".join(f"{k}:{v}" for k, v in d.items())
        lines.append(f"| {s} | {c.get('bonafide', 0)} | {c.get('spoof', 0)} | {summary['hours'][s]:.3f} | "
                     f"{', '.join(summary['speakers'][s]['bonafide'])} | "
                     f"{fmt(lang['bonafide'])} / {fmt(lang['spoof'])} |")
    lines += ["", "| system | family | train | val | test | voices |", "|---|---|---|---|---|---|"]
    for name, info in summary["systems"].items():
        voices = "; ".join(f"{k}: {' '.join(v)}" for k, v in info["voices"].items())
        lines.append(f"| {name}{' (unseen)' if info['unseen'] else ''} | {info['family']} | "
                     + " | ".join(str(info["clips"][s]) for s in SPLITS) + f" | {voices} |")
    sc = summary["shortcut"]
    lines += ["", "## No-shortcut check", "",
              (f"{sc['classifier']} on {', '.join(sc['features'])}, fitted on {sc.get('n_train')} train clips: "
              f"EER on test {sc.get('eer_test')} ({sc.get('n_test')} clips), on val {sc.get('eer_val')} "
              f"(chance is 0.5; the corpus aims at >= 0.4)."), "",
              "Per feature (test EER): " + ", ".join(f"{k} {v}" for k, v in sc.get("eer_test_by_feature", {}).items()),
              "", "## Skipped", "", f"{summary['skipped_files']['count']} source files or texts skipped: "
              + (", ".join(f"{k} ({v})" for k, v in summary["skipped_files"]["by_reason"].items()) or "none")
              + f"; {len(summary['failed_clips'])} clips could not be made. Left out by rule: "
              + (", ".join(f"{k} ({v})" for k, v in summary["excluded_by_rule"].items()) or "none") + ".", ""]
    return "\n".join(lines)
