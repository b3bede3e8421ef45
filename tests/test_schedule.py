"""Tests of softwidth.schedule: the Schedule's phases and temperature, and the WidthScheduler applying them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import BudgetController, CostPenalty, Schedule, SoftWidthError, Width
from softwidth.layers import Linear
from softwidth.objective import model_cost
from softwidth.schedule import WidthScheduler

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

# 10 steps: warm-up [0, 2) (ordering 1), learning with ordering 0.5 [2, 5), annealing [5, 8), frozen [8, 10]
SCHEDULE = Schedule(warmup=0.2, anneal_start=0.5, freeze=0.8, temperature_start=2.0, temperature_end=0.05,
                    ordering=0.5)


def _model(init=(13.4, 9.6), mix="ramp"):
    a, b = Width(32, init=init[0], mix=mix), Width(24, init=init[1], mix=mix)
    model = nn.Sequential(
        Linear(nn.Linear(8, 32), out_width=a), nn.ReLU(),
        Linear(nn.Linear(32, 24), in_width=a, out_width=b), nn.ReLU(),
        Linear(nn.Linear(24, 1), in_width=b),
    )
    sw.profile(model, torch.zeros(1, 8), seconds=0.01)
    return model, (a, b)


# -- Schedule ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"warmup": 0.7, "anneal_start": 0.6},
    {"anneal_start": 0.9, "freeze": 0.85},
    {"warmup": -0.1},
    {"freeze": 1.2},
    {"warmup": float("nan")},
])
def test_fractions_must_be_ordered(options):
    with pytest.raises(SoftWidthError, match="need 0 <= warmup <= anneal_start <= freeze <= 1"):
        Schedule(**options)


@pytest.mark.parametrize("options", [
    {"temperature_end": 0.0},
    {"temperature_end": -1.0},
    {"temperature_end": 3.0},  # above temperature_start = 2
    {"temperature_start": float("inf")},
    {"temperature_start": float("nan")},
    {"temperature_end": float("nan")},
])
def test_temperatures_must_be_positive_and_decreasing(options):
    with pytest.raises(SoftWidthError, match="need 0 < temperature_end <= temperature_start < inf"):
        Schedule(**options)


@pytest.mark.parametrize("ordering", [-0.01, 1.01, float("nan")])
def test_ordering_is_a_probability(ordering):
    with pytest.raises(SoftWidthError, match="ordering must be in \\[0, 1\\]"):
        Schedule(ordering=ordering)


def test_edge_values_are_accepted():
    Schedule(warmup=0.0, anneal_start=0.0, freeze=0.0, ordering=0.0)
    Schedule(warmup=1.0, anneal_start=1.0, freeze=1.0, ordering=1.0, temperature_start=1.0, temperature_end=1.0)


def test_schedule_is_frozen():
    with pytest.raises(AttributeError):
        SCHEDULE.warmup = 0.0  # type: ignore[misc]


def test_temperature_is_start_then_geometric_then_end():
    s = SCHEDULE
    for p in (0.0, 0.1, 0.3, 0.49, 0.5):
        assert s.temperature(p) == pytest.approx(2.0)
    for p in (0.8, 0.9, 1.0):
        assert s.temperature(p) == pytest.approx(0.05)
    assert s.temperature(0.65) == pytest.approx(math.sqrt(2.0 * 0.05))  # geometric midpoint
    grid = [0.5 + 0.3 * i / 30 for i in range(31)]
    logs = [math.log(s.temperature(p)) for p in grid]
    steps = [b - a for a, b in zip(logs, logs[1:])]
    assert all(d < 0 for d in steps)  # strictly decreasing
    assert steps == pytest.approx([math.log(0.05 / 2.0) / 30] * 30)  # equal ratios: geometric


def test_literal_schedule():
    s = Schedule.literal()
    assert s.ordering == 0.0 and s.warmup == 0.0 and s.freeze == 1.0 and s.anneal_start == 1.0
    assert s.temperature(0.0) == s.temperature(1.0)
    model, (a, b) = _model()
    scheduler = WidthScheduler(model, s, total_steps=4)
    for _ in range(6):
        assert scheduler.widths_learning and a.value.requires_grad and a.ordering == 0.0
        scheduler.step()
    assert not scheduler.frozen
    assert float(a.value) == pytest.approx(13.4)  # never rounded


# -- WidthScheduler -----------------------------------------------------------------------------------

@pytest.mark.parametrize("total_steps", [0, -3, 2.5, "10", None])
def test_total_steps_validation(total_steps):
    model, _ = _model()
    with pytest.raises(SoftWidthError, match="total_steps must be an int >= 1"):
        WidthScheduler(model, SCHEDULE, total_steps=total_steps)


def test_phases():
    model, (a, b) = _model(init=(13.4, 9.6))
    paper = Width(4, mix="paper", init=2.5, temperature=0.7)  # the ramp temperature does not apply to it
    model.append(nn.Identity())
    model[-1].extra = paper
    scheduler = WidthScheduler(model, SCHEDULE, total_steps=10)
    seen = []
    for step in range(13):
        assert scheduler.steps == step
        p = min(1.0, step / 10)
        req = [w.value.requires_grad for w in (a, b, paper)]
        if p < 0.2:  # warm-up: widths held, every forward a random prefix (ordering 1)
            assert req == [False] * 3 and not scheduler.widths_learning
            assert a.ordering == b.ordering == paper.ordering == 1.0
        elif p < 0.5:  # learning with ordering pressure
            assert req == [True] * 3 and scheduler.widths_learning
            assert a.ordering == 0.5
            assert float(a.temperature) == pytest.approx(2.0)
        elif p < 0.8:  # annealing: ordering off, temperature between start and end
            assert req == [True] * 3 and a.ordering == b.ordering == paper.ordering == 0.0
            assert float(a.temperature) == pytest.approx(SCHEDULE.temperature(p))
            assert not scheduler.frozen and not a.frozen
        else:  # frozen: integers, no gradient, hard-ish ramp
            assert scheduler.frozen and not scheduler.widths_learning and a.frozen and b.frozen
            assert req == [False] * 3 and a.ordering == 0.0
            assert (float(a.value), float(b.value), float(paper.value)) == (13.0, 10.0, 3.0)  # round half up
            assert float(a.temperature) == float(b.temperature) == pytest.approx(0.05)
        assert float(paper.temperature) == pytest.approx(0.7)
        seen.append(float(a.temperature))
        if step == 6:  # a width moved by the optimizer during learning is what gets rounded
            with torch.no_grad():
                a.value.fill_(12.5)
        scheduler.step()
    assert seen[5:9] == sorted(seen[5:9], reverse=True)


def test_frozen_widths_stay_put():
    model, (a, b) = _model(init=(13.4, 9.6))
    scheduler = WidthScheduler(model, SCHEDULE, total_steps=10)
    for _ in range(8):
        scheduler.step()
    assert scheduler.frozen and (float(a.value), float(b.value)) == (13.0, 10.0)
    assert a.frozen and b.frozen
    opt = torch.optim.Adam(model.parameters(), lr=0.5)
    for _ in range(5):  # training goes on: the weights move, the widths do not
        model.train()
        model(torch.randn(16, 8)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        scheduler.step()
    assert (float(a.value), float(b.value)) == (13.0, 10.0) and not a.value.requires_grad and a.value.grad is None
    assert float(a.temperature) == pytest.approx(0.05)


def test_freeze_with_a_budget_controller_enforces_the_target():
    model, (a, b) = _model(init=(32.0, 24.0))
    controller = BudgetController(model, target=0.4)
    calls = []
    enforce = controller.enforce
    controller.enforce = lambda: calls.append(1) or enforce()
    scheduler = WidthScheduler(model, SCHEDULE, total_steps=10, controller=controller)
    for _ in range(7):
        scheduler.step()
    assert calls == [] and float(model_cost(model)) > controller.target  # still the full model
    for _ in range(5):
        scheduler.step()
    assert calls == [1]
    cost = float(model_cost(model))
    assert cost <= controller.target and cost >= 0.9 * controller.target
    assert float(a.value) == int(a.value) and float(b.value) == int(b.value)
    assert not a.value.requires_grad


def test_freeze_with_a_cost_penalty_rounds():
    model, (a, b) = _model(init=(13.4, 9.5))
    scheduler = WidthScheduler(model, SCHEDULE, total_steps=10, controller=CostPenalty(model, weight=1.0))
    for _ in range(8):
        scheduler.step()
    assert (float(a.value), float(b.value)) == (13.0, 10.0)


def test_state_dict_round_trip():
    model, (a, b) = _model()
    scheduler = WidthScheduler(model, SCHEDULE, total_steps=10)
    for _ in range(6):
        scheduler.step()
    other_model, (c, d) = _model()
    other_model.load_state_dict(model.state_dict())
    other = WidthScheduler(other_model, SCHEDULE, total_steps=10)
    assert other.steps == 0 and c.ordering == 1.0 and not c.value.requires_grad
    other.load_state_dict(scheduler.state_dict())
    assert other.steps == 6 and other.progress == scheduler.progress == 0.6 and not other.frozen
    assert c.ordering == a.ordering == 0.0 and c.value.requires_grad
    assert float(c.temperature) == pytest.approx(float(a.temperature))

    for _ in range(3):  # past the freeze, then round trip again: loading does not re-round
        scheduler.step()
    state = scheduler.state_dict()
    assert state["frozen"] and state["steps"] == 9 and state["schedule"]["freeze"] == 0.8
    other_model.load_state_dict(model.state_dict())
    other.load_state_dict(state)
    assert other.frozen and c.frozen and not c.value.requires_grad
    assert float(c.value) == float(a.value) == 13.0 and c.ordering == 0.0
    assert float(c.temperature) == pytest.approx(0.05)


def test_width_lr_factor_decays_while_annealing():
    s = Schedule(warmup=0.1, anneal_start=0.5, freeze=0.9, width_lr_end=0.1)
    values = [s.width_lr_factor(p / 100) for p in range(101)]
    assert values[0] == values[49] == 1.0
    assert values[90] == pytest.approx(0.1) and values[100] == pytest.approx(0.1)
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert Schedule.literal().width_lr_factor(0.7) == 1.0
    with pytest.raises(SoftWidthError, match="width_lr_end"):
        Schedule(width_lr_end=0.0)
