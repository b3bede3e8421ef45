"""Tests of softwidth.width: bounds, rounding, projection, share profiles and their gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import softwidth as sw
from softwidth import SoftWidthError, Width

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


# -- construction and validation ------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_size": 0}, "max_size must be an int >= 1"),
        ({"max_size": 8.0}, "max_size must be an int >= 1"),
        ({"max_size": True}, "max_size must be an int >= 1"),
        ({"max_size": 8, "min_size": 9}, r"bounds out of order.*min_size=9.*max_size=8"),
        ({"max_size": 8, "min_size": 0.5}, r"bounds out of order or outside \[1, max_size\]: min_size=0.5"),
        ({"max_size": 8, "min_size": float("nan")}, "bounds out of order"),
        ({"max_size": 8, "kappa_min": 0.0}, r"kappa_min must be in \(0, 1\]"),
        ({"max_size": 8, "kappa_min": 1.5}, r"kappa_min must be in \(0, 1\]"),
        ({"max_size": 8, "kappa_min": -0.1}, r"kappa_min must be in \(0, 1\]"),
        ({"max_size": 8, "kappa_min": float("nan")}, r"kappa_min must be in \(0, 1\]"),
        ({"max_size": 8, "kappa_min": 0.5, "min_size": 2}, "give min_size or kappa_min, not both"),
        ({"max_size": 8, "init": 9.0}, r"init=9.0 is outside \[min_size, max_size\]"),
        ({"max_size": 8, "min_size": 4, "init": 3.0}, r"init=3.0 is outside \[min_size, max_size\] = \[4"),
        ({"max_size": 8, "init": float("inf")}, "init=inf is outside"),
        ({"max_size": 8, "mix": "linear"}, r"mix must be one of \('ramp', 'paper'\), got 'linear'"),
        ({"max_size": 8, "temperature": 0.0}, "temperature must be a finite number > 0"),
        ({"max_size": 8, "temperature": -1.0}, "temperature must be a finite number > 0"),
        ({"max_size": 8, "temperature": float("inf")}, "temperature must be a finite number > 0"),
        ({"max_size": 8, "multiple_of": 0}, "multiple_of must be an int >= 1"),
        ({"max_size": 10, "multiple_of": 4}, "max_size=10 is not a multiple of multiple_of=4"),
    ],
)
def test_bad_arguments_raise_named_error(kwargs, match):
    max_size = kwargs.pop("max_size")
    with pytest.raises(SoftWidthError, match="enc.width: " + match):
        Width(max_size, name="enc.width", **kwargs)


def test_error_without_name_names_the_class():
    with pytest.raises(SoftWidthError, match="^Width: mix must be one of"):
        Width(8, mix="Paper")


def test_set_temperature_validates_and_is_saved():
    w = Width(8, name="w")
    w.set_temperature(0.25)
    assert float(w.temperature) == 0.25
    assert "temperature" in w.state_dict()
    with pytest.raises(SoftWidthError, match="w: temperature must be a finite number > 0, got nan"):
        w.set_temperature(float("nan"))
    assert float(w.temperature) == 0.25


def test_defaults():
    w = Width(16)
    assert w.min_size == 1.0 and w.max_size == 16 and w.mix == "ramp"
    assert float(w.value.detach()) == 16.0 and float(w.temperature) == 1.0
    assert isinstance(w.value, torch.nn.Parameter) and w.value.requires_grad
    assert [n for n, _ in w.named_parameters()] == ["value"]


@pytest.mark.parametrize("kappa, expected", [(0.125, 8.0), (1.0, 64.0), (0.25, 16.0), (0.001, 1.0)])
def test_kappa_min_sets_min_size(kappa, expected):
    w = Width(64, kappa_min=kappa)
    assert w.min_size == expected
    w.value.data.fill_(0.5)
    assert float(w.real().detach()) == expected  # projected onto the kappa bound before use


# -- rounding ---------------------------------------------------------------------------------------
@SETTINGS
@given(
    q=st.sampled_from([1, 2, 4, 8]),
    blocks=st.integers(1, 8),
    lo_frac=st.floats(0.0, 1.0),
    v_frac=st.floats(0.0, 1.0),
)
def test_rounded_respects_multiple_of_and_bounds(q, blocks, lo_frac, v_frac):
    max_size = q * blocks
    min_size = 1.0 + lo_frac * (max_size - 1)
    value = min_size + v_frac * (max_size - min_size)
    w = Width(max_size, min_size=min_size, init=value, multiple_of=q)
    r = w.rounded
    assert isinstance(r, int)
    assert r % q == 0
    assert min_size - 1e-6 <= r <= max_size
    nearest = q * math.floor(float(w.value.detach()) / q + 0.5)
    lowest = max(q, q * math.ceil(min_size / q - 1e-9))  # smallest multiple of q that is >= min_size
    assert r == max(nearest, lowest)  # the nearest multiple (round half up), clamped up into bounds


@pytest.mark.parametrize("value, expected", [(3.49, 3), (3.5, 4), (3.51, 4), (1.0, 1), (8.0, 8), (7.6, 8)])
def test_rounded_is_round_half_up(value, expected):
    assert Width(8, init=value).rounded == expected


# -- projection -------------------------------------------------------------------------------------
def test_project_only_when_outside():
    w = Width(8, min_size=2.0, init=5.3)
    before = w.value.detach().clone()
    w.project_()
    assert torch.equal(w.value.detach(), before)
    w.value.data.fill_(11.0)
    w.project_()
    assert float(w.value.detach()) == 8.0
    w.value.data.fill_(-3.0)
    w.project_()
    assert float(w.value.detach()) == 2.0


def test_project_refuses_nan():
    w = Width(8, name="fc.out_width")
    w.value.data.fill_(float("nan"))
    with pytest.raises(SoftWidthError, match="fc.out_width: width became nan"):
        w.project_()


@pytest.mark.parametrize("direction, bound", [(-1.0, 8.0), (1.0, 2.0)])
def test_optimizer_overshoot_is_projected_before_use(direction, bound):
    """A step that pushes K out of bounds is undone before the next use (real, shares, rounded)."""
    w = Width(8, min_size=2.0, init=5.0)
    opt = torch.optim.SGD(w.parameters(), lr=100.0)
    (direction * w.real()).backward()  # gradient descent moves K by -lr * direction
    opt.step()
    assert not 2.0 <= float(w.value.detach()) <= 8.0  # the step really left the bounds
    assert float(w.real().detach()) == bound
    assert float(w.value.detach()) == bound  # in place: the parameter itself is back inside
    w.value.data.fill_(bound - 100.0 * direction)
    assert w.rounded == int(bound)
    w.value.data.fill_(bound - 100.0 * direction)
    w.eval()
    assert float(w.shares().sum()) == bound


# -- shares -----------------------------------------------------------------------------------------
@SETTINGS
@given(max_size=st.integers(1, 24), frac=st.floats(0.0, 1.0))
def test_paper_shares_are_clamped_ramp(max_size, frac):
    k = 1.0 + frac * (max_size - 1)
    w = Width(max_size, init=k, mix="paper")
    i = torch.arange(max_size, dtype=torch.float32)
    assert torch.equal(w.shares(), (w.value.detach() - i).clamp(0.0, 1.0))
    assert float(w.shares().detach().sum()) == pytest.approx(k, abs=1e-5)


@SETTINGS
@given(k=st.floats(12.0, 52.0), temperature=st.floats(0.5, 1.5))
def test_ramp_shares_sum_to_k_away_from_bounds(k, temperature):
    """Away from the bounds (many temperatures from 0 and max_size) the total share is K."""
    w = Width(64, init=k, temperature=temperature)
    s = w.shares().detach()
    assert ((s >= 0) & (s <= 1)).all()
    assert (s[1:] <= s[:-1]).all()  # monotone: earlier features keep more
    assert float(s.sum()) == pytest.approx(k, abs=2e-3)


@pytest.mark.parametrize("k", [1.0, 3.2, 4.6, 5.7, 11.4, 12.0])  # not at a tie (x.5)
def test_ramp_tends_to_eval_mask_as_temperature_vanishes(k):
    w = Width(12, init=k)
    w.eval()
    mask = w.shares()
    assert float(mask.sum()) == w.rounded
    w.train()
    errors = []
    for temperature in (1.0, 0.1, 0.01, 1e-3):
        w.set_temperature(temperature)
        errors.append(float((w.shares().detach() - mask).abs().max()))
    assert errors[-1] < 1e-6
    assert errors == sorted(errors, reverse=True)


def test_eval_shares_are_hard_mask_for_both_mixes():
    for mix in ("ramp", "paper"):
        w = Width(10, init=6.6, mix=mix).eval()
        assert torch.equal(w.shares(), (torch.arange(10) < 7).float())


def _documented_mix(mix, k, index, temperature):
    """Signal share s_i and envelope e_i as the module docstring writes them (independent of the code)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if mix == "paper":
        return (k - index).clamp(0.0, 1.0), (index < k).float()
    return torch.sigmoid((k - index - 0.5) / temperature), torch.sigmoid((k - index) / temperature)


@pytest.mark.parametrize("mix", ["ramp", "paper"])
@pytest.mark.parametrize("k", [1.0, 2.0, 3.3, 5.5, 7.99, 8.0])
def test_mix_weights_follow_share_and_envelope(mix, k):
    """signal^2 == s_i and signal^2 + noise^2 == e_i: features inside the envelope keep their power."""
    w = Width(8, init=k, mix=mix, temperature=0.7)
    signal, noise = w.mix_weights()
    i = torch.arange(8, dtype=torch.float32)
    s, e = _documented_mix(mix, k, i, 0.7)
    assert signal.shape == noise.shape == (8,)
    assert (signal >= 0).all() and (noise >= 0).all()
    assert torch.allclose(signal.square(), s, atol=1e-6)
    assert torch.allclose(signal.square() + noise.square(), e, atol=1e-6)
    assert torch.allclose(signal.square(), w.shares(), atol=1e-6)  # shares() is the signal share
    if mix == "paper":  # off past the boundary feature, power-preserving up to it
        assert torch.equal(e, (i < math.ceil(k)).float())


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_weights_are_exact_far_from_k(mix):
    """Far below K a feature passes (signal 1, noise 0); far above it is off (signal 0, noise 0), exactly."""
    w = Width(16, init=8.0, mix=mix, temperature=0.01)
    signal, noise = w.mix_weights()
    assert torch.equal(signal[:6], torch.ones(6)) and torch.equal(noise[:6], torch.zeros(6))
    assert torch.equal(signal[10:], torch.zeros(6)) and torch.equal(noise[10:], torch.zeros(6))


def test_ramp_noise_sits_in_the_ramp():
    """With the ramp, noise is largest near K and fades out on both sides."""
    w = Width(32, init=16.0, temperature=1.0)
    _, noise = w.mix_weights()
    noise = noise.detach()
    peak = int(noise.argmax())
    assert abs(peak - 16) <= 1
    assert (noise[1 : peak + 1] >= noise[:peak]).all() and (noise[peak + 1 :] <= noise[peak:-1]).all()
    assert float(noise[0]) < 1e-3 and float(noise[-1]) < 1e-3


@pytest.mark.parametrize("mix", ["ramp", "paper"])
@pytest.mark.parametrize("k", [1.0, 1.0 + 1e-6, 2.0 - 1e-6, 2.0, 2.0 + 1e-6, 3.5, 5.0, 6.0 - 1e-6, 6.0])
def test_mix_gradients_are_finite_at_and_near_integers(mix, k):
    torch.manual_seed(0)
    w = Width(6, init=k, mix=mix, temperature=0.5)
    signal, noise = w.mix_weights()
    (signal * torch.randn(6) + noise * torch.randn(6)).sum().backward()
    assert w.value.grad is not None and torch.isfinite(w.value.grad)


@pytest.mark.parametrize("mix", ["ramp", "paper"])
@pytest.mark.parametrize("k", [1.0, 2.5, 3.0, 4.7, 8.0])
def test_mix_weights_at_own_size_equal_default(mix, k):
    """An explicit size=K, index=arange(max_size) gives exactly the default weights and the same gradient."""
    w = Width(8, init=k, mix=mix, temperature=0.6)
    default = w.mix_weights()
    (default[0].sum() + 2 * default[1].sum()).backward()
    grad = w.value.grad.clone()
    w.value.grad = None
    explicit = w.mix_weights(w.real(), torch.arange(8, dtype=torch.float32))
    (explicit[0].sum() + 2 * explicit[1].sum()).backward()
    assert torch.equal(default[0], explicit[0]) and torch.equal(default[1], explicit[1])
    assert torch.equal(grad, w.value.grad)


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_mix_weights_at_derived_size(mix):
    """At a derived size (K / heads over a head axis) the mix is that of a width of that size, same temperature."""
    heads, k = 4, 13.0
    w = Width(16, init=k, mix=mix, temperature=0.6, multiple_of=heads)
    size = w.real() / heads
    signal, noise = w.mix_weights(size, torch.arange(4, dtype=torch.float32))
    ref = Width(4, init=k / heads, mix=mix, temperature=0.6).mix_weights()
    assert torch.allclose(signal, ref[0], atol=1e-6) and torch.allclose(noise, ref[1], atol=1e-6)
    signal.sum().backward()
    assert torch.isfinite(w.value.grad) and float(w.value.grad) != 0.0  # flows to K through K / heads


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_gradient_is_alive_at_max_size(mix):
    """At K == max_size the task loss still has a gradient wrt K (the bound is never a dead zone)."""
    torch.manual_seed(0)
    w = Width(6, mix=mix)
    assert float(w.value.detach()) == 6.0
    x = torch.randn(32, 6)
    target = torch.randn(32, 6)
    loss = (w(x) - target).square().mean()
    loss.backward()
    assert torch.isfinite(w.value.grad) and float(w.value.grad) != 0.0


def test_forward_gates_the_given_axis():
    w = Width(5, init=2.0).eval()
    x = torch.randn(3, 5, 4)
    y = w(x, dim=1)
    assert torch.equal(y[:, :2], x[:, :2]) and torch.equal(y[:, 2:], torch.zeros(3, 3, 4))
    with pytest.raises(SoftWidthError, match="has 4 features on axis -1"):
        w(x)


def test_repr_mentions_state():
    text = repr(Width(8, init=4.25, multiple_of=2, name="stage1", mix="paper"))
    for part in ("value=4.250", "max_size=8", "mix='paper'", "multiple_of=2", "name='stage1'"):
        assert part in text
    assert Width(8).label == "Width(max_size=8)"
    assert sw.Width is Width


# -- ordering pressure (nested dropout) -------------------------------------------------------------
def test_set_ordering_validates():
    w = Width(8, name="w")
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(SoftWidthError, match="w: ordering probability must be in \\[0, 1\\]"):
            w.set_ordering(bad)
    assert w.ordering == 0.0


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_ordering_one_gives_a_hard_prefix_within_bounds(mix):
    """Nested dropout: signal 1 on a random prefix, 0 above it, and no noise anywhere (dropped = zero)."""
    torch.manual_seed(0)
    w = Width(16, min_size=4.0, init=10.3, mix=mix)
    w.set_ordering(1.0)
    cuts = set()
    for _ in range(30):
        signal, noise = w.mix_weights()
        assert torch.equal(noise, torch.zeros(16))
        n = int(signal.sum())
        assert torch.equal(signal, (torch.arange(16) < n).float())
        assert 4 <= n <= 16
        cuts.add(n)
    assert len(cuts) > 3  # the prefix length is random, whatever K is
    x = torch.randn(8, 16)
    y = w(x)
    n = int((y != 0).any(0).sum())
    assert torch.equal(y[:, :n], x[:, :n]) and torch.equal(y[:, n:], torch.zeros(8, 16 - n))
    w.set_ordering(0.0)
    signal, noise = w.mix_weights()
    assert 0 < float(signal[10]) < 1 and float(noise[10]) > 0  # back to the mix around K


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_explicit_size_ignores_ordering(mix):
    """A derived size/index evaluates the mix itself; ordering only replaces the width's own call."""
    torch.manual_seed(0)
    w = Width(8, init=5.5, mix=mix)
    w.set_ordering(1.0)
    signal, noise = w.mix_weights(w.real(), torch.arange(8, dtype=torch.float32))
    s, e = _documented_mix(mix, 5.5, torch.arange(8, dtype=torch.float32), 1.0)
    assert torch.allclose(signal.square(), s, atol=1e-6)
    assert torch.allclose(signal.square() + noise.square(), e, atol=1e-6)


# -- freezing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_freeze_rounds_stops_gradient_and_gates_hard(mix):
    torch.manual_seed(0)
    w = Width(12, min_size=2.0, init=6.6, mix=mix, multiple_of=2)
    w.set_ordering(1.0)  # a frozen width ignores ordering pressure too
    w.freeze_()
    assert w.frozen and w.training
    assert float(w.value.detach()) == 6.0 and w.rounded == 6
    assert not w.value.requires_grad
    mask = (torch.arange(12) < 6).float()
    assert torch.equal(w.shares(), mask)
    signal, noise = w.mix_weights()
    assert torch.equal(signal, mask) and torch.equal(noise, torch.zeros(12))
    # a derived size (e.g. K / heads) is cut hard as well
    signal, noise = w.mix_weights(w.real() / 2, torch.arange(6, dtype=torch.float32))
    assert torch.equal(signal, (torch.arange(6) < 3).float()) and torch.equal(noise, torch.zeros(6))
    x = torch.randn(5, 12, requires_grad=True)
    y1, y2 = w(x), w(x)
    assert torch.equal(y1, y2)  # deterministic in train mode
    assert torch.equal(y1, w.eval()(x))  # and identical to the eval-mode truncation
    w.train()
    (y1 * torch.randn(5, 12)).sum().backward()
    assert w.value.grad is None and x.grad is not None


@pytest.mark.parametrize("mix", ["ramp", "paper"])
def test_unfreeze_restores_learning_and_noise(mix):
    torch.manual_seed(0)
    w = Width(12, init=6.6, mix=mix, temperature=1.0)
    w.freeze_()
    w.unfreeze_()
    assert not w.frozen and w.value.requires_grad
    assert float(w.value.detach()) == 7.0  # freezing rounded the value; unfreezing learns on from there
    s, _ = _documented_mix(mix, 7.0, torch.arange(12, dtype=torch.float32), 1.0)
    assert torch.allclose(w.shares(), s, atol=1e-6)
    x, target = torch.randn(5, 12), torch.randn(5, 12)
    (w(x) - target).square().mean().backward()
    assert w.value.grad is not None and torch.isfinite(w.value.grad) and float(w.value.grad) != 0.0
    with torch.no_grad():  # a learning step moves K off the integer (where the paper mix has no noise)
        w.value.sub_(0.3 * w.value.grad.sign())
    assert not torch.equal(w(x), w(x))  # noise again
