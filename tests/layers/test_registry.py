"""Tests of softwidth.layers.register: a user's own stock type and width-aware layer, added with one call, go
through dynamic, profile, cost, consolidate and export; registration errors name the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width, export
from softwidth.layers import WRAPPERS, DynamicLayer, Linear, as_layout, kept, register
from softwidth.layers import _registry

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


@pytest.fixture(autouse=True)
def restore_registry():
    """Each test's registrations are undone after it (the registry is process-wide)."""
    saved = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(saved)


class Gain(nn.Module):
    """A user's stock layer: one learned gain per feature of ``(*, features)``; stores its argument."""

    def __init__(self, features: int):
        super().__init__()
        self.features = features
        self.weight = nn.Parameter(torch.randn(features))

    def forward(self, x):
        return x * self.weight


class DynamicGain(DynamicLayer):
    """Width-aware Gain: consumes and produces ``width``; ``C P`` FLOPs, ``C`` params."""

    def __init__(self, gain: Gain, width=None):
        super().__init__()
        self.gain = gain
        self.in_layout = self.out_layout = as_layout(width, gain.features, where=self.where, role="width")
        self.register_widths(width=self.out_layout)

    def forward(self, x):
        return self.out_layout.gate(self.gain(x), -1, where=self.where)

    def cost(self, positions):
        c = self.out_layout.real()
        return {"flops": c * positions, "macs": 0.0, "params": c}

    def consolidated(self):
        keep = self.out_layout.kept_indices()
        out = Gain(len(keep))
        out.weight = nn.Parameter(kept(self.gain.weight, 0, keep))
        return out


def _model(w: Width) -> nn.Sequential:
    return nn.Sequential(sw.dynamic(nn.Linear(4, 8), out_width=w), sw.dynamic(Gain(8), width=w),
                         sw.dynamic(nn.Linear(8, 2), in_width=w))


def test_a_registered_user_layer_goes_through_every_step(tmp_path):
    register(Gain, DynamicGain)
    assert WRAPPERS[Gain] is DynamicGain
    torch.manual_seed(0)
    w = Width(8, init=5.0)
    model = _model(w)
    assert isinstance(model[1], DynamicGain) and model[1].width is w  # register_widths named it after its role
    sw.profile(model, torch.zeros(1, 10, 4))
    row = sw.cost(model, per_layer=True)["1"]
    assert float(row["flops"]) == 50 and float(row["params"]) == 5
    plain = sw.consolidate(model.eval())
    assert type(plain[1]) is Gain and torch.equal(plain[1].weight, model[1].gain.weight[:5])
    x = torch.randn(3, 10, 4)
    torch.testing.assert_close(plain(x), model(x), atol=1e-6, rtol=0)
    sw.profile(plain, x[:1])  # the unwrapped stock Gain is priced by DynamicGain at fixed size
    assert float(sw.cost(plain, per_layer=True)["1"]["flops"]) == 50
    export.save(plain, tmp_path)  # a registered stock type: the generic builder rebuilds it
    assert export.describe(plain)["children"][1][1] == {"type": f"{__name__}.Gain", "args": {"features": 5}}
    assert torch.equal(export.load(tmp_path)(x), plain(x))


def test_registered_types_are_read_only_through_wrappers():
    with pytest.raises(TypeError):
        WRAPPERS[Gain] = DynamicGain  # type: ignore[index]
    assert Gain not in WRAPPERS
    with pytest.raises(SoftWidthError, match="unsupported module Gain; supported: .*; add a width-aware layer "
                                             r"for it with softwidth.layers.register\(stock_type, dynamic_type\)"):
        sw.dynamic(Gain(4), width=Width(4))


def test_built_in_layers_are_registered_through_register():
    assert WRAPPERS[nn.Linear] is Linear and WRAPPERS[nn.GELU] is sw.layers.Elementwise
    with pytest.raises(SoftWidthError, match=r"Linear already has the width-aware layer "
                                             r"softwidth.layers.linear.Linear; pass replace=True"):
        register(nn.Linear, DynamicGain)


def test_duplicates_need_replace_unless_it_is_the_same_layer():
    register(Gain, DynamicGain)
    register(Gain, DynamicGain)  # the same class again: nothing changes

    class Other(DynamicGain):
        pass

    with pytest.raises(SoftWidthError, match=r"^register: Gain already has the width-aware layer "
                                             rf"{__name__}.DynamicGain; pass replace=True to replace it$"):
        register(Gain, Other)
    register(Gain, Other, replace=True)
    assert WRAPPERS[Gain] is Other
    # a class of the same module and name (a reloaded module, a re-run notebook cell) replaces the old one
    redefined = type("Other", (DynamicGain,), {"__module__": Other.__module__, "__qualname__": Other.__qualname__})
    register(Gain, redefined)
    assert WRAPPERS[Gain] is redefined


def test_a_layer_missing_a_required_method_is_refused():
    class NoCost(DynamicLayer):
        def forward(self, x):
            return x

        def consolidated(self):
            return nn.Identity()

    class Nothing(DynamicLayer):
        pass

    with pytest.raises(SoftWidthError, match=r"^register: NoCost does not implement cost; define cost\(\) in "
                                             r"the class$"):
        register(Gain, NoCost)
    with pytest.raises(SoftWidthError, match=r"Nothing does not implement forward, cost, consolidated; define "
                                             r"forward\(\) and cost\(\) and consolidated\(\)"):
        register(Gain, Nothing)
    assert Gain not in WRAPPERS


@pytest.mark.parametrize("stock, layer, message", [
    (int, DynamicGain, r"stock_type must be an nn.Module subclass, got <class 'int'>; pass the stock layer's class"),
    (Gain(3), DynamicGain, r"stock_type must be an nn.Module subclass, got Gain\(\); pass"),
    (DynamicGain, DynamicGain, r"stock_type DynamicGain is already width-aware; pass the stock torch module type"),
    (Gain, Gain, r"dynamic_type must be a subclass of softwidth.layers.DynamicLayer, got <class '.*Gain'>; derive"),
    (Gain, "DynamicGain", r"dynamic_type must be a subclass .*, got 'DynamicGain'"),
])
def test_bad_arguments_are_one_line_errors_naming_the_fix(stock, layer, message):
    with pytest.raises(SoftWidthError, match=message) as info:
        register(stock, layer)
    assert "\n" not in str(info.value) and str(info.value).startswith("register: ")


def test_as_layout_and_kept():
    w = Width(6, name="h")
    assert as_layout(w, 6, where="enc", role="out_width").widths == (w,)
    fixed = as_layout(None, 4, where="enc", role="in_width")
    assert fixed.max_size == 4 and not fixed.is_dynamic
    with pytest.raises(SoftWidthError, match="^enc: in_width h has max size 6, but the layer has 5 features "
                                             "there; make the width's max_size equal 5$"):
        as_layout(w, 5, where="enc", role="in_width")
    weight = torch.arange(12.0, requires_grad=True).view(3, 4)
    out = kept(weight, 1, torch.tensor([0, 2]))
    assert torch.equal(out, torch.tensor([[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]))
    assert not out.requires_grad and out.is_contiguous() and out.data_ptr() != weight.data_ptr()
    assert kept(None, 0, torch.tensor([0])) is None


def test_a_layer_that_cannot_price_its_unwrapped_stock_module_says_how_to_fix_it():
    class NeedsWidth(DynamicGain):
        def __init__(self, gain: Gain, width):  # no default: the probe cannot build it at fixed size
            super().__init__(gain, width)

    register(Gain, NeedsWidth)
    with pytest.raises(SoftWidthError, match=r"^1: NeedsWidth.fixed cannot price the unwrapped Gain \(.*\); give "
                                             r"NeedsWidth's widths defaults of None or override its "
                                             r"fixed\(module, inputs\)$"):
        sw.profile(nn.Sequential(nn.Linear(3, 4), Gain(4)), torch.zeros(1, 3))
