"""scripts/uniform_widths.py: the uniform shrink fits its budget as closely as one factor allows, its committed runs
are the ones the script plans today, and the committed report is what the script writes from them."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from softwidth_studies.vad.study import model_cost

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "uniform_widths.py"))
STUDY = json.loads((ROOT / "results" / "vad_pilots" / "uniform_study.json").read_text())
COMMITTED = ROOT / "results" / "vad_pilots" / "uniform.json"
FULL = {"crnn": {"bands": 80, "conv1": 48, "conv2": 48, "hidden": 48},
        "transformer": {"bands": 80, "ff1": 128, "ff2": 128}}


@pytest.mark.parametrize("kind", ["crnn", "transformer"])
def test_uniform_sizes_fit_the_budget_and_one_more_unit_each_would_not(kind):
    full = FULL[kind]
    base = model_cost(kind, full)["flops_per_s"]
    assert SCRIPT["uniform_sizes"](kind, full, base) == full
    previous = None
    for target in (0.5, 0.25, 0.125):
        sizes = SCRIPT["uniform_sizes"](kind, full, target * base)
        flops = model_cost(kind, sizes)["flops_per_s"]
        assert flops <= target * base
        assert all(sizes[name] <= full[name] for name in full)
        if kind == "transformer":
            assert sizes["bands"] % 4 == 0
        # the same shrink one rounding step larger (every width up to the next value the factor can give) is over
        larger = {name: size + (4 if kind == "transformer" and name == "bands" else 1) for name, size in sizes.items()}
        assert model_cost(kind, larger)["flops_per_s"] > target * base
        if previous is not None:
            assert all(sizes[name] <= previous[name] for name in full)  # a smaller budget never grows a width
        previous = sizes
    with pytest.raises(ValueError, match="over the budget"):
        SCRIPT["uniform_sizes"](kind, full, 1.0)


def test_committed_runs_are_the_planned_tasks_and_the_report_regenerates(tmp_path):
    committed = json.loads(COMMITTED.read_text())
    stored = committed["runs"]
    planned = SCRIPT["tasks"](STUDY)
    keys = ("model", "kind", "seed", "target", "of")
    assert [{k: r[k] for k in keys} for r in stored] == [{k: r[k] for k in keys} for r in planned]
    if committed["mel_price"] == SCRIPT["MEL_PRICE"]:  # sizes and FLOP/s are those of today's price
        assert [r["sizes"] for r in stored] == [r["sizes"] for r in planned]
        for r in stored:
            assert r["flops_per_s"] == model_cost(r["model"], r["sizes"])["flops_per_s"]
    else:  # measured at the dense mel price: today's price of the same sizes is lower
        for r in stored:
            now = model_cost(r["model"], r["sizes"])["flops_per_s"]
            assert now < r["flops_per_s"]
    report = SCRIPT["report"](STUDY, stored, committed["mel_price"])
    assert report == COMMITTED.with_suffix(".md").read_text()
    assert ("dense mel bank" in report) == (committed["mel_price"] == "dense")
    out = tmp_path / "out"
    out.mkdir()
    (out / "uniform.json").write_text(COMMITTED.read_text())
    assert SCRIPT["main"](["--report-only", "--out", str(out)]) == 0
    assert (out / "uniform.md").read_text() == COMMITTED.with_suffix(".md").read_text()
