"""Tests of softwidth.objective: the normalised cost penalty, the budget controller and budget enforcement."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import softwidth as sw
from softwidth import BudgetController, CostPenalty, SoftWidthError, Width
from softwidth.layers import Linear
from softwidth.objective import _common_scale, _widths_at, enforce_budget, full_cost, model_cost
from softwidth.optim import width_modules

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

SECONDS = 0.01  # the probe input (1 example, 1 position) holds 10 ms of audio


def _mlp(sizes=(8, 12, 10, 1), *, init=None, **width_options):
    """Linear-only chain ``sizes[0] -> ... -> sizes[-1]``; every hidden size is a width. Profiled."""
    hidden = sizes[1:-1]
    widths = [Width(n, init=None if init is None else init[i], **width_options) for i, n in enumerate(hidden)]
    layers, prev = [], None
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out = widths[i] if i < len(widths) else None
        layers.append(Linear(nn.Linear(n_in, n_out), in_width=prev, out_width=out))
        prev = out
    model = nn.Sequential(*layers)
    sw.profile(model, torch.zeros(1, sizes[0]), seconds=SECONDS)
    return model, widths


def _chain_cost(sizes, kind):
    """Independent closed form for a chain of biased Linear layers at (real) sizes, 1 position per example."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    if kind == "params":
        return sum(i * o + o for i, o in pairs)
    macs = sum(i * o for i, o in pairs)
    return (2 * macs if kind == "flops" else macs) / SECONDS


def _cost(model, kind="flops"):
    return float(model_cost(model, kind).detach())


def _set(widths, values):
    with torch.no_grad():
        for w, v in zip(widths, values):
            w.value.fill_(float(v))


# -- model_cost / full_cost ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flops", "macs", "params"])
def test_model_cost_matches_closed_form_at_real_widths(kind):
    model, (a, b) = _mlp(init=(5.3, 3.7))
    assert _cost(model, kind) == pytest.approx(_chain_cost((8, 5.3, 3.7, 1), kind), rel=1e-6)


@pytest.mark.parametrize("kind", ["flops", "macs", "params"])
def test_full_cost_is_cost_at_max_and_leaves_widths_alone(kind):
    model, widths = _mlp(init=(5.3, 3.7))
    before = [w.value.detach().clone() for w in widths]
    full = full_cost(model, kind)
    assert [torch.equal(w.value.detach(), v) for w, v in zip(widths, before)] == [True, True]
    assert all(w.value.requires_grad for w in widths)
    assert full == pytest.approx(_chain_cost((8, 12, 10, 1), kind), rel=1e-6)
    _set(widths, (12, 10))
    assert full == pytest.approx(_cost(model, kind), rel=1e-7)
    if kind == "params":  # and it is what the stock full-size model has
        assert full == sum(p.numel() for p in sw.consolidate(model).parameters())


def test_widths_at_restores_after_an_error():
    model, (a, b) = _mlp(init=(5.3, 3.7))
    with pytest.raises(RuntimeError, match="boom"):
        with _widths_at(model, {id(a): 12.0}):
            assert float(a.value) == 12.0
            raise RuntimeError("boom")
    assert float(a.value) == pytest.approx(5.3)


# -- CostPenalty -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flops", "macs", "params"])
@pytest.mark.parametrize("weight", [0.0, 0.3, 2.0])
def test_penalty_is_weight_times_normalised_cost(kind, weight):
    model, _ = _mlp(init=(5.3, 3.7))
    term = CostPenalty(model, weight=weight, kind=kind)
    expected = weight * _chain_cost((8, 5.3, 3.7, 1), kind) / _chain_cost((8, 12, 10, 1), kind)
    assert float(term.penalty()) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert float(term.normalised_cost()) == pytest.approx(
        _chain_cost((8, 5.3, 3.7, 1), kind) / _chain_cost((8, 12, 10, 1), kind), rel=1e-6)
    assert term.full == pytest.approx(_chain_cost((8, 12, 10, 1), kind), rel=1e-6)
    term.step()  # a fixed weight does not move
    assert term.weight == weight


@pytest.mark.parametrize("kind", ["flops", "params"])
def test_penalty_gradient_reaches_every_width(kind):
    model, (a, b) = _mlp(init=(5.3, 3.7))
    term = CostPenalty(model, weight=0.5, kind=kind)
    term.penalty().backward()
    full = _chain_cost((8, 12, 10, 1), kind)
    # d/da, d/db of the chain cost 8a + ab + b (x2/seconds for FLOP/s; + a + b biases for params)
    if kind == "flops":
        da, db = 2 * (8 + 3.7) / SECONDS, 2 * (5.3 + 1) / SECONDS
    else:
        da, db = 8 + 3.7 + 1, 5.3 + 1 + 1
    assert float(a.value.grad) == pytest.approx(0.5 * da / full, rel=1e-5)
    assert float(b.value.grad) == pytest.approx(0.5 * db / full, rel=1e-5)
    weights = [p for n, p in model.named_parameters() if not n.endswith("value")]
    assert all(p.grad is None for p in weights)  # the cost depends on the widths only


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf"), True, "1"])
def test_penalty_rejects_bad_weight(weight):
    model, _ = _mlp()
    with pytest.raises(SoftWidthError, match="weight must be a finite number >= 0"):
        CostPenalty(model, weight=weight)


@pytest.mark.parametrize("cls, options", [(CostPenalty, {"weight": 1.0}), (BudgetController, {"target": 0.5})])
def test_bad_kind(cls, options):
    model, _ = _mlp()
    with pytest.raises(SoftWidthError, match="cost kind must be one of"):
        cls(model, kind="joules", **options)
    with pytest.raises(SoftWidthError, match="cost kind must be one of"):
        model_cost(model, "FLOPS")


def test_flops_need_a_profile_but_params_do_not():
    a = Width(6, init=4.0)
    model = nn.Sequential(Linear(nn.Linear(3, 6), out_width=a), Linear(nn.Linear(6, 2), in_width=a))
    with pytest.raises(SoftWidthError, match="has not been probed"):
        CostPenalty(model, weight=1.0)
    term = CostPenalty(model, weight=1.0, kind="params")
    assert float(term.penalty()) == pytest.approx((3 * 4 + 4 + 4 * 2 + 2) / (3 * 6 + 6 + 6 * 2 + 2))


def test_penalty_state_dict_round_trip():
    model, _ = _mlp()
    term, other = CostPenalty(model, weight=0.25), CostPenalty(model, weight=3.0)
    other.load_state_dict(term.state_dict())
    assert other.weight == 0.25


# -- BudgetController ------------------------------------------------------------------------------------

def test_controller_relative_and_absolute_targets():
    model, _ = _mlp(init=(5.3, 3.7))
    full = _chain_cost((8, 12, 10, 1), "flops")
    rel = BudgetController(model, target=0.4, update="dual")
    assert rel.full == pytest.approx(full, rel=1e-6)
    assert rel.target == pytest.approx(0.4 * full, rel=1e-6)
    absolute = BudgetController(model, target=0.4 * full, relative=False)
    assert absolute.target == pytest.approx(0.4 * full, rel=1e-12)
    params = BudgetController(model, target=100, relative=False, kind="params")
    assert params.target == 100.0 and params.full == _chain_cost((8, 12, 10, 1), "params")
    assert rel.multiplier == 0.0 and float(rel.penalty()) == 0.0
    rel.multiplier = 0.7
    assert float(rel.penalty()) == pytest.approx(0.7 * _chain_cost((8, 5.3, 3.7, 1), "flops") / rel.target)
    assert float(rel.normalised_cost()) == pytest.approx(_chain_cost((8, 5.3, 3.7, 1), "flops") / full)


def test_controller_validation():
    model, _ = _mlp(min_size=2.0)
    full = _chain_cost((8, 12, 10, 1), "flops")
    lowest = _chain_cost((8, 2, 2, 1), "flops")
    BudgetController(model, target=1.0)  # the full model is a valid budget
    BudgetController(model, target=lowest, relative=False)  # so is the all-min model
    with pytest.raises(SoftWidthError, match="above the full model's cost"):
        BudgetController(model, target=1.01)
    with pytest.raises(SoftWidthError, match="above the full model's cost"):
        BudgetController(model, target=full * 1.01, relative=False)
    with pytest.raises(SoftWidthError, match="below the cost with every width at its minimum"):
        BudgetController(model, target=lowest * 0.99, relative=False)
    with pytest.raises(SoftWidthError, match="below the cost with every width at its minimum"):
        BudgetController(model, target=0.01)
    for bad in (0.0, -0.5, float("nan"), float("inf"), True):
        with pytest.raises(SoftWidthError, match="target must be a finite number > 0"):
            BudgetController(model, target=bad)
    for bad in (0.0, -0.01, float("nan"), float("inf")):
        with pytest.raises(SoftWidthError, match="step_size must be > 0"):
            BudgetController(model, target=0.5, step_size=bad)


def test_controller_rejects_a_target_no_integer_widths_meet():
    model, (a, b) = _mlp(min_size=2.5)  # smallest integer sizes are 3, 3
    lowest_real = _chain_cost((8, 2.5, 2.5, 1), "flops")
    with pytest.raises(SoftWidthError, match="below the cost"):
        controller = BudgetController(model, target=lowest_real, relative=False)
        controller.enforce()  # today: accepted above, raises only here, after most of training


def test_controller_step_is_dual_ascent():
    model, widths = _mlp(init=(12.0, 10.0))
    c = BudgetController(model, target=0.5, step_size=0.1, update="dual")
    c.step()  # at full size: cost / target - 1 = 1
    assert c.multiplier == pytest.approx(0.1)
    c.step()
    assert c.multiplier == pytest.approx(0.2)
    _set(widths, (6, 5))  # cost = (48 + 30 + 5) / (96 + 120 + 10) of full = 0.367 < 0.5
    excess = (48 + 30 + 5) / (96 + 120 + 10) / 0.5 - 1
    c.step()
    assert c.multiplier == pytest.approx(0.2 + 0.1 * excess)
    assert c.multiplier < 0.2
    for _ in range(20):
        c.step()
    assert c.multiplier == 0.0  # clipped at zero, never negative


def test_controller_penalty_pushes_widths_down():
    model, (a, b) = _mlp(init=(9.0, 7.0))
    c = BudgetController(model, target=0.3, update="dual")
    c.multiplier = 1.0
    c.penalty().backward()
    assert float(a.value.grad) > 0 and float(b.value.grad) > 0


def test_controller_state_dict_round_trip(tmp_path):
    model, _ = _mlp()
    c = BudgetController(model, target=0.5, step_size=0.3, update="dual")
    c.step()
    c.step()
    torch.save(c.state_dict(), tmp_path / "c.pt")
    other = BudgetController(model, target=0.8, update="dual")
    other.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    assert other.multiplier == c.multiplier == pytest.approx(0.6)
    assert other.target == c.target


def test_enforce_meets_the_budget_closely():
    """Two widths of 64 (one feature of either is < 2.5 % of the budget): cost lands in [0.97, 1] x target."""
    torch.manual_seed(0)
    model, widths = _mlp((8, 64, 64, 1), init=(50.3, 20.8))
    for target in (0.2, 0.45, 0.7):
        _set(widths, (50.3, 20.8))
        c = BudgetController(model, target=target)
        sizes = c.enforce()
        cost = _cost(model)
        assert cost <= c.target
        assert cost >= 0.97 * c.target
        assert sizes == {w.label: int(w.value) for w in widths}
        for w in widths:
            assert float(w.value) == w.rounded == int(w.value)  # integers, kept by consolidation


def test_enforce_already_under_budget_grows_to_fill_it():
    model, widths = _mlp((8, 64, 64, 1), init=(3.0, 3.0))
    c = BudgetController(model, target=0.5)
    c.enforce()
    assert 0.97 * c.target <= _cost(model) <= c.target


def test_enforce_respects_multiple_of_and_min_size():
    model, widths = _mlp((8, 64, 32, 1), init=(60.0, 30.0), multiple_of=8, min_size=12.0)
    c = BudgetController(model, target=0.25)
    sizes = c.enforce()
    assert _cost(model) <= c.target
    for w in widths:
        n = sizes[w.label]
        assert n % 8 == 0 and 16 <= n <= w.max_size  # 12 rounds up to the next multiple, 16
        assert float(w.value) == n == w.rounded
    assert sw.consolidate(model)[0].out_features == sizes[widths[0].label]


def test_enforce_budget_needs_widths():
    model = nn.Sequential(Linear(nn.Linear(3, 2)))
    with pytest.raises(SoftWidthError, match="has no widths"):
        enforce_budget(model, 10.0, kind="params")


def test_enforce_budget_refuses_an_impossible_target():
    model, widths = _mlp()
    with pytest.raises(SoftWidthError, match="no integer widths reach cost"):
        enforce_budget(model, 1.0, kind="params")


# -- enforce_budget on random widths and targets ------------------------------------------------------------

@st.composite
def _budget_case(draw):
    n = draw(st.integers(1, 3))
    hidden = []
    for _ in range(n):
        q = draw(st.sampled_from([1, 1, 2, 4]))
        max_size = q * draw(st.integers(1, 12))
        min_size = draw(st.floats(1.0, float(max_size)))
        init = draw(st.floats(min_size, float(max_size)))
        hidden.append((max_size, q, min_size, init))
    kind = draw(st.sampled_from(["flops", "params"]))
    fraction = draw(st.floats(0.0, 1.0))
    return hidden, kind, fraction


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=_budget_case())
def test_enforce_budget_is_feasible_integer_and_maximal(case):
    hidden, kind, fraction = case
    widths = [Width(m, multiple_of=q, min_size=lo, init=k) for m, q, lo, k in hidden]
    sizes = [3] + [m for m, *_ in hidden] + [2]
    layers = [Linear(nn.Linear(i, o), in_width=widths[j - 1] if j else None,
                     out_width=widths[j] if j < len(widths) else None)
              for j, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = nn.Sequential(*layers)
    sw.profile(model, torch.zeros(1, 3), seconds=SECONDS)
    lowest = [q * math.ceil(lo / q - 1e-9) for m, q, lo, k in hidden]
    with _widths_at(model, {id(w): float(n) for w, n in zip(widths, lowest)}):
        floor = _cost(model, kind)
    full = full_cost(model, kind)
    target = floor + fraction * (full - floor)

    real = {id(w): float(w.value) for w in widths}

    def cost_of(sizes):
        with _widths_at(model, sizes):
            return _cost(model, kind)

    goal = _common_scale(widths, real, target, cost_of)  # the proportional real sizes the rounding keeps to
    result = enforce_budget(model, target, kind=kind)

    cost = _cost(model, kind)
    assert cost <= target * (1 + 1e-9)
    assert set(result) == {w.label for w in widths}
    for w, (m, q, lo, _) in zip(widths, hidden):
        value = float(w.value)
        assert value == int(value) == result[w.label] == w.rounded
        assert lo <= value <= m and value % q == 0
    # maximal within the proportions: no single width can grow one step, stay within one step of its
    # proportional size and still fit
    for w in widths:
        grown = float(w.value) + w.multiple_of
        if grown > w.max_size or grown > goal[id(w)] + w.multiple_of * (1 + 1e-6):
            continue
        with _widths_at(model, {id(w): grown}):
            assert _cost(model, kind) > target
    assert width_modules(model) == widths


def test_enforce_budget_trades_a_step_when_growing_alone_stops_short():
    """8 -> a -> b -> 1 (FLOPs 2 (8 a + a b + b) per example) with b at its maximum and a step of a costing 144:
    growing alone stops at (24, 64), 3584 of 3724 (0.962); giving b one step back lets a grow: (25, 63), 3676."""
    model, (a, b) = _mlp((8, 64, 64, 1), init=(24.0, 64.0))
    target = 3724.0 / SECONDS
    result = enforce_budget(model, target)
    cost = _cost(model)
    assert result == {a.label: 25, b.label: 63}
    assert cost == pytest.approx(_chain_cost((8, 25, 63, 1), "flops")) and 0.98 * target <= cost <= target


# -- the projection update and proportional rounding --------------------------------------------------------

def test_projection_lands_on_the_goal_along_the_cost_gradient():
    """After one step at full size with glide 0 the cost is exactly the target, and each width moved by
    ``mu * max_size^2 * dC/dK`` (the range metric) for one common ``mu``."""
    model, (a, b) = _mlp((8, 12, 10, 1))
    c = BudgetController(model, target=0.5, glide_steps=0)
    for w in (a, b):
        w.value.grad = torch.zeros(())
    values = [a.value, b.value]
    grads = torch.autograd.grad(model_cost(model) / c.target, values)
    c.step()
    assert _cost(model) == pytest.approx(c.target, rel=1e-9) and _cost(model) <= c.target
    moved = [w.max_size - float(w.value.detach()) for w in (a, b)]
    expected = [w.max_size**2 * float(g) for w, g in zip((a, b), grads)]
    assert moved[0] / moved[1] == pytest.approx(expected[0] / expected[1], rel=1e-6)
    assert c.multiplier == 0.0  # no task gradient: no price


def test_projection_glides_to_the_target_and_stays_there():
    model, widths = _mlp((8, 24, 24, 1))
    c = BudgetController(model, target=0.25, glide_steps=8)
    torch.manual_seed(0)
    ratios = []
    for _ in range(20):
        for w in widths:  # a task gradient that asks for more features, as a real one does
            w.value.grad = -torch.rand(()) * 1e3
            with torch.no_grad():
                w.value.sub_(0.01 * float(w.value.grad))
                w.project_()
        c.step()
        ratios.append(_cost(model) / c.target)
    assert all(b <= a + 1e-9 for a, b in zip(ratios[:8], ratios[1:8]))  # the glide only goes down
    assert ratios[6] > 1.0 and all(0.999 <= r <= 1.0 + 1e-9 for r in ratios[7:])  # on the target from then on
    assert c.multiplier > 0


def test_projection_refuses_bad_options():
    model, _ = _mlp()
    for kwargs, message in (({"update": "pid"}, "update must be"), ({"glide_steps": -1}, "glide_steps must be"),
                            ({"unit": "flops"}, "unit must be")):
        with pytest.raises(SoftWidthError, match=message):
            BudgetController(model, target=0.5, **kwargs)


def test_enforce_budget_scales_learned_widths_up_to_the_budget():
    """Widths learned below the budget keep their proportions when scaled up (the common scale may exceed 1)."""
    model, (a, b) = _mlp((8, 64, 64, 1), init=(10.0, 20.0))
    target = _chain_cost((8, 20, 40, 1), "flops")
    sizes = enforce_budget(model, target)
    assert sizes == {a.label: 20, b.label: 40}


@settings(max_examples=40, deadline=None)
@given(st.floats(16.0, 60.0), st.floats(16.0, 60.0), st.floats(16.0, 60.0), st.sampled_from([1, 2]))
def test_enforce_budget_rounds_widths_at_the_target_within_one_step(x, y, z, step):
    """Real-valued widths whose cost is already the target are each rounded to within one step of their value
    (on a grid fine enough that some such rounding lands within 3 % of the target: widths of 16 and more)."""
    model, widths = _mlp((8, 64, 64, 64, 1), multiple_of=step, min_size=float(step))
    _set(widths, (x, y, z))
    target = _cost(model)
    sizes = enforce_budget(model, target)
    assert _cost(model) <= target * (1 + 1e-9)
    for w, value in zip(widths, (x, y, z)):
        assert abs(sizes[w.label] - value) <= step + 1e-6, (sizes, (x, y, z))
