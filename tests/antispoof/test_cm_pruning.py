"""prune(): L1 structured pruning of the two countermeasures to the skeleton of a from-scratch model of those sizes."""

from __future__ import annotations

import pytest
import torch

from softwidth_studies.antispoof.models import STAGES, ThinResNet, build_model
from softwidth_studies.antispoof.pruning import prune
from softwidth.consolidate import consolidate
from softwidth.errors import SoftWidthError

FRAMES, FEATS = 48, 20
SMALL = {"resnet": {"B0": 5, "B1": 19, "B2": 33, "B3": 7}, "lcnn": {"B0": 3, "B1": 20, "B2": 11, "B3": 1}}


def _features(seed: int, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, FRAMES, FEATS, generator=torch.Generator().manual_seed(seed)) * 2 + 1


def _trained(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with non-trivial weights, BatchNorm affine parameters and running statistics, in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(".value"):  # leave the widths at their maximum
                p.add_(0.1 * torch.randn_like(p))
        model.train()
        for step in range(2):  # train-mode forwards update the BatchNorm running statistics
            model(_features(100 + step, batch=4))
    return model.eval()


def _build(kind: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _trained(build_model(kind, n_features=FEATS, **kwargs), seed)


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
@pytest.mark.parametrize("dynamic", [(), "all"])
def test_full_sizes_only_permute_channels(kind, dynamic):
    model = _build(kind, dynamic=dynamic)
    pruned = prune(model, dict(model.sizes))
    x = _features(1)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)
    assert not pruned.training
    # a real permutation, most important first, so the test exercises the consistency of every slice
    first = pruned.stem.weight if kind == "resnet" else pruned.convs[0].weight
    before = consolidate(model).stem.weight if kind == "resnet" else consolidate(model).convs[0].weight
    assert not torch.equal(first, before)
    if kind == "lcnn":
        for conv in pruned.convs:  # MFM pairs (j, C + j) keep their order and decrease in importance
            c = conv.weight.shape[0] // 2
            importance = conv.weight.abs().sum((1, 2, 3)).view(2, c).sum(0)
            assert (importance[:-1] >= importance[1:]).all()
    else:
        def l1(conv: torch.nn.Conv2d) -> torch.Tensor:
            return conv.weight.abs().sum((1, 2, 3))

        for writers in (l1(pruned.stem) + l1(pruned.stages[0][0].conv2),  # every writer of a stage's stream
                        l1(pruned.stages[2][0].conv2) + l1(pruned.stages[2][0].proj[0])):
            assert (writers[:-1] >= writers[1:] - 1e-6).all()


@pytest.mark.parametrize("kind", ["resnet", "lcnn"])
def test_smaller_sizes_match_the_skeleton(kind):
    model = _build(kind, seed=1, dynamic=("B1", "B3"))
    pruned = prune(model, SMALL[kind])
    skeleton = consolidate(build_model(kind, SMALL[kind], n_features=FEATS).eval())
    assert str(pruned) == str(skeleton)
    want = {name: t.shape for name, t in skeleton.state_dict().items()}
    assert {name: t.shape for name, t in pruned.state_dict().items()} == want
    out = pruned(_features(2))
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert prune(model, {"B2": 4}).head.in_features == model.sizes["B3"]  # names left out keep their size


def _zero(w: torch.Tensor, dim: int, index: torch.Tensor) -> None:
    w.index_fill_(dim, index, 0.0)


def _dead(sizes: dict[str, int], seed: int, fraction: float = 0.3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: torch.randperm(n, generator=g)[:max(1, int(fraction * n))] for s, n in sizes.items()}


def _live(n: int, dead: torch.Tensor) -> torch.Tensor:
    return torch.tensor(sorted(set(range(n)) - set(dead.tolist())))


def _values(t: torch.Tensor) -> list[float]:
    return sorted(t.reshape(-1).tolist())


def test_resnet_drops_exactly_the_dead_channels():
    """Stream channels with zero writers and readers, and block-inner channels with zero conv1 filters and conv2
    inputs, have zero L1 importance: dropping them changes nothing. Two blocks in stage 0 (blocks=)."""
    torch.manual_seed(2)
    model = _trained(ThinResNet(n_features=FEATS, blocks=(2, 1, 1, 1)), seed=2)
    dead = _dead(model.sizes, seed=0)
    blocks = [(s, block) for s, stage in enumerate(STAGES) for block in model.stages[s]]
    inner = {id(block): torch.randperm(model.sizes[STAGES[s]], generator=torch.Generator().manual_seed(10 + i))[
        :len(dead[STAGES[s]])] for i, (s, block) in enumerate(blocks)}  # as many, other indices than the stream
    with torch.no_grad():
        _zero(model.stem.conv.weight, 0, dead["B0"])
        reads = dead["B0"]
        for s, block in blocks:
            mine = dead[STAGES[s]]
            _zero(block.conv1.conv.weight, 1, reads)
            _zero(block.conv1.conv.weight, 0, inner[id(block)])
            _zero(block.conv2.conv.weight, 1, inner[id(block)])
            _zero(block.conv2.conv.weight, 0, mine)
            if block.proj is not None:
                _zero(block.proj[0].conv.weight, 1, reads)
                _zero(block.proj[0].conv.weight, 0, mine)
            reads = mine
        _zero(model.head.linear.weight, 1, dead["B3"])
    sizes = {name: model.sizes[name] - len(index) for name, index in dead.items()}
    pruned = prune(model, sizes)
    x = _features(3)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)
    full = consolidate(model)
    for s, b in ((0, 0), (0, 1), (2, 0)):  # the kept channels are the live ones, stream and inner
        n, new, old = model.sizes[STAGES[s]], pruned.stages[s][b], full.stages[s][b]
        assert _values(new.bn2.running_mean) == _values(old.bn2.running_mean[_live(n, dead[STAGES[s]])])
        assert _values(new.bn1.running_var) == _values(old.bn1.running_var[_live(n, inner[id(model.stages[s][b])])])
    assert _values(pruned.stem_bn.bias) == _values(full.stem_bn.bias[_live(16, dead["B0"])])
    assert _values(pruned.stages[3][0].proj[1].weight) == _values(full.stages[3][0].proj[1].weight[
        _live(128, dead["B3"])])


def test_lcnn_drops_exactly_the_dead_mfm_channels():
    """An MFM channel j is dead when both filter rows j and C + j and the next layer's column j are zero."""
    model = _build("lcnn", seed=3)
    dead = _dead(model.sizes, seed=1)
    with torch.no_grad():
        for s, stage in enumerate(STAGES):
            c = model.sizes[stage]
            _zero(model.convs[s].conv.weight, 0, torch.cat([dead[stage], c + dead[stage]]))
            reader = model.convs[s + 1].conv.weight if s < 3 else model.head.linear.weight
            _zero(reader, 1, dead[stage])
        # half-dead channel: row j of B1 is zero but row C + j is not, so it still counts and is kept
        half = _live(24, dead["B1"])[-1]  # the last one: ties with the dead channels would drop it
        model.convs[1].conv.weight[half] = 0.0
    sizes = {name: model.sizes[name] - len(index) for name, index in dead.items()}
    pruned = prune(model, sizes)
    x = _features(4)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)
    full = consolidate(model)
    for s, stage in enumerate(STAGES):
        live = _live(model.sizes[stage], dead[stage])
        assert _values(pruned.norms[s].running_mean) == _values(full.norms[s].running_mean[live])
    # the surviving conv rows are the live rows of both halves, still paired for the MFM
    c = 24
    live = _live(c, dead["B1"])
    full_in = _live(16, dead["B0"])
    # compare rows as sorted values: the kept input channels (live B0) are permuted too
    new = pruned.convs[1].weight.flatten(1).sort(1).values
    rows = torch.cat([live, c + live])
    old = full.convs[1].weight[rows][:, full_in].flatten(1).sort(1).values
    match = [int((old - row).abs().sum(1).argmin()) for row in new]
    assert all(torch.equal(new[i], old[j]) for i, j in enumerate(match))
    source, k = [int(rows[j]) for j in match], len(live)
    assert sorted(source[:k]) == live.tolist() and [j - c for j in source[k:]] == source[:k]


@pytest.mark.parametrize("kind, sizes, match", [
    ("resnet", {"B4": 8}, "unknown widths"),
    ("resnet", {"B0": 17}, "B0=17"),
    ("lcnn", {"B1": 0}, "B1=0"),
    ("lcnn", {"B2": 8.0}, "B2=8.0"),
    ("resnet", {"B3": True}, "B3=True"),
    ("lcnn", [("B0", 4)], "must be a mapping"),
])
def test_bad_sizes_raise(kind, sizes, match):
    model = build_model(kind, n_features=FEATS).eval()
    with pytest.raises(SoftWidthError, match=match):
        prune(model, sizes)


def test_rejects_other_models():
    with pytest.raises(SoftWidthError, match="ThinResNet or LCNN"):
        prune(torch.nn.Linear(3, 4), {"B0": 4})
