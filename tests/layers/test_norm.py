"""Tests of softwidth.layers.BatchNorm (1d/2d) and LayerNorm."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import BatchNorm, Conv1d, Conv2d, LayerNorm, Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


def _set(width: Width, frac: float, integer: bool) -> None:
    value = 1.0 + frac * (width.max_size - 1)
    width.value.data.fill_(float(round(value)) if integer else value)


def _bn_model(kind, c_in, c, frac, affine, track, integer=False):
    """producer (-> w) -> BatchNorm(w) -> ReLU -> consumer (w -> 2), for input kinds
    "1d-flat" (N, C), "1d" (N, C, L), "2d" (N, C, H, W)."""
    w = Width(c)
    _set(w, frac, integer)
    norm = (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(c, affine=affine, track_running_stats=track)
    if kind == "1d-flat":
        first, last = Linear(nn.Linear(c_in, c), out_width=w), Linear(nn.Linear(c, 2), in_width=w)
    elif kind == "1d":
        first, last = Conv1d(nn.Conv1d(c_in, c, 3), out_width=w), Conv1d(nn.Conv1d(c, 2, 1), in_width=w)
    else:
        first, last = Conv2d(nn.Conv2d(c_in, c, 3), out_width=w), Conv2d(nn.Conv2d(c, 2, 1), in_width=w)
    return nn.Sequential(first, BatchNorm(norm, w), nn.ReLU(), last), w


def _input(kind, batch, c_in, size):
    return torch.randn(batch, c_in, *{"1d-flat": (), "1d": (size,), "2d": (size, size + 1)}[kind])


KINDS = ["1d-flat", "1d", "2d"]


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(c_in=st.integers(1, 4), c=st.integers(1, 10), frac=st.floats(0, 1), affine=st.booleans(),
       track=st.booleans(), size=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_batchnorm_eval_equals_consolidated(kind, c_in, c, frac, affine, track, size, seed):
    torch.manual_seed(seed)
    model, w = _bn_model(kind, c_in, c, frac, affine, track)
    if affine:  # non-trivial affine parameters
        nn.init.normal_(model[1].norm.weight)
        nn.init.normal_(model[1].norm.bias)
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(_input(kind, 8, c_in, size) * 3.0 + 1.0)
    model.eval()
    x = _input(kind, 5, c_in, size)
    plain = sw.consolidate(model)
    assert type(plain[1]) is type(model[1].norm) and plain[1].num_features == w.rounded
    assert torch.allclose(model(x), plain(x), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("frac", [0.0, 0.3, 0.71, 1.0])
def test_batchnorm_cost_equals_moduleprofiler(kind, affine, frac):
    model, _ = _bn_model(kind, 2, 9, frac, affine, True, integer=True)
    x = _input(kind, 1, 2, 6)
    sw.profile(model, x)
    rows = sw.cost(model, per_layer=True)
    plain = sw.consolidate(model)
    ops = ModuleProfiler().estimate_ops(plain, x)
    for name in ("0", "1", "2", "3"):
        assert float(rows[name]["flops"]) == ops[name]["ops"], name
    assert float(sw.params(model)) == sum(p.numel() for p in plain.parameters())
    assert float(rows["1"]["params"]) == sum(p.numel() for p in plain[1].parameters())


def test_batchnorm_consolidation_slices_running_stats_and_keeps_mode():
    w = Width(6, init=4.0)
    layer = BatchNorm(nn.BatchNorm1d(6, momentum=0.3, eps=1e-3), w)
    layer.train()
    for _ in range(4):
        layer(torch.randn(10, 6) * 2 + 1)
    out = layer.consolidated()
    assert type(out) is nn.BatchNorm1d and out.training
    assert (out.eps, out.momentum, out.num_features) == (1e-3, 0.3, 4)
    assert torch.equal(out.running_mean, layer.norm.running_mean[:4])
    assert torch.equal(out.running_var, layer.norm.running_var[:4])
    assert int(out.num_batches_tracked) == 4
    assert layer.norm.running_mean.shape == (6,)
    layer.eval()
    assert not layer.consolidated().training


# -- LayerNorm ---------------------------------------------------------------------------------------
LN_VARIANTS = [dict(), dict(elementwise_affine=False), dict(bias=False)]


def _ln_model(c_in, c, frac, variant, integer=False):
    w = Width(c)
    _set(w, frac, integer)
    return nn.Sequential(
        Linear(nn.Linear(c_in, c), out_width=w),
        LayerNorm(nn.LayerNorm(c, **variant), w),
        nn.GELU(),
        Linear(nn.Linear(c, 3), in_width=w),
    ), w


@pytest.mark.parametrize("variant", LN_VARIANTS)
@SETTINGS
@given(c_in=st.integers(1, 5), c=st.integers(1, 12), frac=st.floats(0, 1), frames=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_layernorm_eval_equals_consolidated(variant, c_in, c, frac, frames, seed):
    torch.manual_seed(seed)
    model, w = _ln_model(c_in, c, frac, variant)
    if model[1].norm.weight is not None:
        nn.init.normal_(model[1].norm.weight)
    if model[1].norm.bias is not None:
        nn.init.normal_(model[1].norm.bias)
    model.eval()
    x = torch.randn(3, frames, c_in)
    plain = sw.consolidate(model)
    assert type(plain[1]) is nn.LayerNorm and plain[1].normalized_shape == (w.rounded,)
    assert torch.allclose(model(x), plain(x), atol=1e-5)


@pytest.mark.parametrize("variant", LN_VARIANTS)
@pytest.mark.parametrize("frac", [0.0, 0.45, 1.0])
def test_layernorm_cost_equals_moduleprofiler(variant, frac):
    model, _ = _ln_model(3, 10, frac, variant, integer=True)
    x = torch.randn(1, 7, 3)
    sw.profile(model, x)
    rows = sw.cost(model, per_layer=True)
    plain = sw.consolidate(model)
    ops = ModuleProfiler().estimate_ops(plain, x)
    assert float(rows["1"]["flops"]) == ops["1"]["ops"]
    assert float(rows["0"]["flops"]) == ops["0"]["ops"]
    assert float(rows["1"]["params"]) == sum(p.numel() for p in plain[1].parameters())


def test_layernorm_train_mode_uses_share_weighted_statistics():
    w = Width(6, init=3.7, temperature=0.5)
    norm = nn.LayerNorm(6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    layer = LayerNorm(norm, w)
    x = torch.randn(4, 6)
    torch.manual_seed(7)
    y = layer(x)
    s = w.shares().detach()
    mean = (x * s).sum(-1, keepdim=True) / s.sum()
    var = ((x - mean) ** 2 * s).sum(-1, keepdim=True) / s.sum()
    manual = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    torch.manual_seed(7)
    expected = layer.out_layout.gate(manual.detach(), -1)
    assert torch.allclose(y, expected, atol=1e-5)


def test_layernorm_at_full_width_is_stock_layernorm():
    norm = nn.LayerNorm(5)
    layer = LayerNorm(norm, Width(5, mix="paper")).eval()
    x = torch.randn(3, 5)
    assert torch.allclose(layer(x), norm(x), atol=1e-6)


# -- errors ---------------------------------------------------------------------------------------
def test_norm_errors():
    with pytest.raises(SoftWidthError, match="BatchNorm wraps nn.BatchNorm1d/2d, got LayerNorm"):
        BatchNorm(nn.LayerNorm(4), Width(4))
    with pytest.raises(SoftWidthError, match="LayerNorm wraps an nn.LayerNorm over one"):
        LayerNorm(nn.LayerNorm([3, 4]), Width(4))
    with pytest.raises(SoftWidthError, match="LayerNorm wraps an nn.LayerNorm"):
        LayerNorm(nn.BatchNorm1d(4), Width(4))
    with pytest.raises(SoftWidthError, match="width c has max size 5, but the layer has 4"):
        BatchNorm(nn.BatchNorm2d(4), Width(5, name="c"))
    bn = BatchNorm(nn.BatchNorm1d(4), Width(4))
    with pytest.raises(SoftWidthError, match="BatchNorm: input has 3 features on axis 1"):
        bn(torch.randn(2, 3, 5))
    ln = LayerNorm(nn.LayerNorm(4), Width(4))
    with pytest.raises(SoftWidthError, match="LayerNorm: input has 3 features on axis -1"):
        ln(torch.randn(2, 3))
    with pytest.raises(SoftWidthError, match="NaN or inf"):
        ln(torch.full((2, 4), float("inf")))
