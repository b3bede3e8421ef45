"""Tests of softwidth.layers.Conv1d / Conv2d, incl. depthwise, stride, padding and dilation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Conv1d, Conv2d

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
WRAP = {1: (nn.Conv1d, Conv1d), 2: (nn.Conv2d, Conv2d)}

# kernel, stride, padding, dilation, bias of one conv
conv_st = st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2), st.booleans())


def _out_len(n, spec):
    k, s, p, d, _ = spec
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _stack(dims, c_in, c1, c2, specs, fracs, integer=False):
    """conv (-> w1), ReLU, depthwise (w1 -> w1), conv (w1 -> w2), 1x1 head (w2 -> 3)."""
    stock, wrap = WRAP[dims]
    w1, w2 = Width(c1), Width(c2)
    for w, f in ((w1, fracs[0]), (w2, fracs[1])):
        value = 1.0 + f * (w.max_size - 1)
        w.value.data.fill_(float(round(value)) if integer else value)

    def conv(i, o, spec, groups=1):
        k, s, p, d, b = spec
        return stock(i, o, k, stride=s, padding=p, dilation=d, groups=groups, bias=b)

    model = nn.Sequential(
        wrap(conv(c_in, c1, specs[0]), out_width=w1),
        nn.ReLU(),
        wrap(conv(c1, c1, specs[1], groups=c1), in_width=w1, out_width=w1),
        wrap(conv(c1, c2, specs[2]), in_width=w1, out_width=w2),
        wrap(stock(c2, 3, 1), in_width=w2),
    )
    return model, (w1, w2)


def _draw(data, dims):
    specs = data.draw(st.tuples(conv_st, conv_st, conv_st))
    spatial = tuple(data.draw(st.integers(9, 16)) for _ in range(dims))
    for n in spatial:
        for spec in specs:
            n = _out_len(n, spec)
            assume(n >= 1)
    sizes = data.draw(st.tuples(st.integers(1, 3), st.integers(2, 8), st.integers(1, 8)))
    fracs = data.draw(st.tuples(st.floats(0, 1), st.floats(0, 1)))
    return specs, spatial, sizes, fracs


@pytest.mark.parametrize("dims", [1, 2])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_eval_output_equals_consolidated(dims, data, seed):
    specs, spatial, (c_in, c1, c2), fracs = _draw(data, dims)
    torch.manual_seed(seed)
    model, (w1, w2) = _stack(dims, c_in, c1, c2, specs, fracs)
    model.eval()
    x = torch.randn(2, c_in, *spatial)
    plain = sw.consolidate(model)
    depthwise = plain[2]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == w1.rounded
    assert plain[3].weight.shape[:2] == (w2.rounded, w1.rounded)
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    assert torch.allclose(model(x[0]), plain(x[0]), atol=1e-5)  # unbatched input


@pytest.mark.parametrize("dims", [1, 2])
@SETTINGS
@given(data=st.data())
def test_cost_at_integer_widths_equals_independent_counts(dims, data):
    specs, spatial, (c_in, c1, c2), fracs = _draw(data, dims)
    model, _ = _stack(dims, c_in, c1, c2, specs, fracs, integer=True)
    x = torch.randn(1, c_in, *spatial)
    sw.profile(model, x)
    rows = sw.cost(model, per_layer=True)
    plain = sw.consolidate(model)
    ops = ModuleProfiler().estimate_ops(plain, x)
    for name, row in rows.items():
        assert float(row["flops"]) == ops[name]["ops"], name
    with FlopCounterMode(display=False) as counter:
        plain(x)
    totals = sw.cost(model)
    assert 2 * float(totals["macs"]) == counter.get_total_flops()
    assert float(totals["flops"]) == sum(ops[name]["ops"] for name in rows)
    assert float(totals["params"]) == sum(p.numel() for p in plain.parameters())


def test_depthwise_cost_follows_its_one_width():
    w = Width(6, init=2.5)
    conv = Conv1d(nn.Conv1d(6, 6, 3, groups=6), in_width=w, out_width=w)
    c = conv.cost(10.0)
    assert float(c["macs"]) == pytest.approx(2.5 * 3 * 10)
    assert float(c["flops"]) == pytest.approx(2 * 2.5 * 3 * 10)
    assert float(c["params"]) == pytest.approx(2.5 * 3 + 2.5)
    c["flops"].backward()
    assert float(w.value.grad) == pytest.approx(2 * 3 * 10)


def test_consolidation_keeps_conv_hyperparameters():
    w = Width(8, init=3.0)
    base = nn.Conv2d(4, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False)
    out = Conv2d(base, out_width=w).consolidated()
    assert type(out) is nn.Conv2d and out.out_channels == 3 and out.in_channels == 4
    assert (out.kernel_size, out.stride, out.padding, out.dilation) == ((3, 2), (2, 1), (1, 0), (1, 2))
    assert out.bias is None
    assert torch.equal(out.weight, base.weight[:3])
    assert base.out_channels == 8 and base.weight.shape[0] == 8


def test_grouped_conv_with_fixed_widths_is_allowed():
    conv = sw.dynamic(nn.Conv1d(8, 8, 3, groups=2))
    assert isinstance(conv, Conv1d) and not conv.depthwise
    x = torch.randn(1, 8, 10)
    assert torch.equal(conv(x), conv.conv(x))


# -- errors ---------------------------------------------------------------------------------------
def test_grouped_conv_with_dynamic_width_is_refused():
    with pytest.raises(SoftWidthError, match=r"Conv1d: grouped conv with 1 < groups=2 < channels cannot have "
                                             r"dynamic channels"):
        Conv1d(nn.Conv1d(8, 8, 3, groups=2), out_width=Width(8))
    with pytest.raises(SoftWidthError, match="groups=4"):
        Conv2d(nn.Conv2d(8, 4, 3, groups=4), in_width=Width(8))


def test_depthwise_needs_the_same_width_in_and_out():
    a, b = Width(6, name="a"), Width(6, name="b")
    with pytest.raises(SoftWidthError, match="depthwise conv .* must consume and produce the same width; "
                                             "got in_width=a, out_width=b"):
        Conv1d(nn.Conv1d(6, 6, 3, groups=6), in_width=a, out_width=b)
    with pytest.raises(SoftWidthError, match="got in_width=6, out_width=b"):
        Conv2d(nn.Conv2d(6, 6, 3, groups=6), out_width=b)


def test_bad_module_and_padding_mode():
    with pytest.raises(SoftWidthError, match="softwidth.layers.Conv1d wraps nn.Conv1d, got Conv2d"):
        Conv1d(nn.Conv2d(2, 2, 1))
    with pytest.raises(SoftWidthError, match="padding_mode='reflect' is not supported"):
        Conv1d(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), out_width=Width(2))
    with pytest.raises(SoftWidthError, match="out_width has max size 5, but the layer has 4"):
        Conv1d(nn.Conv1d(2, 4, 1), out_width=Width(5, name="out_width"))


def test_wrong_rank_or_channels():
    conv = Conv1d(nn.Conv1d(3, 4, 1), out_width=Width(4))
    conv.path = "frontend.conv"
    with pytest.raises(SoftWidthError, match=r"frontend.conv: expected a 3-d \(batched\) or 2-d input, got "
                                             r"shape \(1, 3, 4, 4\)"):
        conv(torch.randn(1, 3, 4, 4))
    with pytest.raises(SoftWidthError, match="frontend.conv: input has 5 features on axis -2"):
        conv(torch.randn(1, 5, 7))
    conv2 = Conv2d(nn.Conv2d(3, 4, 1), out_width=Width(4))
    with pytest.raises(SoftWidthError, match=r"Conv2d: expected a 4-d \(batched\) or 3-d input"):
        conv2(torch.randn(3, 7))
    with pytest.raises(SoftWidthError, match="NaN or inf"):
        conv2(torch.full((1, 3, 2, 2), float("nan")))
