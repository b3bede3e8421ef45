"""Tests of softwidth.layout: blocks, kept indices, and the gate (noise mix in train, truncation in eval)."""

from __future__ import annotations

import pytest
import torch

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layout import Layout, check_features

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
MIXES = ["ramp", "paper"]


def _widths(mix="ramp", temperature=1.0):
    return (Width(8, init=5.3, mix=mix, temperature=temperature, name="a"),
            Width(6, init=3.6, mix=mix, temperature=temperature, name="b"))


# -- structure ----------------------------------------------------------------------------------------
def test_concat_layout_sizes_and_kept_indices():
    a, b = _widths()
    layout = sw.concat(a, 3, b)
    assert layout.max_size == 17 and layout.rounded == 5 + 3 + 4
    assert layout.widths == (a, b) and layout.is_dynamic
    assert layout.kept_indices().tolist() == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14]
    assert layout.label == "a+3+b" and repr(layout) == "Layout(a+3+b)"
    real = layout.real()
    assert float(real.detach()) == pytest.approx(5.3 + 3 + 3.6, abs=1e-5)
    real.backward()
    assert float(a.value.grad) == 1.0 and float(b.value.grad) == 1.0


def test_repeated_width_and_flattening():
    a, _ = _widths()
    layout = Layout([a, a])
    assert layout.widths == (a,) and layout.max_size == 16
    assert layout.kept_indices().tolist() == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12]
    assert sw.concat(layout, 2).blocks == (a, a, 2)
    assert Layout.of(a).repeat(3).blocks == (a, a, a)
    assert Layout.of(layout) is layout
    fixed = Layout([4, 2])
    assert not fixed.is_dynamic and fixed.real() == 6.0 and fixed.rounded == 6


def test_same_as_compares_width_identity():
    a, b = _widths()
    twin = Width(8, init=5.3, name="a")
    assert sw.concat(a, 2).same_as(sw.concat(a, 2))
    assert not sw.concat(a, 2).same_as(sw.concat(twin, 2))
    assert not sw.concat(a, 2).same_as(sw.concat(a, 3))
    assert not sw.concat(a, b).same_as(Layout.of(a))
    assert not Layout([8]).same_as(Layout.of(a))


@pytest.mark.parametrize("block", [0, -2, True, 2.5, "a", None])
def test_bad_block_raises(block):
    with pytest.raises(SoftWidthError, match="a layout block must be a Width, a Layout or an int >= 1"):
        Layout([Width(4), block])


def test_empty_layout_raises():
    with pytest.raises(SoftWidthError, match="a layout needs at least one block"):
        Layout([])


# -- input checks -----------------------------------------------------------------------------------
def test_check_features_errors_name_the_layer():
    x = torch.randn(2, 5)
    check_features(x, 5, -1, where="fc")  # fine
    with pytest.raises(SoftWidthError, match=r"fc: input has 5 features on axis -1 \(shape \(2, 5\)\), expected 6"):
        check_features(x, 6, -1, where="fc")
    with pytest.raises(SoftWidthError, match=r"fc: input of shape \(2, 5\) has no feature axis 2"):
        check_features(x, 5, 2, where="fc")
    with pytest.raises(SoftWidthError, match=r"fc: input of shape \(\) has no feature axis"):
        check_features(torch.tensor(1.0), 1, -1, where="fc")
    with pytest.raises(SoftWidthError, match="fc: expected a torch.Tensor, got list"):
        check_features([1.0], 1, -1, where="fc")
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[1, 3] = bad
        with pytest.raises(SoftWidthError, match="fc: input features contain NaN or inf"):
            check_features(y, 5, -1, where="fc")


def test_gate_checks_its_input():
    a, b = _widths()
    with pytest.raises(SoftWidthError, match="enc: input has 13 features on axis -1"):
        sw.concat(a, b).gate(torch.randn(2, 13), where="enc")
    with pytest.raises(SoftWidthError, match="NaN or inf"):
        a(torch.full((2, 8), float("nan")))


# -- eval mode ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", MIXES)
def test_eval_gate_is_hard_truncation_without_noise(mix):
    a, b = _widths(mix)
    a.eval(), b.eval()
    layout = sw.concat(a, 3, b)
    x = torch.randn(4, 7, 17)
    y1 = layout.gate(x)
    y2 = layout.gate(x)
    assert torch.equal(y1, y2)
    keep = torch.zeros(17, dtype=torch.bool)
    keep[layout.kept_indices()] = True
    assert torch.equal(y1[..., keep], x[..., keep])
    assert (y1[..., ~keep] == 0).all()
    assert torch.equal(layout.shares(x), keep.float())


def test_fixed_layout_gate_is_identity():
    x = torch.randn(3, 4)
    assert sw.concat(2, 2).gate(x) is x


# -- train mode ------------------------------------------------------------------------------------------
def test_train_gate_matches_documented_formula():
    """y = sqrt(s) x + sqrt(1 - s) * sigma * eps, sigma = population std over all other axes, eps ~ N(0, 1)."""
    a, b = _widths("ramp", temperature=0.8)
    layout = sw.concat(a, 3, b)
    x = torch.randn(5, 17, 6) * 2.0 + 1.0
    torch.manual_seed(123)
    y = layout.gate(x, dim=1)
    torch.manual_seed(123)
    eps = torch.randn_like(x)
    s = layout.shares(x).detach().view(1, 17, 1)
    sigma = x.std(dim=(0, 2), correction=0, keepdim=True)
    expected = s.sqrt() * x + (1 - s).sqrt() * sigma * eps
    assert torch.allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("mix", MIXES)
def test_sigma_is_detached(mix):
    """d y / d x is exactly the signal weight: no gradient flows into x through the noise scale."""
    w = Width(8, init=3.4, mix=mix, temperature=0.1)
    x = torch.randn(16, 8, requires_grad=True)
    r = torch.randn(16, 8)
    torch.manual_seed(0)
    (w(x) * r).sum().backward()
    signal, _ = w._signal_noise_weights()
    assert torch.allclose(x.grad, r * signal.detach(), atol=1e-6)
    assert (x.grad[:, 5:].abs() < 1e-3).all()  # pure-noise features pass (almost) no gradient to x


def test_features_far_below_k_pass_unchanged():
    w = Width(32, init=20.0, temperature=0.01)
    x = torch.randn(8, 32)
    y = w(x)
    assert torch.equal(y[:, :16], x[:, :16])
    assert not torch.equal(y[:, 24:], x[:, 24:])


def test_features_far_above_k_are_noise_with_the_feature_std():
    torch.manual_seed(1)
    w = Width(16, init=4.0, temperature=0.01)
    scale = torch.linspace(0.5, 4.0, 16)
    offset = torch.linspace(-3.0, 3.0, 16)
    x = offset + scale * torch.randn(2048, 4, 16)  # std per feature = scale, mean != 0
    y = w(x)
    far = slice(8, 16)
    std = y[..., far].reshape(-1, 8).std(dim=0)
    assert torch.allclose(std, scale[far], rtol=0.05)  # the std, not the RMS, of the input feature
    assert y[..., far].reshape(-1, 8).mean(dim=0).abs().max() < 0.2  # zero-mean noise
    xc = (x[..., far] - x[..., far].mean((0, 1))).reshape(-1, 8)
    yc = (y[..., far] - y[..., far].mean((0, 1))).reshape(-1, 8)
    corr = (xc * yc).mean(0) / (xc.std(0) * yc.std(0))
    assert corr.abs().max() < 0.05  # carries no information about x


def test_train_gate_is_random_eval_gate_is_not():
    w = Width(8, init=4.5)
    x = torch.randn(4, 8)
    assert not torch.equal(w(x), w(x))
    w.eval()
    assert torch.equal(w(x), w(x))


@pytest.mark.parametrize("mix", MIXES)
def test_task_gradient_reaches_every_width(mix):
    torch.manual_seed(2)
    a, b = _widths(mix)
    layout = sw.concat(a, 3, b)
    x = torch.randn(32, 17)
    target = torch.randn(32, 17)
    loss = (layout.gate(x) - target).square().mean()
    loss.backward()
    for w in (a, b):
        assert w.value.grad is not None
        assert torch.isfinite(w.value.grad) and float(w.value.grad) != 0.0


def test_gate_without_batch_axis_uses_abs():
    """A 1-d input has no other axis to take a std over: sigma is |x| (documented fallback)."""
    w = Width(4, init=1.0, temperature=0.01)
    x = torch.tensor([1.0, -2.0, 3.0, -4.0])
    torch.manual_seed(5)
    y = w(x)
    torch.manual_seed(5)
    eps = torch.randn(4)
    assert torch.allclose(y[1:], x[1:].abs() * eps[1:], atol=1e-5)
