"""scripts/schedule_pilot.py: its committed reports are what the script writes from its committed rows, and the
schedules it compares are each study's with another freeze point."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from softwidth.antispoof.study import AS_SCHEDULE
from softwidth.vad.study import VAD_SCHEDULE

ROOT = Path(__file__).resolve().parents[1]
PILOT = runpy.run_path(str(ROOT / "scripts" / "schedule_pilot.py"))


@pytest.mark.parametrize("study", ["vad", "antispoof"])
def test_committed_report_is_generated_from_the_committed_rows(tmp_path, study):
    committed = ROOT / "results" / f"{study}_pilots"
    if not (committed / "schedule.json").exists():
        pytest.skip(f"no committed {study} pilot")
    assert PILOT["main"]([study, "--rows", str(committed / "schedule.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "schedule.md").read_text() == (committed / "schedule.md").read_text()


def test_report_reads_printed_lines_and_gives_mean_and_spread(tmp_path):
    rows = [{"variant": "freeze 0.05", "freeze": 0.05, "model": "crnn", "kind": "dynamic", "target": 0.5, "seed": s,
             "sizes": {"conv1": 9, "bands": 20}, "val_eer": e, "seconds": 1.0} for s, e in ((0, 10.0), (1, 12.0))]
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert PILOT["read_rows"](lines) == rows
    PILOT["report"]("vad", rows, tmp_path / "out")
    text = (tmp_path / "out" / "schedule.md").read_text()
    assert "| crnn | freeze 0.05 | 11.00 ± 1.41 | 10.00, 12.00 | 9/20; 9/20 |" in text


@pytest.mark.parametrize("study, own", [("vad", VAD_SCHEDULE), ("antispoof", AS_SCHEDULE)])
@pytest.mark.parametrize("freeze", [0.3, 0.1, 0.05])
def test_pilot_schedules_differ_from_the_study_only_in_when_widths_freeze(study, own, freeze):
    s = PILOT["schedule"](study, freeze)
    assert s.freeze == freeze and 0 < s.anneal_start < s.freeze
    assert (s.warmup, s.ordering, s.temperature_start, s.temperature_end) == (
        own.warmup, own.ordering, own.temperature_start, own.temperature_end)
    if freeze == own.freeze:
        assert s == own
