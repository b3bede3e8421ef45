"""scripts/schedule_pilot.py: its committed reports are what the script writes from its committed rows, and the
schedules it compares are the studies' own family: widths learning from the start or after a nested-dropout warm-up,
frozen at a given point."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from softwidth_studies.antispoof.study import AS_SCHEDULE
from softwidth.schedule import Schedule
from softwidth_studies.vad.study import VAD_SCHEDULE

ROOT = Path(__file__).resolve().parents[1]
PILOT = runpy.run_path(str(ROOT / "scripts" / "schedule_pilot.py"))


COMMITTED = sorted((ROOT / "results").glob("*_pilots/*.json"))


@pytest.mark.parametrize("stored", [p for p in COMMITTED if "study" in json.loads(p.read_text())],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_report_is_generated_from_the_committed_rows(tmp_path, stored):
    study = json.loads(stored.read_text())["study"]
    args = [study, "--rows", str(stored), "--out", str(tmp_path), "--name", stored.stem]
    assert PILOT["main"](args) == 0
    assert (tmp_path / f"{stored.stem}.md").read_text() == stored.with_suffix(".md").read_text()
    assert json.loads((tmp_path / stored.name).read_text()) == json.loads(stored.read_text())


def test_report_reads_printed_lines_and_gives_mean_and_spread(tmp_path):
    rows = [{"variant": "freeze 0.05", "freeze": 0.05, "model": "crnn", "kind": "dynamic", "target": 0.5, "seed": s,
             "sizes": {"conv1": 9, "bands": 20}, "val_eer": e, "seconds": 1.0} for s, e in ((0, 10.0), (1, 12.0))]
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert PILOT["read_rows"](lines) == rows
    PILOT["report"]("vad", rows, tmp_path / "out")
    text = (tmp_path / "out" / "schedule.md").read_text()
    assert "| crnn | freeze 0.05 | 11.00 ± 1.41 | 10.00, 12.00 | 9/20; 9/20 |" in text


@pytest.mark.parametrize("freeze", [0.3, 0.1, 0.05])
def test_freeze_schedules_learn_from_the_start_and_differ_only_in_the_freeze(freeze):
    s = PILOT["schedule"](freeze)
    assert s.freeze == freeze and s.warmup == 0.0 and 0 < s.anneal_start < s.freeze
    assert (s.ordering, s.temperature_start, s.temperature_end) == (
        VAD_SCHEDULE.ordering, VAD_SCHEDULE.temperature_start, VAD_SCHEDULE.temperature_end)


@pytest.mark.parametrize("freeze", [0.6, 0.8, 1.0])
def test_late_schedules_warm_up_until_a_tenth_before_the_freeze(freeze):
    s = PILOT["schedule"](freeze, late=True)
    assert s.freeze == freeze and s.warmup == pytest.approx(freeze - 0.1, abs=1e-9)
    assert s.warmup < s.anneal_start < s.freeze


def test_the_studies_use_pilot_schedules():
    assert PILOT["schedule"](0.05) == VAD_SCHEDULE == AS_SCHEDULE


def test_late_schedule_needs_room_for_its_warm_up(capsys):
    with pytest.raises(ValueError, match="late schedule"):
        PILOT["schedule"](0.05, late=True)
    with pytest.raises(SystemExit):
        PILOT["main"](["antispoof", "--late", "0.05", "--corpus", "/nonexistent"])
    assert "late schedule" in capsys.readouterr().err


def test_variants_name_each_schedule():
    names = PILOT["variants"]([0.05], [0.8])
    assert list(names) == ["freeze 0.05", "late 0.8"] and names["freeze 0.05"] == AS_SCHEDULE
    assert names["late 0.8"] == Schedule(warmup=0.7, anneal_start=0.75, freeze=0.8, ordering=0.0)
