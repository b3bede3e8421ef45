"""Tests of softwidth.layout: blocks, kept indices, and the gate (noise mix in train, truncation in eval)."""

from __future__ import annotations

import pytest
import torch

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layout import NOISE_CUT, Layout, batch_std, check_features

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
def _documented(layout, temperature):
    """Signal share s and envelope e of every feature of ``layout`` from the module docstring's formulas."""
    s, e = [], []
    for block in layout.blocks:
        if not isinstance(block, Width):
            s.append(torch.ones(block)), e.append(torch.ones(block))
            continue
        k, i = float(block.value.detach()), torch.arange(block.max_size, dtype=torch.float32)
        if block.mix == "paper":
            s.append((k - i).clamp(0.0, 1.0)), e.append((i < k).float())
        else:
            s.append(torch.sigmoid((k - i - 0.5) / temperature)), e.append(torch.sigmoid((k - i) / temperature))
    return torch.cat(s), torch.cat(e)


@pytest.mark.parametrize("mix", MIXES)
def test_train_gate_matches_documented_formula(mix):
    """y = sqrt(s) x + sqrt(e - s) * sigma * eps, sigma = population std over all other axes, eps ~ N(0, 1)."""
    a, b = _widths(mix, temperature=0.8)
    layout = sw.concat(a, 3, b)
    x = torch.randn(400, 17, 50) * 2.0 + 1.0
    torch.manual_seed(123)
    y = layout.gate(x, dim=1)
    s, e = _documented(layout, 0.8)
    s, e = s.view(1, 17, 1), e.view(1, 17, 1)
    sigma = x.std(dim=(0, 2), correction=0, keepdim=True)
    noise = (e - s).sqrt() * sigma
    residual = y - s.sqrt() * x
    on = noise.flatten() / sigma.flatten() > NOISE_CUT
    assert on.any() and not on.all()
    assert torch.equal(residual[:, ~on], torch.zeros_like(residual[:, ~on]))  # no noise where its weight is ~0
    eps = residual[:, on] / noise[:, on]  # the noise draws must be standard normal, one per element
    assert abs(float(eps.mean())) < 0.02 and abs(float(eps.std()) - 1.0) < 0.02
    assert float(eps.view(400, -1, 50).mean(dim=(0, 2)).abs().max()) < 0.05  # per feature too
    assert torch.equal(y[:, 8:11], x[:, 8:11])  # the fixed block passes untouched


@pytest.mark.parametrize("mix", MIXES)
def test_sigma_is_detached(mix):
    """d y / d x is exactly the signal weight: no gradient flows into x through the noise scale."""
    w = Width(8, init=3.4, mix=mix, temperature=0.1)
    x = torch.randn(16, 8, requires_grad=True)
    r = torch.randn(16, 8)
    torch.manual_seed(0)
    (w(x) * r).sum().backward()
    signal, _ = w.mix_weights()
    assert torch.allclose(x.grad, r * signal.detach(), atol=1e-6)
    assert (x.grad[:, 5:].abs() < 1e-3).all()  # features that are off pass (almost) no gradient to x


@pytest.mark.parametrize("mix", MIXES)
def test_features_far_below_k_pass_unchanged(mix):
    torch.manual_seed(0)
    w = Width(32, init=20.0, mix=mix, temperature=0.01)
    x = torch.randn(8, 32)
    y = w(x)
    assert torch.equal(y[:, :16], x[:, :16])


@pytest.mark.parametrize("mix", MIXES)
def test_features_far_above_k_are_zero(mix):
    """Past the envelope features are off, as in the paper: exactly zero, not noise."""
    torch.manual_seed(0)
    w = Width(32, init=20.0, mix=mix, temperature=0.01)
    x = torch.randn(8, 32) * 3.0 + 1.0
    y = w(x)
    assert torch.equal(y[:, 24:], torch.zeros(8, 8))


@pytest.mark.parametrize("mix, k, ramp", [("paper", 4.5, [4]), ("ramp", 8.0, [6, 7, 8, 9, 10])])
def test_features_in_the_ramp_carry_noise_with_the_feature_std(mix, k, ramp):
    """Inside the ramp y - sqrt(s) x is zero-mean noise of std sqrt(e - s) * std(x), independent of x."""
    torch.manual_seed(1)
    w = Width(16, init=k, mix=mix, temperature=1.0)
    scale = torch.linspace(0.5, 4.0, 16)
    offset = torch.linspace(-3.0, 3.0, 16)
    x = offset + scale * torch.randn(2048, 4, 16)  # std per feature = scale, mean != 0
    y = w(x).detach()
    signal, noise = (t.detach() for t in w.mix_weights())
    assert (noise[ramp] > 0.2).all()  # these features really are in the ramp
    residual = (y - signal * x)[..., ramp].reshape(-1, len(ramp))
    std = residual.std(dim=0)
    assert torch.allclose(std, noise[ramp] * scale[ramp], rtol=0.05)  # the std, not the RMS, of the feature
    assert (residual.mean(dim=0).abs() < 0.05 * scale[ramp]).all()  # zero-mean noise
    xc = x[..., ramp].reshape(-1, len(ramp))
    xc = xc - xc.mean(0)
    corr = (xc * (residual - residual.mean(0))).mean(0) / (xc.std(0) * residual.std(0))
    assert corr.abs().max() < 0.05  # the noise carries no information about x


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
    w = Width(4, init=2.5, mix="paper")
    x = torch.tensor([1.0, -2.0, 3.0, -4.0])
    torch.manual_seed(5)
    y = w(x)
    torch.manual_seed(5)
    eps = torch.randn(1)  # only feature 2 has a noise share, so only it draws a random number
    assert torch.equal(y[:2], x[:2])
    assert torch.allclose(y[2], 0.5 ** 0.5 * x[2] + 0.5 ** 0.5 * x[2].abs() * eps[0], atol=1e-5)
    assert float(y[3]) == 0.0


# -- re-gate after a per-feature map (norms, activations) -----------------------------------------------
@pytest.mark.parametrize("mix", MIXES)
def test_regate_scales_by_the_envelope_without_noise(mix):
    a, b = _widths(mix, temperature=0.8)
    layout = sw.concat(a, 3, b)
    x = torch.randn(32, 17, 5)
    y = layout.regate(x, dim=1)
    assert torch.equal(y, layout.regate(x, dim=1))  # deterministic: no noise
    _, e = _documented(layout, 0.8)
    assert torch.allclose(y, x * e.sqrt().view(1, 17, 1), atol=1e-6)
    a.eval(), b.eval()
    assert torch.equal(layout.regate(x, dim=1), layout.gate(x, dim=1))  # eval: the same truncation


def test_regate_after_a_norm_keeps_the_producers_signal_share():
    """Producer gate, a train-mode BatchNorm, then regate: each feature's correlation with the clean signal stays
    sqrt(s / e), the producer's; a second noise mix (gate) lowers it to about s / e."""
    torch.manual_seed(0)
    w = Width(8, init=4.3, temperature=1.0)
    norm = torch.nn.BatchNorm1d(8)
    x = torch.randn(20000, 8) * 2.0 + 1.0
    y = norm(w(x)).detach()
    s, e = (t.detach() for t in (w.shares(), w.envelope().square()))
    ramp = (e > 0.2) & (s / e < 0.9)
    assert ramp.sum() >= 2

    def corr(out):
        xc, oc = x - x.mean(0), out - out.mean(0)
        return (xc * oc).mean(0) / (xc.std(0) * oc.std(0))

    layout = Layout.of(w)
    once = layout.regate(y)
    assert torch.allclose(corr(once)[ramp], (s / e).sqrt()[ramp], atol=0.03)
    assert torch.allclose(once.std(0)[ramp], e.sqrt()[ramp], rtol=0.05)  # back to the producer's envelope
    twice = layout.gate(y)
    assert (corr(twice)[ramp] < (s / e).sqrt()[ramp] - 0.05).all()


def test_regate_follows_the_prefix_the_producer_drew():
    torch.manual_seed(1)
    w = Width(16, init=12.0, temperature=1.0)
    w.set_ordering(1.0)
    y = w(torch.randn(64, 16))
    kept = int((y != 0).any(0).sum())
    assert torch.equal(w.envelope(), (torch.arange(16) < kept).float())
    w.set_ordering(0.0)
    w(torch.randn(64, 16))
    assert 0 < float(w.envelope()[13]) < 1  # the soft ramp again


@pytest.mark.parametrize("shape, dims", [((64, 30, 6), [0, 1]), ((8, 6, 20, 5), [0, 2, 3]), ((500, 6), [0])])
def test_batch_std_matches_torch_std(shape, dims):
    x = torch.randn(shape) * torch.linspace(0.1, 5.0, 6).view([6 if i == (2 if len(shape) == 3 else 1) else 1
                                                              for i in range(len(shape))]) + 3.0
    assert torch.allclose(batch_std(x, dims), x.std(dim=dims, correction=0, keepdim=True), rtol=1e-4)
    far = x + 1e4  # a mean far above the std: the exact fallback
    assert torch.allclose(batch_std(far, dims), far.std(dim=dims, correction=0, keepdim=True), rtol=1e-3)


# -- frozen widths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", MIXES)
def test_frozen_layout_gates_like_eval_in_train_mode(mix):
    a, b = _widths(mix)
    a.freeze_(), b.freeze_()
    layout = sw.concat(a, 3, b)
    x = torch.randn(4, 17, requires_grad=True)
    y = layout.gate(x)
    assert a.training and b.training
    assert torch.equal(y, layout.gate(x))  # no noise
    a.eval(), b.eval()
    assert torch.equal(y, layout.gate(x))  # the eval-mode truncation
    keep = torch.zeros(17, dtype=torch.bool)
    keep[layout.kept_indices()] = True
    assert torch.equal(y[:, keep], x[:, keep]) and (y[:, ~keep] == 0).all()
    a.train(), b.train()
    assert torch.equal(layout.shares(x), keep.float())
    (y * torch.randn(4, 17)).sum().backward()
    assert a.value.grad is None and b.value.grad is None


@pytest.mark.parametrize("mix", MIXES)
def test_frozen_block_next_to_a_learning_width(mix):
    """One frozen width in a train-mode layout: its block is cut hard, the other block keeps the noise mix."""
    torch.manual_seed(3)
    a, b = _widths(mix)
    a.freeze_()
    layout = sw.concat(a, 3, b)
    x = torch.randn(16, 17)
    y1, y2 = layout.gate(x), layout.gate(x)
    assert torch.equal(y1[:, :11], y2[:, :11])  # frozen block and fixed block: deterministic
    assert torch.equal(y1[:, :5], x[:, :5]) and (y1[:, 5:8] == 0).all()
    assert not torch.equal(y1[:, 11:], y2[:, 11:])  # the learning width still injects noise
    target = torch.randn(16, 17)
    (layout.gate(x) - target).square().mean().backward()
    assert a.value.grad is None
    assert b.value.grad is not None and float(b.value.grad) != 0.0
    a.unfreeze_()
    with torch.no_grad():
        a.value.add_(0.3)  # off the integer it was rounded to (where the paper mix has no noise)
    y3, y4 = layout.gate(x), layout.gate(x)
    assert not torch.equal(y3[:, :8], y4[:, :8])  # unfrozen: noise in a's ramp again
