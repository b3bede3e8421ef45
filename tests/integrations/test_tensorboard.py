"""fit's TensorBoard logging: on by default when tensorboard is installed and out_dir is given, every CSV column
as a scalar per epoch; off with tensorboard=False; a path of its own; never a hard dependency."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError
from softwidth.layers import Linear

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Converting a tensor with requires_grad")


def _fit(out_dir, **options):
    torch.manual_seed(0)
    a = sw.Width(8, name="hidden")
    model = nn.Sequential(Linear(nn.Linear(4, 8), out_width=a), nn.ReLU(), Linear(nn.Linear(8, 1), in_width=a))
    sw.profile(model, torch.zeros(1, 4), seconds=0.01)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(2)]
    return sw.fit(model, data, loss_fn=lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), out_dir=out_dir,
                  cost_term=sw.CostPenalty(model, weight=0.1), config=sw.FitConfig(epochs=3, progress=False), **options)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_csv_column_is_a_scalar_per_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    _fit(tmp_path)
    scalars = _scalars(tmp_path / "tensorboard")
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(scalars) == set(rows[0]) - {"epoch"}  # train_task, cost, flops, width:hidden
    for tag, points in scalars.items():
        assert [step for step, _ in points] == [1, 2, 3]
        assert [v for _, v in points] == pytest.approx([float(r[tag]) for r in rows], rel=1e-6)


def test_off_or_elsewhere(tmp_path):
    pytest.importorskip("tensorboard")
    _fit(tmp_path / "off", tensorboard=False)
    assert not (tmp_path / "off" / "tensorboard").exists() and (tmp_path / "off" / "log.csv").exists()
    _fit(None, tensorboard=tmp_path / "board")  # no out_dir: only the events
    assert "width:hidden" in _scalars(tmp_path / "board")
    with pytest.raises(SoftWidthError, match="needs out_dir"):
        _fit(None, tensorboard=True)


def test_not_installed_is_not_an_error_unless_asked_for(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    _fit(tmp_path / "auto")
    assert not (tmp_path / "auto" / "tensorboard").exists()
    with pytest.raises(SoftWidthError, match="pip install tensorboard"):
        _fit(tmp_path / "asked", tensorboard=tmp_path / "board")
