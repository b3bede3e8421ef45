"""The known-answer allocation task: its sizing helpers, and a reduced run that must find the answer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from softwidth_studies.cli import main as cli_main
from softwidth_studies.experiments.allocation import (
    AllocationConfig, budget_surface, collect, in_box, make_data, relative_cost, run_allocation, summary, target,
    uniform_baseline, uniform_sizes)

CONFIG = AllocationConfig()
# reduced: half the data, 16 epochs (landed in the box for seeds 0-3 and both inits, about 6 s a run on one core)
SMALL = replace(CONFIG, train_size=4000, val_size=500, test_size=1000, epochs=16, seeds=(0,), sweep_a=(4, 6))


def test_costs_are_relative_and_a_feature_of_a_costs_four_of_b():
    m = CONFIG.max_width
    assert relative_cost(CONFIG, (m, m)) == pytest.approx(1.0)
    step_a = relative_cost(CONFIG, (5, 12)) - relative_cost(CONFIG, (4, 12))
    step_b = relative_cost(CONFIG, (4, 13)) - relative_cost(CONFIG, (4, 12))
    assert step_a == pytest.approx(4 * step_b)
    assert target(CONFIG) == pytest.approx(CONFIG.slack * relative_cost(CONFIG, CONFIG.d_star))


def test_uniform_sizes_are_the_largest_common_size_in_budget_and_outside_the_box():
    uniform = uniform_sizes(CONFIG)
    n = uniform["sizes"][0]
    assert uniform["sizes"] == [n, n]
    assert relative_cost(CONFIG, (n, n)) <= target(CONFIG) < relative_cost(CONFIG, (n + 1, n + 1))
    real = uniform["scale"] * CONFIG.max_width
    assert relative_cost(CONFIG, (real, real)) == pytest.approx(target(CONFIG), rel=1e-6)
    assert not all(in_box(uniform["sizes"], CONFIG.d_star))


def test_budget_surface_holds_the_largest_b_that_fits_and_keeps_d_star():
    points = budget_surface(CONFIG)
    assert [a for a, _ in points] == list(CONFIG.sweep_a)
    for a, b in points:
        assert relative_cost(CONFIG, (a, b)) <= target(CONFIG)
        assert b == CONFIG.max_width or relative_cost(CONFIG, (a, b + 1)) > target(CONFIG)
    # the allocations that keep at least d*_A and d*_B on the surface are all inside the box
    keeping = [p for p in points if p[0] >= CONFIG.d_star[0] and p[1] >= CONFIG.d_star[1]]
    assert keeping and all(all(in_box(p, CONFIG.d_star)) for p in keeping)


def test_in_box_edges():
    assert in_box((4, 12), (4, 12)) == [True, True]
    assert in_box((6, 18), (4, 12)) == [True, True]
    assert in_box((3, 19), (4, 12)) == [False, False]
    assert in_box((6.5, 11.9), (4, 12)) == [False, False]


def test_data_is_deterministic_and_standardised():
    small = replace(CONFIG, train_size=2000)
    x, y = make_data(small, "train")
    assert x.shape == (2000, sum(CONFIG.d_in)) and y.shape == (2000, CONFIG.d_out)
    assert torch.equal(y, make_data(small, "train")[1])
    assert 0.8 < float(y.std()) < 1.2
    assert not torch.equal(make_data(small, "val")[0][:10], make_data(small, "test")[0][:10])


@pytest.fixture(scope="module")
def runs():
    return [run_allocation(0, init, SMALL) for init in ("max", "min")] + [uniform_baseline(0, SMALL)]


@pytest.mark.parametrize("index", [0, 1], ids=["init-max", "init-min"])
def test_reduced_run_lands_in_the_box_at_the_budget(runs, index):
    run = runs[index]
    rounded = [run["rounded"][n] for n in ("A", "B")]
    assert all(in_box(rounded, SMALL.d_star)), run
    assert 0.95 <= run["cost_to_target"] <= 1.0 + 1e-9, run
    assert run["test_loss"] < runs[2]["test_loss"], (run, runs[2])


def test_uniform_baseline_is_outside_the_box_and_in_budget(runs):
    uniform = runs[2]
    assert uniform["kind"] == "uniform" and not all(in_box(uniform["sizes"], SMALL.d_star))
    assert uniform["cost_to_target"] <= 1.0


def test_summary_reports_every_run_beside_the_uniform_shrink(runs):
    text = summary(collect(runs, SMALL))
    assert text.count("| 0 | max |") == 1 and text.count("| 0 | min |") == 1
    assert "Every width in its box: yes." in text and f"{runs[2]['test_loss']:.4f}" in text


def test_committed_summary_regenerates_through_the_cli(tmp_path, capsys):
    committed = Path(__file__).resolve().parents[2] / "results" / "allocation"
    (tmp_path / "results.json").write_text((committed / "results.json").read_text())
    assert cli_main(["allocation", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").read_text() == (committed / "summary.md").read_text()
    assert "uniform" in capsys.readouterr().out
