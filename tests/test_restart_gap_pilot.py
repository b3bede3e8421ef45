"""scripts/restart_gap_pilot.py: its committed report is what the script writes from its committed rows, and its
restart callable gives a dynamic run the starting weights of the from-scratch model of the chosen sizes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import torch

from softwidth import consolidate
from softwidth_studies.vad.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "restart_gap_pilot.py"))
COMMITTED = ROOT / "results" / "vad_pilots" / "restart_gap.json"


def test_committed_report_regenerates_from_its_rows():
    rows = json.loads(COMMITTED.read_text())
    assert {(r["variant"], r["seed"]) for r in rows} == {(v, s) for v in SCRIPT["VARIANTS"] for s in range(5)}
    for seed in range(5):  # the three variants of a seed are at the sizes its dynamic run chose
        assert len({json.dumps(r["sizes"], sort_keys=True) for r in rows if r["seed"] == seed}) == 1
    assert SCRIPT["report"](rows) == COMMITTED.with_suffix(".md").read_text()


def test_same_init_restart_loads_the_from_scratch_draw_of_the_chosen_sizes():
    sizes = {"bands": 12, "conv1": 5, "conv2": 7, "hidden": 6}
    torch.manual_seed(3)
    scratch = consolidate(build_model("crnn", sizes).eval()).state_dict()
    net = consolidate(build_model("crnn", sizes).eval())  # another draw
    SCRIPT["_fresh_init"](3)(net)
    state = net.state_dict()
    assert all(torch.equal(state[k], scratch[k]) for k in scratch)
