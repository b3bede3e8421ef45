"""Tests of softwidth_studies.vad.models: the CRNN and Transformer VADs, dynamic and fixed."""

from __future__ import annotations

import pytest
import torch

import softwidth as sw
from softwidth.optim import width_modules
from softwidth_studies.vad.models import (
    CHUNK_FRAMES,
    CRNNVAD,
    N_FREQ,
    TransformerVAD,
    build_model,
)
from softwidth_studies.vad.study import model_cost

SMALL = {"crnn": {"conv1": 12, "conv2": 10, "hidden": 8, "bands": 20},
         "transformer": {"bands": 16, "ff1": 24, "ff2": 20}}


def power(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, frames, N_FREQ, generator=torch.Generator().manual_seed(seed)) * 10


def trained(kind: str, dynamic="all") -> torch.nn.Module:
    """A model after a few optimizer steps (BatchNorm statistics and weights away from their init)."""
    torch.manual_seed(0)
    model = build_model(kind, SMALL[kind], dynamic=dynamic)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        model.train()
        loss = model(power(4, 120, seed=step)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("kind", ["crnn", "transformer"])
def test_eval_output_equals_consolidated_at_random_widths(kind):
    model = trained(kind)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        with torch.no_grad():
            for w in width_modules(model):
                w.value.fill_(float(w.min_size + (w.max_size - w.min_size) * torch.rand((), generator=gen)))
        model.eval()
        plain = sw.consolidate(model)
        assert not any(isinstance(m, (sw.Width, sw.layers.DynamicLayer)) for m in plain.modules())
        x = power(2, 237, seed=5)  # not a multiple of the Transformer's 100-frame chunks
        torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=0)
        sizes = {name: w["rounded"] for name, w in sw.widths(model).items()}
        assert model_cost(kind, sizes)["params"] == sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("kind", ["crnn", "transformer"])
def test_cost_is_differentiable_and_every_width_gets_a_gradient(kind):
    model = build_model(kind, SMALL[kind], dynamic="all")
    sw.profile(model, torch.zeros(1, 100, N_FREQ), seconds=1.0)
    sw.flops_per_second(model).backward()
    assert all(float(w.value.grad) > 0 for w in width_modules(model))
    model.zero_grad()
    model.train()
    model(power(2, 100)).square().mean().backward()
    assert all(w.value.grad is not None and float(w.value.grad) != 0 for w in width_modules(model))


def test_crnn_is_causal():
    model = trained("crnn").eval()
    x = power(1, 150)
    y = x.clone()
    y[:, 100:] = torch.rand(1, 50, N_FREQ) * 100
    torch.testing.assert_close(model(x)[:, :100], model(y)[:, :100], atol=0, rtol=0)
    assert not torch.equal(model(x)[:, 100:], model(y)[:, 100:])


def test_transformer_attends_within_chunks_and_masks_the_padding():
    model = trained("transformer").eval()
    x = power(1, CHUNK_FRAMES + 37)
    y = x.clone()
    y[:, CHUNK_FRAMES + 1:] = torch.rand(1, 36, N_FREQ) * 100  # a later chunk
    # the first chunk does not see the second one
    torch.testing.assert_close(model(x)[:, :CHUNK_FRAMES], model(y)[:, :CHUNK_FRAMES], atol=1e-6, rtol=0)
    # within a chunk, context is used: 37 frames alone (a padded, masked chunk) differ from the same frames
    # followed by 63 more
    short = x[:, CHUNK_FRAMES:]
    longer = torch.cat([short, power(1, 63, seed=9)], dim=1)
    assert not torch.allclose(model(short), model(longer)[:, :37])  # context inside a chunk is used
    padded_out = model(short)
    assert padded_out.shape == (1, 37) and torch.isfinite(padded_out).all()


def test_fixed_model_has_the_given_sizes_and_full_dynamic_model_costs_the_same():
    fixed = build_model("crnn", SMALL["crnn"])
    assert not width_modules(fixed)
    plain = sw.consolidate(fixed.eval())
    assert plain.conv1.out_channels == 12 and plain.gru.hidden_size == 8 and plain.mel.bank.shape == (N_FREQ, 20)
    dynamic = build_model("crnn", SMALL["crnn"], dynamic="all")
    sw.profile(dynamic, torch.zeros(1, 100, N_FREQ), seconds=1.0)
    assert float(sw.flops_per_second(dynamic)) == model_cost("crnn", SMALL["crnn"])["flops_per_s"]


def test_only_the_named_widths_are_dynamic():
    model = build_model("transformer", SMALL["transformer"], dynamic="bands")
    assert [w.label for w in width_modules(model)] == ["bands"]
    assert width_modules(model)[0].multiple_of == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "lstm"}, "unknown VAD model"),
    ({"kind": "crnn", "sizes": {"conv3": 4}}, "unknown sizes"),
    ({"kind": "crnn", "dynamic": ("depth",)}, "unknown dynamic"),
    ({"kind": "crnn", "sizes": {"hidden": 0}}, "hidden"),
    ({"kind": "transformer", "sizes": {"bands": 30}}, "multiple of 4"),
])
def test_bad_arguments_raise(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(sw.SoftWidthError, match=match):
        build_model(kind, **kwargs)


@pytest.mark.parametrize("cls", [CRNNVAD, TransformerVAD])
@pytest.mark.parametrize("x", [torch.rand(2, 50, N_FREQ + 1), torch.rand(50, N_FREQ)])
def test_wrong_input_shape_raises(cls, x):
    with pytest.raises(sw.SoftWidthError, match="power spectrum"):
        cls(SMALL[cls.kind])(x)
