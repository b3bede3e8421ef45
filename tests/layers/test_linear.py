"""Tests of softwidth.layers.Linear and the softwidth.dynamic dispatch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


def _k(width: Width, frac: float, integer: bool) -> None:
    """Set ``width`` to a real (or integer) value at fraction ``frac`` of its range."""
    value = 1.0 + frac * (width.max_size - 1)
    width.value.data.fill_(float(round(value)) if integer else value)


def _mlp(sizes, fracs, bias, integer=False, mix="ramp"):
    """in -> h1 (w1) -> ReLU -> h1 (w1 -> w1) -> h2 (w1 -> w2) -> out (w2 -> fixed)."""
    i, h1, h2, o = sizes
    w1, w2 = Width(h1, mix=mix), Width(h2, mix=mix)
    _k(w1, fracs[0], integer)
    _k(w2, fracs[1], integer)
    return nn.Sequential(
        Linear(nn.Linear(i, h1, bias=bias[0]), out_width=w1),
        nn.ReLU(),
        Linear(nn.Linear(h1, h1, bias=bias[1]), in_width=w1, out_width=w1),
        Linear(nn.Linear(h1, h2, bias=bias[2]), in_width=w1, out_width=w2),
        nn.Tanh(),
        Linear(nn.Linear(h2, o, bias=bias[3]), in_width=w2),
    ), (w1, w2)


sizes_st = st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12), st.integers(1, 5))
fracs_st = st.tuples(st.floats(0, 1), st.floats(0, 1))
bias_st = st.tuples(*[st.booleans()] * 4)


@SETTINGS
@given(sizes=sizes_st, fracs=fracs_st, bias=bias_st, lead=st.sampled_from([(3,), (2, 5), (1, 1, 4)]),
       seed=st.integers(0, 2**16))
def test_eval_output_equals_consolidated(sizes, fracs, bias, lead, seed):
    torch.manual_seed(seed)
    model, (w1, w2) = _mlp(sizes, fracs, bias)
    model.eval()
    x = torch.randn(*lead, sizes[0])
    plain = sw.consolidate(model)
    assert plain[0].weight.shape == (w1.rounded, sizes[0])
    assert plain[3].weight.shape == (w2.rounded, w1.rounded)
    assert plain[5].weight.shape == (sizes[3], w2.rounded)
    assert torch.allclose(model(x), plain(x), atol=1e-5)


def _independent(plain: nn.Module, x: torch.Tensor):
    """moduleprofiler ops per module, FlopCounterMode total (matmul/conv), parameter count."""
    ops = ModuleProfiler().estimate_ops(plain, x)
    with FlopCounterMode(display=False) as counter:
        plain(x)
    return ops, counter.get_total_flops(), sum(p.numel() for p in plain.parameters())


@SETTINGS
@given(sizes=sizes_st, fracs=fracs_st, bias=bias_st, frames=st.integers(1, 7))
def test_cost_at_integer_widths_equals_independent_counts(sizes, fracs, bias, frames):
    model, _ = _mlp(sizes, fracs, bias, integer=True)
    x = torch.randn(1, frames, sizes[0])
    sw.profile(model, x)
    rows = sw.cost(model, per_layer=True)
    ops, matmul_flops, n_params = _independent(sw.consolidate(model), x)
    for name, row in rows.items():
        assert float(row["flops"]) == ops[name]["ops"], name
    totals = sw.cost(model)
    assert float(totals["flops"]) == sum(ops[name]["ops"] for name in rows)
    assert 2 * float(totals["macs"]) == matmul_flops
    assert float(totals["params"]) == float(sw.params(model)) == n_params


def test_linear_costs_formulas_at_real_widths():
    a, b = Width(8, init=3.5), Width(6, init=2.25)
    layer = Linear(nn.Linear(8, 6), in_width=a, out_width=b)
    c = layer.cost(10.0)
    assert float(c["flops"]) == pytest.approx(2 * 3.5 * 2.25 * 10)
    assert float(c["macs"]) == pytest.approx(3.5 * 2.25 * 10)
    assert float(c["params"]) == pytest.approx(3.5 * 2.25 + 2.25)
    nobias = Linear(nn.Linear(8, 6, bias=False), in_width=a, out_width=b).cost(10.0)
    assert float(nobias["flops"]) == pytest.approx(2.25 * (2 * 3.5 - 1) * 10)
    assert float(nobias["params"]) == pytest.approx(3.5 * 2.25)


def test_parameters_are_reused_and_widths_registered():
    a, b = Width(8), Width(6)
    base = nn.Linear(8, 6)
    layer = sw.dynamic(base, in_width=a, out_width=b)
    assert isinstance(layer, Linear) and layer.linear is base
    names = dict(layer.named_parameters())
    assert names["linear.weight"] is base.weight
    assert names["out_width.value"] is b.value and names["in_width.value"] is a.value


def test_consolidated_slices_rows_and_columns_without_mutation():
    torch.manual_seed(0)
    a, b = Width(5, init=2.0), Width(4, init=3.0)
    layer = Linear(nn.Linear(5, 4), in_width=a, out_width=b)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    out = layer.consolidated()
    assert type(out) is nn.Linear
    assert torch.equal(out.weight, layer.linear.weight[:3, :2])
    assert torch.equal(out.bias, layer.linear.bias[:3])
    out.weight.data.zero_()  # a copy, not a view
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k


# -- errors ---------------------------------------------------------------------------------------
def test_wrong_feature_count_or_bad_values():
    layer = Linear(nn.Linear(4, 3), out_width=Width(3))
    layer.path = "enc.fc"
    with pytest.raises(SoftWidthError, match="enc.fc: input has 5 features on axis -1"):
        layer(torch.randn(2, 5))
    with pytest.raises(SoftWidthError, match="enc.fc: input features contain NaN or inf"):
        layer(torch.tensor([[0.0, float("inf"), 0.0, 0.0]]))
    with pytest.raises(SoftWidthError, match=r"enc.fc: input of shape \(\) has no feature axis"):
        layer(torch.tensor(1.0))


def test_width_size_must_match_layer():
    with pytest.raises(SoftWidthError, match="Linear: out_width h has max size 5, but the layer has 6"):
        Linear(nn.Linear(4, 6), out_width=Width(5, name="h"))
    with pytest.raises(SoftWidthError, match="in_width a\\+b has max size 7, but the layer has 4"):
        Linear(nn.Linear(4, 6), in_width=sw.concat(Width(3, name="a"), Width(4, name="b")))
    with pytest.raises(SoftWidthError, match="wraps nn.Linear, got Conv1d"):
        Linear(nn.Conv1d(2, 2, 1))


def test_dynamic_dispatch_errors():
    with pytest.raises(SoftWidthError, match="unsupported module Embedding; supported: .*Linear"):
        sw.dynamic(nn.Embedding(10, 4), out_width=Width(4))
    with pytest.raises(SoftWidthError, match="Linear: .*unexpected keyword argument 'width'"):
        sw.dynamic(nn.Linear(4, 4), width=Width(4))
    layer = sw.dynamic(nn.Linear(4, 4), out_width=Width(4))
    with pytest.raises(SoftWidthError, match="Linear is already width-aware"):
        sw.dynamic(layer)
