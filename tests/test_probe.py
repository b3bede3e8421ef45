"""Tests of softwidth.probe: positions per layer, width naming, wiring checks, argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Add, BatchNorm, Concat, Conv1d, Linear
from softwidth.probe import Profile

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def _chain(*middle):
    w = Width(8, init=5.0)
    return nn.Sequential(Linear(nn.Linear(4, 8), out_width=w), *middle), w


def test_positions_names_and_record():
    w = Width(6, init=4.0)
    model = nn.Sequential(
        nn.Conv1d(2, 3, 1),  # stock, before any width: priced at fixed size
        Conv1d(nn.Conv1d(3, 6, 3, stride=2), out_width=w),
        nn.ReLU(),
        Conv1d(nn.Conv1d(6, 2, 1), in_width=w),
    )
    x = torch.randn(3, 2, 21)  # batch 3: positions are per example
    record = sw.profile(model, x, seconds=0.5)
    assert isinstance(record, Profile) and model.softwidth_profile is record and record.seconds == 0.5
    table = {e.name: (e.positions, e.dynamic) for e in record.entries}
    assert table == {"0": (21.0, False), "1": (10.0, True), "2": (10.0, True), "3": (10.0, True)}
    assert w.name == "1.out_width"  # named where it is produced, not where it is consumed
    assert model[1].path == "1" and model[1].where == "1"
    # the stock ReLU is priced from the width it consumes
    relu = sw.cost(model, per_layer=True)["2"]["flops"]
    assert float(relu) == 4.0 * 10
    relu.backward()
    assert float(w.value.grad) == 10.0


def test_user_names_are_kept():
    w = Width(8, name="bottleneck")
    model, _ = _chain()
    model[0] = Linear(nn.Linear(4, 8), out_width=w)
    sw.profile(model, torch.randn(1, 4))
    assert w.name == "bottleneck"


def test_probe_runs_in_eval_mode_and_restores_mode():
    w = Width(8, init=5.0)
    model = nn.Sequential(Linear(nn.Linear(4, 8), out_width=w), BatchNorm(nn.BatchNorm1d(8), w))
    model.train()
    stats = model[1].norm.running_mean.clone()
    sw.profile(model, torch.randn(4, 4))
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].norm.running_mean, stats)  # eval: running stats untouched
    model.eval()
    sw.profile(model, torch.randn(4, 4))
    assert not any(m.training for m in model.modules())


def test_tuple_example_and_hooks_removed():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Linear(nn.Linear(3, 5), out_width=Width(5))
            self.b = Linear(nn.Linear(2, 5), out_width=self.a.out_width)
            self.add = Add(self.a.out_width)

        def forward(self, x, y):
            return self.add(self.a(x), self.b(y))

    model = Two()
    sw.profile(model, (torch.randn(1, 7, 3), torch.randn(1, 7, 2)))
    assert {e.name: e.positions for e in model.softwidth_profile.entries} == {"a": 7, "b": 7, "add": 7}
    assert all(not m._forward_hooks for m in model.modules())


# -- wiring errors ------------------------------------------------------------------------------------
def test_consumer_must_share_the_producer_width():
    w1, w2 = Width(8, name="enc.w1"), Width(8, name="enc.w2")
    model = nn.Sequential(Linear(nn.Linear(4, 8), out_width=w1), Linear(nn.Linear(8, 2), in_width=w2))
    with pytest.raises(SoftWidthError, match=r"^1: must share a width with its producer: input 0 is gated by "
                                             r"enc.w1, the layer declares enc.w2"):
        sw.profile(model, torch.randn(1, 4))


def test_consumer_with_fixed_input_is_refused():
    model, _ = _chain(Linear(nn.Linear(8, 2)))
    with pytest.raises(SoftWidthError, match=r"1: its input 0 is gated by width 0.out_width but the layer has "
                                             r"a fixed input size; pass in_width=0.out_width"):
        sw.profile(model, torch.randn(1, 4))


def test_stock_linear_fed_by_gated_tensor_is_refused():
    model, _ = _chain(nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(SoftWidthError, match=r"2: stock Linear consumes dynamic width 0.out_width but is not "
                                             r"width-aware; wrap it with softwidth.dynamic"):
        sw.profile(model, torch.randn(1, 4))


@pytest.mark.parametrize("act", [nn.Sigmoid, nn.Softplus])
def test_stock_activation_nonzero_at_zero_is_refused(act):
    model, _ = _chain(act(), Linear(nn.Linear(8, 2), in_width=Width(8)))
    with pytest.raises(SoftWidthError, match=rf"1: {act.__name__}\(0\) != 0, so features dropped by width "
                                             r"0.out_width would leak; wrap it"):
        sw.profile(model, torch.randn(1, 4))


def test_stock_per_channel_prelu_is_refused_or_sliced():
    """A stock PReLU(C) after a dynamic width must be refused by profile (wrap it) or sliced by consolidate."""
    model, w = _chain(nn.PReLU(8))
    model.append(Linear(nn.Linear(8, 2), in_width=w))
    x = torch.randn(2, 4)
    try:
        sw.profile(model, x)
    except SoftWidthError as err:
        assert "PReLU" in str(err) and "wrap" in str(err)
        return
    model.eval()
    assert torch.allclose(model(x), sw.consolidate(model)(x), atol=1e-5)


def test_residual_add_must_share_the_width():
    a, b = Width(5, name="a"), Width(5, name="b")

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(nn.Linear(3, 5), out_width=b)
            self.fc2 = Linear(nn.Linear(5, 5), in_width=b, out_width=b)
            self.add = Add(a)

        def forward(self, x):
            h = self.fc1(x)
            return self.add(h, self.fc2(h))

    with pytest.raises(SoftWidthError, match="add: must share a width with its producer: input 0 is gated by b, "
                                             "the layer declares a"):
        sw.profile(Res(), torch.randn(1, 3))


def test_concat_parts_must_match_their_inputs():
    a, b = Width(4, name="a"), Width(4, name="b")

    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fa = Linear(nn.Linear(2, 4), out_width=a)
            self.fb = Linear(nn.Linear(2, 4), out_width=b)
            self.cat = Concat(a, b)

        def forward(self, x):
            return self.cat(self.fb(x), self.fa(x))  # swapped order

    with pytest.raises(SoftWidthError, match="cat: must share a width .* input 0 is gated by b, the layer "
                                             "declares a"):
        sw.profile(Cat(), torch.randn(1, 2))


def test_unpriced_module_with_parameters_warns():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x * self.gain

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    with pytest.warns(UserWarning, match=r"1 \(Scale\) is not priced"):
        sw.profile(model, torch.randn(1, 3))


# -- argument errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [0, 0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_seconds_must_be_positive(seconds):
    model, _ = _chain()
    with pytest.raises(SoftWidthError, match="profile: seconds must be a finite number > 0"):
        sw.profile(model, torch.randn(1, 4), seconds=seconds)


def test_bad_model_or_example():
    model, _ = _chain()
    with pytest.raises(SoftWidthError, match="profile: model must be an nn.Module, got function"):
        sw.profile(lambda x: x, torch.randn(1, 4))
    with pytest.raises(SoftWidthError, match="profile: example must be a batched tensor"):
        sw.profile(model, torch.tensor(1.0))
    with pytest.raises(SoftWidthError, match="profile: example must be a batched tensor"):
        sw.profile(model, ("a", 1))
    with pytest.raises(SoftWidthError, match="0: input has 5 features on axis -1"):
        sw.profile(model, torch.randn(1, 5))


def test_a_layer_declares_each_inputs_layout_with_input_layout():
    """A user layer with two inputs governed by different widths: profile checks each against its producer."""
    a, b = Width(4, name="a"), Width(3, name="b")

    class Outer(sw.layers.DynamicLayer):  # the outer product of two gated vectors, (N, A) x (N, B) -> (N, A * B)
        def __init__(self):
            super().__init__()
            self.parts = (sw.layers.as_layout(a, 4, where=self.where, role="a"),
                          sw.layers.as_layout(b, 3, where=self.where, role="b"))
            self.in_layout, self.out_layout = None, sw.layers.as_layout(None, 12, where=self.where, role="out")
            self.register_widths(a=self.parts[0], b=self.parts[1])

        def forward(self, x, y):
            return (x[:, :, None] * y[:, None, :]).flatten(1)

        def input_layout(self, index):
            return self.parts[index]

        def cost(self, positions):
            return {"flops": 12.0 * positions, "macs": 0.0, "params": 0.0}

        def consolidated(self):
            return nn.Identity()

    class Net(nn.Module):
        def __init__(self, swap):
            super().__init__()
            self.fa, self.fb = Linear(nn.Linear(2, 4), out_width=a), Linear(nn.Linear(2, 3), out_width=b)
            self.outer, self.swap = Outer(), swap

        def forward(self, x):
            return self.outer(self.fb(x), self.fa(x)) if self.swap else self.outer(self.fa(x), self.fb(x))

    record = sw.profile(Net(swap=False), torch.randn(1, 2))
    assert [e.name for e in record.entries] == ["fa", "fb", "outer"]
    with pytest.raises(SoftWidthError, match="outer: must share a width with its producer: input 0 is gated by b, "
                                             "the layer declares a"):
        sw.profile(Net(swap=True), torch.randn(1, 2))
