"""Tests of softwidth.optim: the width parameter group and projection into bounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Linear
from softwidth.optim import width_modules


def _model():
    a, b = Width(8, min_size=2.0, init=5.0), Width(6, init=3.0)
    model = nn.Sequential(
        Linear(nn.Linear(4, 8), out_width=a),
        nn.ReLU(),
        Linear(nn.Linear(8, 6), in_width=a, out_width=b),  # a is registered twice
        Linear(nn.Linear(6, 2), in_width=b),
    )
    return model, (a, b)


def test_param_groups_put_widths_and_only_widths_in_their_group():
    model, (a, b) = _model()
    groups = sw.param_groups(model, width_lr=0.5, weight_decay=0.01)
    weights, widths = groups
    assert widths["name"] == "widths" and widths["lr"] == 0.5 and widths["weight_decay"] == 0.0
    assert [id(p) for p in widths["params"]] == [id(a.value), id(b.value)]  # each width once
    assert weights["weight_decay"] == 0.01 and "lr" not in weights
    ids = {id(p) for p in weights["params"]}
    assert not ids & {id(a.value), id(b.value)}
    assert ids | {id(a.value), id(b.value)} == {id(p) for p in model.parameters()}
    assert len(weights["params"]) == 6
    opt = torch.optim.AdamW(groups, lr=1e-3)
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["weight_decay"] == 0.01


def test_width_group_takes_its_own_step():
    torch.manual_seed(0)
    model, (a, b) = _model()
    opt = torch.optim.SGD(sw.param_groups(model, width_lr=0.0), lr=0.1)
    before = a.value.detach().clone(), model[0].linear.weight.detach().clone()
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    assert torch.equal(a.value.detach(), before[0])  # width lr 0: widths frozen
    assert not torch.equal(model[0].linear.weight.detach(), before[1])


@pytest.mark.parametrize("width_lr", [-1.0, float("nan"), float("inf"), "fast"])
def test_bad_width_lr(width_lr):
    model, _ = _model()
    with pytest.raises(SoftWidthError, match="param_groups: width_lr must be a finite number >= 0"):
        sw.param_groups(model, width_lr=width_lr)


@pytest.mark.parametrize("sign, expected", [(-1.0, (8.0, 6.0)), (1.0, (2.0, 1.0))])
def test_project_clamps_after_an_overshooting_step(sign, expected):
    model, (a, b) = _model()
    opt = torch.optim.SGD(sw.param_groups(model, width_lr=100.0), lr=0.0)
    (sign * (a.value + b.value)).backward()
    opt.step()
    assert float(a.value.detach()) == 5.0 - sign * 100.0  # the step left the bounds
    sw.project_(model)
    assert (float(a.value.detach()), float(b.value.detach())) == expected


def test_project_leaves_inside_values_alone_and_refuses_nan():
    model, (a, b) = _model()
    a.value.data.fill_(4.123)
    sw.project_(model)
    assert float(a.value.detach()) == pytest.approx(4.123)
    a.value.data.fill_(float("inf"))
    with pytest.raises(SoftWidthError, match="width became inf"):
        sw.project_(model)


def test_width_modules_lists_each_width_once():
    model, (a, b) = _model()
    assert width_modules(model) == [a, b]
