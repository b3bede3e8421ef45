"""WidthSGD: steps keep the widths' relative gradient sizes, one shared scale, bounds of the API."""

import pytest
import torch

import softwidth as sw
from softwidth.errors import SoftWidthError


def _widths(*sizes):
    return [sw.Width(n, init=n / 2) for n in sizes]


def test_step_is_proportional_to_the_gradient_in_range_units():
    a, b = _widths(10, 40)
    opt = sw.WidthSGD([a, b], lr=0.1, momentum=0.0)
    a.value.grad, b.value.grad = torch.tensor(0.3), torch.tensor(0.05)
    before = float(a.value.detach()), float(b.value.detach())
    opt.step()
    da, db = before[0] - float(a.value.detach()), before[1] - float(b.value.detach())
    # in fractions of the range the gradients are 0.3 * 10 = 3 and 0.05 * 40 = 2: the steps keep that ratio
    assert (da / 10) / (db / 40) == pytest.approx(3 / 2, rel=1e-6)
    # one shared root mean square: the first step moves the range-scaled gradient by lr / rms
    rms = ((3.0**2 + 2.0**2) / 2) ** 0.5
    assert da / 10 == pytest.approx(0.1 * 3 / rms, rel=1e-6)


def test_adam_would_equalise_the_steps_but_widthsgd_does_not():
    a, b = _widths(16, 16)
    ours = sw.WidthSGD([a, b], lr=0.05)
    c, d = _widths(16, 16)
    adam = torch.optim.Adam([c.value, d.value], lr=0.05 * 16)
    for _ in range(5):
        for w, g in ((a, 1.0), (b, 0.1), (c, 1.0), (d, 0.1)):
            w.value.grad = torch.tensor(g)
        ours.step()
        adam.step()
    moved = [8.0 - float(w.value.detach()) for w in (a, b, c, d)]
    assert moved[0] / moved[1] == pytest.approx(10.0, rel=1e-5)  # follows the gradients
    assert moved[2] / moved[3] == pytest.approx(1.0, rel=1e-3)  # Adam: the same speed for both


def test_widths_without_gradient_are_skipped_and_state_round_trips():
    a, b = _widths(8, 8)
    opt = sw.WidthSGD([a, b], lr=0.1, unit="features")
    a.value.grad = torch.tensor(1.0)
    opt.step()
    assert float(b.value.detach()) == 4.0 and float(a.value.detach()) < 4.0
    state = opt.state_dict()
    other = sw.WidthSGD(_widths(8, 8), lr=0.1, unit="features")
    other.load_state_dict(state)
    assert other.param_groups[0]["t"] == 1 and other.param_groups[0]["v"] == pytest.approx(1.0 - 0.99)
    opt.scale_lr(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr must be"), ({"lr": 0.1, "momentum": 1.0}, "momentum must be"),
    ({"lr": 0.1, "beta2": -0.1}, "beta2 must be"), ({"lr": 0.1, "unit": "flops"}, "unit must be"),
    ({"lr": 0.1, "eps": 0}, "eps must be"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(SoftWidthError, match=message):
        sw.WidthSGD(_widths(4), **kwargs)
    with pytest.raises(SoftWidthError, match="non-empty iterable"):
        sw.WidthSGD([torch.nn.Linear(2, 2)], lr=0.1)
