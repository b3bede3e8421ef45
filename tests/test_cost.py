"""Tests of softwidth.cost: totals vs independent counters, gradients vs finite differences, FLOP/s."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.cost import KINDS
from softwidth.layers import BatchNorm, Conv1d, Elementwise, LayerNorm, Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


class Net(nn.Module):
    """(N, 3, T) -> conv (w1) -> BN -> PReLU -> depthwise (w1) -> conv (w1 -> w2) -> ReLU -> (N, T', C)
    -> LayerNorm (w2) -> Linear (w2 -> w3) -> Tanh -> Linear (w3 -> 2). Every core layer type, one input."""

    def __init__(self, widths):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = Conv1d(nn.Conv1d(3, 8, 3, padding=1), out_width=w1)
        self.bn = BatchNorm(nn.BatchNorm1d(8), w1)
        self.prelu = Elementwise(nn.PReLU(8), w1, dim=1)
        self.dw = Conv1d(nn.Conv1d(8, 8, 3, stride=2, groups=8, bias=False), in_width=w1, out_width=w1)
        self.conv2 = Conv1d(nn.Conv1d(8, 6, 1), in_width=w1, out_width=w2)
        self.relu = nn.ReLU()
        self.norm = LayerNorm(nn.LayerNorm(6), w2)
        self.fc = Linear(nn.Linear(6, 5, bias=False), in_width=w2, out_width=w3)
        self.tanh = nn.Tanh()
        self.head = Linear(nn.Linear(5, 2), in_width=w3)

    def forward(self, x):
        h = self.relu(self.conv2(self.dw(self.prelu(self.bn(self.conv1(x))))))
        return self.head(self.tanh(self.fc(self.norm(h.transpose(1, 2)))))


def _net(values):
    widths = tuple(Width(m, init=v) for m, v in zip((8, 6, 5), values))
    return Net(widths), widths


X = torch.randn(1, 3, 12)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(values=st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 5)))
def test_totals_equal_sum_of_moduleprofiler_leaves_at_integer_widths(values):
    model, _ = _net(values)
    sw.profile(model, X)
    totals = sw.cost(model)
    plain = sw.consolidate(model)
    leaves = {n: m for n, m in plain.named_modules() if not list(m.children())}
    ops = ModuleProfiler().estimate_ops(plain, X)
    assert float(totals["flops"]) == sum(ops[n]["ops"] for n in leaves)
    with FlopCounterMode(display=False) as counter:
        plain(X)
    assert 2 * float(totals["macs"]) == counter.get_total_flops()
    assert float(totals["params"]) == float(sw.params(model)) == sum(p.numel() for p in plain.parameters())
    rows = sw.cost(model, per_layer=True)
    assert set(rows) == set(leaves)
    for kind in KINDS:
        assert float(totals[kind]) == pytest.approx(sum(float(r[kind]) for r in rows.values()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("values", [(2.3, 3.7, 2.5), (6.6, 1.8, 4.1)])
def test_gradient_matches_central_differences(kind, values):
    model, widths = _net(values)
    sw.profile(model, X)
    total = sw.cost(model)[kind] if kind != "params" else sw.params(model)
    grads = torch.autograd.grad(total, [w.value for w in widths])
    h = 0.25
    for w, grad in zip(widths, grads):
        base = float(w.value.detach())
        values_at = []
        for step in (h, -h):
            w.value.data.fill_(base + step)
            values_at.append(float(sw.cost(model)[kind]))
        w.value.data.fill_(base)
        numeric = (values_at[0] - values_at[1]) / (2 * h)
        assert float(grad) == pytest.approx(numeric, rel=1e-3, abs=1e-2), w.label
        assert numeric != 0.0  # every width changes every kind of cost in this model


def test_every_width_has_a_flops_gradient():
    model, widths = _net((4.4, 3.3, 2.2))
    sw.profile(model, X)
    sw.flops(model).backward()
    assert all(float(w.value.grad) > 0 for w in widths)


def test_flops_per_second_divides_by_seconds():
    model, _ = _net((5, 4, 3))
    sw.profile(model, X, seconds=2.0)
    fps = sw.flops_per_second(model)
    assert float(fps) == pytest.approx(float(sw.flops(model)) / 2.0)
    sw.profile(model, X, seconds=1.0)
    assert float(sw.flops_per_second(model)) == pytest.approx(2 * float(fps))
    assert fps.requires_grad


def test_named_shortcuts_equal_cost():
    model, _ = _net((5.5, 4.5, 3.5))
    sw.profile(model, X)
    totals = sw.cost(model)
    assert float(sw.flops(model)) == float(totals["flops"])
    assert float(sw.macs(model)) == float(totals["macs"])
    assert float(sw.params(model)) == pytest.approx(float(totals["params"]))
    assert all(totals[k].requires_grad for k in KINDS)


def test_params_needs_no_probe_and_skips_width_parameters():
    model, widths = _net((8, 6, 5))
    stock = sum(p.numel() for p in model.parameters()) - len(widths)
    assert float(sw.params(model)) == stock
    with_extra = nn.Sequential(model, nn.Linear(2, 3))  # stock layer outside width-aware layers
    assert float(sw.params(with_extra)) == stock + 9


def test_stock_only_model_matches_moduleprofiler():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Conv1d(4, 2, 1))
    sw.profile(model, X)
    ops = ModuleProfiler().estimate_ops(model, X)
    assert float(sw.flops(model)) == sum(ops[str(i)]["ops"] for i in range(4))
    assert not sw.flops(model).requires_grad


def test_asking_for_flops_before_profile_is_an_error():
    model, _ = _net((5, 4, 3))
    for fn in (sw.cost, sw.flops, sw.macs, sw.flops_per_second):
        with pytest.raises(SoftWidthError, match=r"has not been probed: run softwidth.profile\(model"):
            fn(model)
    with pytest.raises(SoftWidthError, match="expected an nn.Module, got int"):
        sw.cost(3)
    with pytest.raises(SoftWidthError, match="params: model must be an nn.Module, got str"):
        sw.params("model")
