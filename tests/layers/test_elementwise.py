"""Tests of softwidth.layers.Elementwise (activations incl. per-channel PReLU and Sigmoid), Add and Concat."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Add, Concat, Conv1d, Elementwise, Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)

ACTIVATIONS = {
    "prelu-channels": lambda c: nn.PReLU(c),
    "prelu": lambda c: nn.PReLU(),
    "sigmoid": lambda c: nn.Sigmoid(),
    "softplus": lambda c: nn.Softplus(),
    "tanh": lambda c: nn.Tanh(),
    "elu": lambda c: nn.ELU(),
    "selu": lambda c: nn.SELU(),
    "leaky": lambda c: nn.LeakyReLU(0.2),
    "relu": lambda c: nn.ReLU(),
}


def _set(width: Width, frac: float, integer: bool = False) -> None:
    value = 1.0 + frac * (width.max_size - 1)
    width.value.data.fill_(float(round(value)) if integer else value)


def _act_model(name, conv, c_in, c, frac, integer=False):
    """producer (-> w), Elementwise(activation, w), consumer (w -> 2); conv features on dim 1."""
    w = Width(c)
    _set(w, frac, integer)
    act = ACTIVATIONS[name](c)
    if isinstance(act, nn.PReLU):
        nn.init.uniform_(act.weight, -1.0, 1.0)  # distinct slopes per channel
    if conv:
        return nn.Sequential(Conv1d(nn.Conv1d(c_in, c, 3), out_width=w), Elementwise(act, w, dim=1),
                             Conv1d(nn.Conv1d(c, 2, 1), in_width=w)), w
    return nn.Sequential(Linear(nn.Linear(c_in, c), out_width=w), Elementwise(act, w),
                         Linear(nn.Linear(c, 2), in_width=w)), w


@pytest.mark.parametrize("name", ["prelu-channels", "prelu", "sigmoid", "softplus", "tanh"])
@pytest.mark.parametrize("conv", [False, True])
@SETTINGS
@given(c_in=st.integers(1, 4), c=st.integers(1, 10), frac=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_activation_eval_equals_consolidated(name, conv, c_in, c, frac, seed):
    torch.manual_seed(seed)
    model, w = _act_model(name, conv, c_in, c, frac)
    model.eval()
    x = torch.randn(3, c_in, 6) if conv else torch.randn(3, c_in)  # PReLU slopes act on dim 1
    plain = sw.consolidate(model)
    assert type(plain[1]) is type(model[1].module)
    if name == "prelu-channels":
        assert plain[1].num_parameters == w.rounded
        assert torch.equal(plain[1].weight, model[1].module.weight[: w.rounded])
    hidden = model[1](model[0](x))
    assert (hidden.narrow(1 if conv else -1, w.rounded, c - w.rounded) == 0).all()  # re-gated: f(0) != 0
    assert torch.allclose(model(x), plain(x), atol=1e-5)


MUST_WRAP = ("sigmoid", "softplus", "prelu-channels")  # f(0) != 0 or per-channel slopes: see test_probe


@pytest.mark.parametrize("name, wrapped", [(n, True) for n in sorted(ACTIVATIONS)]
                         + [(n, False) for n in sorted(ACTIVATIONS) if n not in MUST_WRAP])
def test_activation_cost_equals_moduleprofiler(name, wrapped):
    """Wrapped activations and stock ones priced by profile (f(0) == 0 only) match moduleprofiler."""
    model, w = _act_model(name, True, 2, 9, 0.6, integer=True)
    if not wrapped:
        model[1] = model[1].module
    x = torch.randn(1, 2, 8)
    sw.profile(model, x)
    rows = sw.cost(model, per_layer=True)
    plain = sw.consolidate(model)
    ops = ModuleProfiler().estimate_ops(plain, x)
    assert float(rows["1"]["flops"]) == ops["1"]["ops"] > 0
    assert float(rows["1"]["params"]) == sum(p.numel() for p in plain[1].parameters())
    assert float(sw.params(model)) == sum(p.numel() for p in plain.parameters())


class Residual(nn.Module):
    """in -> fc1 (w) -> [fc2 (w -> w)] + skip -> PReLU (per channel) -> head."""

    def __init__(self, c_in, c, w):
        super().__init__()
        self.fc1 = Linear(nn.Linear(c_in, c), out_width=w)
        self.fc2 = Linear(nn.Linear(c, c), in_width=w, out_width=w)
        self.add = Add(w)
        self.act = Elementwise(nn.PReLU(c), w)
        self.head = Linear(nn.Linear(c, 2), in_width=w)

    def forward(self, x):
        h = self.fc1(x)
        return self.head(self.act(self.add(h, self.fc2(h))))


class TwoBranches(nn.Module):
    """x -> a (w1), x -> b (w2), fixed branch (3) -> Concat -> Sigmoid -> head over concat(w1, 3, w2)."""

    def __init__(self, c_in, w1, w2):
        super().__init__()
        self.a = Linear(nn.Linear(c_in, w1.max_size), out_width=w1)
        self.b = Linear(nn.Linear(c_in, w2.max_size), out_width=w2)
        self.fixed = nn.Linear(c_in, 3)
        layout = sw.concat(w1, 3, w2)
        self.cat = Concat(w1, 3, w2)
        self.act = Elementwise(nn.Sigmoid(), layout)
        self.head = Linear(nn.Linear(layout.max_size, 2), in_width=layout)

    def forward(self, x):
        return self.head(self.act(self.cat(self.a(x), self.fixed(x), self.b(x))))


@SETTINGS
@given(c_in=st.integers(1, 4), c=st.integers(1, 9), frac=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_residual_add_eval_equals_consolidated(c_in, c, frac, seed):
    torch.manual_seed(seed)
    w = Width(c)
    _set(w, frac)
    model = Residual(c_in, c, w).eval()
    nn.init.uniform_(model.act.module.weight, -1, 1)
    x = torch.randn(5, c_in)
    plain = sw.consolidate(model)
    assert isinstance(plain.add, torch.fx.GraphModule)
    assert torch.allclose(model(x), plain(x), atol=1e-5)


@SETTINGS
@given(c_in=st.integers(1, 4), sizes=st.tuples(st.integers(1, 8), st.integers(1, 8)),
       fracs=st.tuples(st.floats(0, 1), st.floats(0, 1)), seed=st.integers(0, 2**16))
def test_concat_eval_equals_consolidated(c_in, sizes, fracs, seed):
    torch.manual_seed(seed)
    w1, w2 = Width(sizes[0]), Width(sizes[1])
    _set(w1, fracs[0])
    _set(w2, fracs[1])
    model = TwoBranches(c_in, w1, w2).eval()
    x = torch.randn(4, c_in)
    plain = sw.consolidate(model)
    assert plain.head.in_features == w1.rounded + 3 + w2.rounded
    assert isinstance(plain.cat, torch.fx.GraphModule)
    assert torch.allclose(model(x), plain(x), atol=1e-5)


def test_add_and_concat_costs():
    w = Width(8, init=5.0)
    model = Residual(3, 8, w)
    sw.profile(model, torch.randn(1, 3))
    rows = sw.cost(model, per_layer=True)
    assert float(rows["add"]["flops"]) == 5  # one add per kept feature and position
    assert float(rows["add"]["params"]) == 0 and float(rows["add"]["macs"]) == 0
    w.value.data.fill_(4.5)
    assert float(model.add.cost(6.0)["flops"]) == pytest.approx(4.5 * 6)
    cat = Concat(Width(3), 2)
    assert all(float(v) == 0 for v in cat.cost(10.0).values())


def test_add_remasks_in_eval_and_sums_in_train():
    w = Width(6, init=2.0)
    add = Add(w, dim=1)
    a, b = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    assert torch.equal(add(a, b), a + b)
    add.eval()
    y = add(a, b)
    assert torch.equal(y[:, :2], (a + b)[:, :2]) and (y[:, 2:] == 0).all()


# -- errors ---------------------------------------------------------------------------------------
def test_elementwise_errors():
    with pytest.raises(SoftWidthError, match="Elementwise: unsupported module Softmax; supported: .*Sigmoid"):
        Elementwise(nn.Softmax(dim=-1), Width(4))
    with pytest.raises(SoftWidthError, match="PReLU has 3 slopes but the width has 4 features"):
        Elementwise(nn.PReLU(3), Width(4))
    with pytest.raises(SoftWidthError, match="Concat needs at least two widths"):
        Concat(Width(4))
    cat = Concat(Width(4), 2)
    cat.path = "merge"
    with pytest.raises(SoftWidthError, match="merge: expected 2 tensors, got 3"):
        cat(torch.randn(1, 4), torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(SoftWidthError, match="merge: input has 3 features on axis -1"):
        cat(torch.randn(1, 4), torch.randn(1, 3))
    add = Add(Width(4))
    with pytest.raises(SoftWidthError, match=r"Add: cannot add shapes \(2, 4\) and \(3, 4\)"):
        add(torch.randn(2, 4), torch.randn(3, 4))
    with pytest.raises(SoftWidthError, match="Add: input has 5 features"):
        add(torch.randn(2, 5), torch.randn(2, 5))
