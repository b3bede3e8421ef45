"""Tests of softwidth.trace: the per-step width trace of fit, its CSV, its plot and the `softwidth trace` command."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import BudgetController, CostPenalty, FitConfig, Schedule, SoftWidthError, Width
from softwidth_studies.cli import main
from softwidth.layers import Linear
from softwidth.trace import plot_trace, read_trace

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def _model():
    torch.manual_seed(0)
    a, b = Width(48, name="a"), Width(48, name="b")
    model = nn.Sequential(Linear(nn.Linear(8, 48), out_width=a), nn.ReLU(),
                          Linear(nn.Linear(48, 48), in_width=a, out_width=b), nn.ReLU(),
                          Linear(nn.Linear(48, 1), in_width=b))
    sw.profile(model, torch.zeros(1, 8), seconds=0.01)
    return model


def _data():
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(10):
        x = torch.randn(32, 8, generator=g)
        out.append((x, x[:, :1] - torch.tanh(2 * x[:, 1:2])))
    return out


def _mse(model, batch):
    return nn.functional.mse_loss(model(batch[0]), batch[1])


SCHEDULE = Schedule(warmup=0.1, anneal_start=0.5, freeze=0.8)


def test_fit_traces_every_width_learning_step_and_lands_on_the_budget(tmp_path):
    model = _model()
    controller = BudgetController(model, target=0.3)
    result = sw.fit(model, _data(), loss_fn=_mse, cost_term=controller, out_dir=tmp_path / "run", tensorboard=False,
                    config=FitConfig(epochs=6, lr=1e-2, schedule=SCHEDULE, progress=False, trace=True))
    rows = result.trace
    total = 6 * len(_data())
    steps = [r["step"] for r in rows]
    assert steps == list(range(round(0.1 * total), round(0.8 * total)))  # every step while widths learn
    assert {"width:a", "task_grad:a", "cost_grad:b", "cost", "cost_to_target", "multiplier"} <= set(rows[0])
    assert rows[0]["cost_to_target"] == pytest.approx(1 / 0.3, rel=1e-6)  # full size at the first learning step
    ratios = [r["cost_to_target"] for r in rows]
    first = next(i for i, r in enumerate(ratios) if r <= 1.0 + 1e-9)
    assert all(0.9 <= r <= 1.1 for r in ratios[first:])  # after the first crossing it stays near the target
    assert 0.97 <= ratios[-1] <= 1.0 + 1e-6  # right before enforcement
    assert all(r["cost_grad:a"] > 0 for r in rows)  # a feature more always costs more
    on_disk = read_trace(tmp_path / "run")
    assert len(on_disk) == len(rows) and on_disk[-1]["width:b"] == pytest.approx(rows[-1]["width:b"])
    png = plot_trace(tmp_path / "run")
    assert png == tmp_path / "run" / "trace.png" and png.stat().st_size > 1000


def test_fixed_penalty_trace_splits_task_and_cost_gradients():
    """With a CostPenalty the widths' gradient is task + weight * cost gradient: the trace separates them."""
    model = _model()
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):  # the widths' total gradient as fit saw it, before any step
        seen.append({w.label: float(w.value.grad) for w in sw.optim.width_modules(model) if w.value.grad is not None})
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        result = sw.fit(model, _data()[:4], loss_fn=_mse, cost_term=CostPenalty(model, weight=0.5),
                        config=FitConfig(epochs=1, schedule=Schedule(warmup=0.0, anneal_start=1.0, freeze=1.0),
                                         progress=False, trace=True))
    finally:
        torch.optim.Adam.step = original
    for row, total in zip(result.trace, seen):
        for name in ("a", "b"):
            assert row[f"task_grad:{name}"] + 0.5 * row[f"cost_grad:{name}"] == pytest.approx(total[name], rel=1e-5)
        assert row["multiplier"] == 0.5 and row["cost_to_target"] == ""  # the weight; no target


def test_trace_command_and_missing_trace(tmp_path, capsys):
    model = _model()
    sw.fit(model, _data()[:4], loss_fn=_mse, cost_term=BudgetController(model, target=0.5), out_dir=tmp_path,
           tensorboard=False, config=FitConfig(epochs=2, schedule=SCHEDULE, progress=False, trace=True))
    assert main(["trace", str(tmp_path), "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").is_file() and "t.png" in capsys.readouterr().out
    with pytest.raises(SoftWidthError, match="no width trace"):
        read_trace(tmp_path / "elsewhere")
    assert main(["trace", str(tmp_path / "elsewhere")]) == 2
