"""prune(): L1 structured pruning of the two VAD models to the skeleton of a from-scratch model of those sizes."""

from __future__ import annotations

import pytest
import torch

from softwidth.consolidate import consolidate
from softwidth.errors import SoftWidthError
from softwidth_studies.vad.models import build_model
from softwidth_studies.vad.pruning import prune

FULL = {"crnn": {"bands": 80, "conv1": 64, "conv2": 64, "hidden": 64},
        "transformer": {"bands": 80, "ff1": 160, "ff2": 160}}
SMALL = {"crnn": {"bands": 36, "conv1": 24, "conv2": 40, "hidden": 17},
         "transformer": {"bands": 44, "ff1": 60, "ff2": 33}}


def _power(seed: int, frames: int = 150) -> torch.Tensor:
    return torch.rand(2, frames, 201, generator=torch.Generator().manual_seed(seed)) * 10


def _trained(kind: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A model with non-trivial weights, norm parameters and BatchNorm running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(kind, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(".value"):  # leave the widths at their maximum
                p.add_(0.1 * torch.randn_like(p))
        model.train()
        for step in range(2):  # train-mode forwards update the BatchNorm running statistics
            model(_power(100 + step, frames=120))
    return model.eval()


@pytest.mark.parametrize("kind", ["crnn", "transformer"])
@pytest.mark.parametrize("dynamic", [(), "all"])
def test_full_sizes_only_permute_features(kind, dynamic):
    model = _trained(kind, dynamic=dynamic)
    pruned = prune(model, FULL[kind])
    x = _power(1)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)
    # a real permutation (most important first), so the test exercises the consistency of every slice
    assert not torch.equal(pruned.conv1.weight if kind == "crnn" else pruned.local.weight,
                           consolidate(model).conv1.weight if kind == "crnn" else consolidate(model).local.weight)
    assert not pruned.training


@pytest.mark.parametrize("kind", ["crnn", "transformer"])
def test_smaller_sizes_match_the_skeleton(kind):
    model = _trained(kind, seed=1)
    pruned = prune(model, SMALL[kind])
    skeleton = consolidate(build_model(kind, SMALL[kind]).eval())
    assert str(pruned) == str(skeleton)
    want = {name: t.shape for name, t in skeleton.state_dict().items()}
    assert {name: t.shape for name, t in pruned.state_dict().items()} == want
    assert torch.isfinite(pruned(_power(2))).all()


def _zero(w: torch.Tensor, dim: int, index: torch.Tensor) -> None:
    w.index_fill_(dim, index, 0.0)


def test_crnn_drops_exactly_the_dead_features():
    """Features with zero weights (and no consumer) have zero L1 importance: pruning them changes nothing."""
    model = _trained("crnn", seed=2)
    dead = {name: torch.randperm(size, generator=torch.Generator().manual_seed(i))[:n]
            for i, (name, size, n) in enumerate([("bands", 80, 12), ("conv1", 64, 9), ("conv2", 64, 7),
                                                 ("hidden", 64, 11)])}
    with torch.no_grad():
        _zero(model.conv1.conv.weight, 1, dead["bands"])  # a band only reaches conv1
        _zero(model.conv1.conv.weight, 0, dead["conv1"])
        _zero(model.conv2.conv.weight, 1, dead["conv1"])
        _zero(model.conv2.conv.weight, 0, dead["conv2"])
        _zero(model.gru.rnn.weight_ih_l0, 1, dead["conv2"])
        rows = torch.cat([g * 64 + dead["hidden"] for g in range(3)])  # r, z, n blocks
        for w in (model.gru.rnn.weight_ih_l0, model.gru.rnn.weight_hh_l0):
            _zero(w, 0, rows)
        _zero(model.gru.rnn.weight_hh_l0, 1, dead["hidden"])
        _zero(model.head.linear.weight, 1, dead["hidden"])
    sizes = {name: FULL["crnn"][name] - len(index) for name, index in dead.items()}
    pruned = prune(model, sizes)
    x = _power(3)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)
    # the kept bands are the live columns of the full 80-band bank
    full_bank = consolidate(model).mel.bank
    live = sorted(set(range(80)) - set(dead["bands"].tolist()))
    kept = [int((full_bank - col[:, None]).abs().sum(0).argmin()) for col in pruned.mel.bank.T]
    assert sorted(kept) == live


def test_transformer_keeps_the_top_l1_dims_heads_and_units():
    model = _trained("transformer", seed=3)
    gen = torch.Generator().manual_seed(0)
    dead_d = torch.randperm(80, generator=gen)[:16]
    dead_ff = torch.randperm(160, generator=gen)[:40]
    dead_inner = torch.cat([h * 20 + torch.randperm(20, generator=gen)[:4] for h in range(4)])  # 20 - 16 kept
    with torch.no_grad():
        _zero(model.local.conv.weight, 0, dead_d)
        _zero(model.head.linear.weight, 1, dead_d)
        for layer in (model.layer1.layer, model.layer2.layer):
            _zero(layer.self_attn.in_proj_weight, 1, dead_d)
            _zero(layer.self_attn.out_proj.weight, 0, dead_d)
            _zero(layer.linear1.weight, 1, dead_d)
            _zero(layer.linear2.weight, 0, dead_d)
            _zero(layer.self_attn.in_proj_weight, 0, torch.cat([p * 80 + dead_inner for p in range(3)]))
        _zero(model.layer2.layer.linear1.weight, 0, dead_ff)
    full = consolidate(model)
    pruned = prune(model, {"bands": 64, "ff1": 160, "ff2": 120})

    def values(t: torch.Tensor) -> list[float]:
        return sorted(t.reshape(-1).tolist())

    live_d = torch.tensor(sorted(set(range(80)) - set(dead_d.tolist())))
    assert values(pruned.norm0.running_mean) == values(full.norm0.running_mean[live_d])
    assert values(pruned.layer1.norm2.bias) == values(full.layer1.norm2.bias[live_d])
    live_inner = torch.tensor(sorted(set(range(80)) - set(dead_inner.tolist())))
    for p in ("layer1", "layer2"):  # k and v biases are copied unscaled (the q block is rescaled)
        new, old = getattr(pruned, p).self_attn.in_proj_bias, getattr(full, p).self_attn.in_proj_bias
        assert values(new[64:]) == values(torch.cat([old[80 + live_inner], old[160 + live_inner]]))
        torch.testing.assert_close(values(new[:64]), values(old[live_inner] * (16 / 20) ** 0.5))
    live_ff = torch.tensor(sorted(set(range(160)) - set(dead_ff.tolist())))
    assert values(pruned.layer2.linear1.bias) == values(full.layer2.linear1.bias[live_ff])


@pytest.mark.parametrize("kind, sizes, match", [
    ("crnn", {"channels": 8}, "unknown widths"),
    ("crnn", {"hidden": 65}, "hidden=65"),
    ("crnn", {"conv1": 0}, "conv1=0"),
    ("crnn", {"conv2": 8.0}, "conv2=8.0"),
    ("transformer", {"bands": 42}, "multiple of 4"),
    ("transformer", {"ff1": 161}, "ff1=161"),
    ("transformer", {"hidden": 8}, "unknown widths"),
])
def test_bad_sizes_raise(kind, sizes, match):
    model = build_model(kind).eval()
    with pytest.raises(SoftWidthError, match=match):
        prune(model, sizes)


def test_rejects_other_models():
    with pytest.raises(SoftWidthError, match="CRNNVAD or TransformerVAD"):
        prune(torch.nn.Linear(3, 4), {"bands": 4})
