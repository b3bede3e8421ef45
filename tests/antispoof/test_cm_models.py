"""The anti-spoofing countermeasures: exact consolidation, differentiable cost, fixed-size twins, errors."""

from __future__ import annotations

import pytest
import torch

from softwidth_studies.antispoof.models import STAGES, build_model
from softwidth.consolidate import consolidate
from softwidth.cost import flops_per_second, params
from softwidth.errors import SoftWidthError
from softwidth.layers import DynamicLayer
from softwidth.optim import width_modules
from softwidth.probe import profile
from softwidth.width import Width

FRAMES, FEATS = 48, 20


def _model(kind: str, dynamic, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(kind, dynamic=dynamic, n_features=FEATS)
    profile(model, torch.zeros(1, FRAMES, FEATS), seconds=0.48)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(3):
            model(torch.randn(4, FRAMES, FEATS) * 2 + 1)
    return model


def _random_widths(model, seed: int) -> dict[str, int]:
    g = torch.Generator().manual_seed(seed)
    for w in width_modules(model):
        with torch.no_grad():
            w.value.fill_(float(w.min_size + (w.max_size - w.min_size) * torch.rand(1, generator=g)))
    return {w.label: w.rounded for w in width_modules(model)}


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
@pytest.mark.parametrize("dynamic", ["all", "B0", "B3"])
def test_eval_equals_consolidated_at_random_widths(kind, dynamic):
    for seed in range(2):
        model = _model(kind, dynamic, seed)
        chosen = _random_widths(model, seed)
        assert any(v < model.sizes[name] for name, v in chosen.items())  # something was really dropped
        model.eval()
        plain = consolidate(model)
        x = torch.randn(5, FRAMES, FEATS)
        with torch.no_grad():
            expected, got = model(x), plain(x)
        assert got.shape == (5,)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert not any(isinstance(m, (DynamicLayer, Width)) for m in plain.modules())


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
def test_cost_is_differentiable_in_every_stage_width(kind):
    model = _model(kind, "all")
    widths = width_modules(model)
    assert len(widths) == 4
    (flops_per_second(model) / 1e6 + params(model) / 1e4).backward()
    for w in widths:
        assert w.value.grad is not None and float(w.value.grad) > 0, w.label


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
def test_fixed_model_of_the_chosen_sizes_has_the_consolidated_shape_and_cost(kind):
    model = _model(kind, "all", seed=3)
    _random_widths(model, 7)
    for w in width_modules(model):  # the differentiable cost equals the static count at integer widths
        with torch.no_grad():
            w.value.fill_(float(w.rounded))
    model.eval()
    plain = consolidate(model)
    sizes = dict(zip(STAGES, _stage_sizes(model)))
    fixed = build_model(kind, sizes, n_features=FEATS).eval()
    profile(fixed, torch.zeros(1, FRAMES, FEATS), seconds=0.48)
    shapes = {k: tuple(v.shape) for k, v in consolidate(fixed).state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert float(flops_per_second(fixed)) == pytest.approx(float(flops_per_second(model).detach()), rel=1e-6)
    assert float(params(fixed)) == pytest.approx(float(params(model).detach()), rel=1e-6)
    assert sum(p.numel() for p in consolidate(fixed).parameters()) > 0


def _stage_sizes(model) -> list[int]:
    return [w.rounded for w in sorted(width_modules(model), key=lambda w: STAGES.index(w.name))]


def test_per_stage_dynamic_only_makes_that_stage_trainable():
    model = build_model("resnet", dynamic="B2", n_features=FEATS)
    assert [w.name for w in width_modules(model)] == ["B2"]
    assert [w.name for w in width_modules(build_model("lcnn", dynamic=("B0", "B1"), n_features=FEATS))] == ["B0", "B1"]


@pytest.mark.parametrize("call, match", [
    (lambda: build_model("vgg"), "unknown anti-spoofing model"),
    (lambda: build_model("resnet", dynamic="B7"), "unknown dynamic widths"),
    (lambda: build_model("resnet", {"B0": 0}), "must be an int"),
    (lambda: build_model("lcnn", {"B4": 8}), "unknown sizes"),
    (lambda: build_model("resnet", n_features=4), "n_features"),
    (lambda: build_model("resnet").__class__(blocks=(1, 2)), "blocks"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(SoftWidthError, match=match):
        call()


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
def test_wrong_input_shape_names_the_model(kind):
    model = build_model(kind, n_features=FEATS)
    with pytest.raises(SoftWidthError, match=f"features \\(batch, frames >= 8, {FEATS}\\)"):
        model(torch.zeros(2, FRAMES, FEATS + 1))
