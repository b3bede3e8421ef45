"""Tests of softwidth_studies.sweep: grids, the Pareto front, a 3-point sweep through the local pool and through Ray
Tune (a local Ray instance of 1 CPU) writing the same Pareto CSV, resume, failed points, and the CLI."""

from __future__ import annotations

import csv
import json

import pytest

import softwidth_studies.sweep as sw_sweep
from softwidth import SoftWidthError
from softwidth_studies.cli import main
from softwidth_studies.sweep import COLUMNS, grid, pareto_front, register_case_study, sweep

TINY = {"train_size": 256, "test_size": 128, "epochs": 2, "batch_size": 64}  # ~0.3 s per synthetic point


def _points():
    return grid(weights=(0.3, 3.0), targets=(0.5,), **TINY)


def _csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_grid_combines_terms_floors_and_seeds():
    points = grid(weights=(0.1, 1.0), targets=(0.25,), kappa_min=(None, 0.1), seeds=(0, 1), epochs=3)
    assert len(points) == 3 * 2 * 2
    assert points[0] == {"weight": 0.1, "target": None, "kappa_min": None, "seed": 0, "epochs": 3}
    assert points[2] == {"weight": None, "target": 0.25, "kappa_min": None, "seed": 0, "epochs": 3}
    assert {(p["kappa_min"], p["seed"]) for p in points} == {(None, 0), (None, 1), (0.1, 0), (0.1, 1)}
    for bad, rule in [({}, "at least one weight"), ({"weights": (-1,)}, "weights"), ({"targets": (1.5,)}, "targets"),
                      ({"weights": (1,), "kappa_min": (0,)}, "kappa_min"), ({"weights": (1,), "seeds": ()}, "seeds")]:
        with pytest.raises(SoftWidthError, match=rule):
            grid(**bad)


def test_pareto_front_is_the_set_of_non_dominated_points():
    rows = [{"flops": 1.0, "quality": 0.5}, {"flops": 2.0, "quality": 0.3}, {"flops": 2.0, "quality": 0.4},
            {"flops": 3.0, "quality": 0.3}, {"flops": 0.5, "quality": 0.9}, {"flops": None, "quality": None},
            {"flops": 1.0, "quality": 0.5}]
    assert pareto_front(rows) == [True, True, False, False, True, False, True]  # ties stay on the front


def test_local_and_ray_sweeps_write_the_same_pareto_csv(tmp_path):
    pytest.importorskip("ray.tune")
    import ray

    local = sweep("synthetic", _points(), tmp_path / "local", workers=2, progress=False)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # the sweep joins this instance
    try:
        remote = sweep("synthetic", _points(), tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    for name in ("local", "ray"):
        header, rows = _csv(tmp_path / name / "pareto.csv")
        assert tuple(header) == COLUMNS and len(rows) == 3
        assert (tmp_path / name / "pareto.png").stat().st_size > 1000
        assert len(list((tmp_path / name / "points").glob("*.json"))) == 3
    assert _csv(tmp_path / "local" / "pareto.csv") == _csv(tmp_path / "ray" / "pareto.csv")  # same numbers too
    assert local == remote
    assert all(r["error"] == "" and r["flops"] > 0 for r in local)
    full = 100 * 2 * (32 * 32 + 32 * 64 + 64 * 64 + 64 * 8) + 100 * (64 + 64)  # FLOP/s with every width at max
    assert local[2]["target"] == 0.5 and 0.4 * full < local[2]["flops"] <= 0.5 * full  # the budget point
    assert any(r["pareto"] for r in local)


def test_resume_reuses_finished_points_and_failures_are_recorded(tmp_path):
    calls = []

    def run_point(point, out_dir):
        calls.append(point["weight"])
        if point["weight"] == 2.0:
            raise ValueError("diverged")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "note.txt").write_text("mine")
        return {"flops": 10.0 / (1 + point["weight"]), "params": 1.0, "quality": point["weight"], "extra": [1]}

    register_case_study("toy", run_point)
    points = grid(weights=(0.0, 1.0, 2.0))
    rows = sweep("toy", points, tmp_path, workers=1, progress=False)
    assert calls == [0.0, 1.0, 2.0]
    assert [r["pareto"] for r in rows] == [1, 1, 0]
    assert rows[2]["error"] == "ValueError: diverged" and rows[2]["flops"] is None
    stored = json.loads((tmp_path / "points" / f"{rows[1]['point']}.json").read_text())
    assert stored["result"]["extra"] == [1] and stored["point"]["weight"] == 1.0
    assert (tmp_path / "points" / rows[0]["point"] / "note.txt").read_text() == "mine"  # a folder per point
    again = sweep("toy", points, tmp_path, workers=1, progress=False, resume=True)
    assert calls == [0.0, 1.0, 2.0, 2.0]  # only the failed point ran again
    assert again[:2] == rows[:2]


def test_sweep_arguments_are_checked(tmp_path):
    with pytest.raises(SoftWidthError, match="unknown case study 'nope'"):
        sweep("nope", _points(), tmp_path)
    with pytest.raises(SoftWidthError, match="backend"):
        sweep("synthetic", _points(), tmp_path, backend="slurm")
    with pytest.raises(SoftWidthError, match="workers"):
        sweep("synthetic", _points(), tmp_path, workers=0)
    row = sw_sweep._call(lambda p, d: {"flops": 1.0}, "toy", {}, str(tmp_path), None)
    assert "lacks finite numbers for ['params', 'quality']" in row["error"]
    row = sw_sweep._call(lambda p, d: {"flops": 1.0, "params": 1.0, "quality": 0.1, "x": {1}}, "toy", {}, str(tmp_path), None)
    assert "not JSON-able" in row["error"]
    with pytest.raises(SoftWidthError, match="unknown point keys"):
        sw_sweep._synthetic_point({"weight": 1.0, "speed": 3}, tmp_path)


def test_cli_sweep(tmp_path, capsys):
    code = main(["sweep", "synthetic", "--weights", "0.3", "--targets", "0.5", "--kappa-min", "0.1", "--epochs", "2",
                 "--set", "train_size=256", "--set", "test_size=128", "--workers", "1", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "results written to" in printed and printed.count("\n") >= 4
    header, rows = _csv(tmp_path / "pareto.csv")
    assert tuple(header) == COLUMNS and [r["kappa_min"] for r in rows] == ["0.1", "0.1"]
    assert main(["sweep", "synthetic", "--out", str(tmp_path)]) == 2  # no weight and no target
    assert "at least one weight or one target" in capsys.readouterr().err
