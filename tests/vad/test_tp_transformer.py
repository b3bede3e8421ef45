"""Tests of softwidth_studies.vad.torch_pruning_peer: Torch-Pruning on the consolidated Transformer VAD."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_pruning")

from softwidth.consolidate import consolidate  # noqa: E402
from softwidth_studies.vad.models import TransformerVAD, build_model  # noqa: E402
from softwidth_studies.vad.study import VadStudyConfig, allocation_space, model_cost  # noqa: E402
from softwidth_studies.vad.torch_pruning_peer import _pruned_view, _TransformerView, tp_prune  # noqa: E402
from vad_test_models import with_batch_statistics  # noqa: E402

SIZES = {"bands": 16, "ff1": 16, "ff2": 16}
HEADS = 4


def trained_like(sizes=SIZES):
    return with_batch_statistics("transformer", sizes)


def cost(sizes):
    return model_cost("transformer", sizes)["flops_per_s"]


def batches():
    torch.manual_seed(1)
    return [(torch.rand(2, 130, 201), torch.rand(2, 130) > 0.5)]  # 130 frames: two chunks, the last one masked


# 60 % of the FLOP/s: out of reach at bands 12 whatever ff1, ff2 (cost({12, 1, 1}) > budget), so d must shrink
BUDGET = 0.6 * cost(SIZES)


@pytest.mark.parametrize("frames", [100, 150])
def test_the_view_computes_what_the_consolidated_transformer_computes(frames):
    plain = trained_like()
    power = torch.rand(2, frames, 201)
    torch.testing.assert_close(_TransformerView(plain)(power), plain(power))
    torch.testing.assert_close(_TransformerView(plain).to_plain()(power), plain(power))


@pytest.mark.parametrize("importance", ["taylor", "group_norm"])
def test_pruning_lands_on_the_budget_with_whole_heads_and_copies_the_view_back_exactly(importance):
    plain = trained_like()
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    view, info = _pruned_view(plain, BUDGET, batches(), importance, cost)
    pruned = view.to_plain()  # what tp_prune returns
    sizes = info["sizes"]
    assert info["reached"] and info["flops_per_s"] == cost(sizes) <= BUDGET
    assert sizes["bands"] < SIZES["bands"] and sizes["bands"] % HEADS == 0
    assert type(pruned) is TransformerVAD and not pruned.training
    d = sizes["bands"]
    assert pruned.norm0.num_features == pruned.local.out_channels == pruned.head.in_features == d
    for layer, ff in ((pruned.layer1, sizes["ff1"]), (pruned.layer2, sizes["ff2"])):
        attention = layer.self_attn
        assert attention.embed_dim == d and attention.num_heads == HEADS and attention.head_dim * HEADS == d
        assert layer.linear1.out_features == layer.linear2.in_features == ff
    # a plain model of its sizes loads its state dict (strict) and computes the same
    reference = consolidate(build_model("transformer", sizes).eval())
    reference.load_state_dict(pruned.state_dict(), strict=True)
    view.eval()
    for frames in (100, 170):
        power = torch.rand(3, frames, 201)
        expected = view(power)
        torch.testing.assert_close(pruned(power), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(reference(power), expected, atol=1e-5, rtol=0)
    # each head lost the same dimensions: the kept bands sit at the same offsets in each head's block
    bank, kept_bank = before["mel.bank"], pruned.state_dict()["mel.bank"]
    kept = [next(i for i in range(bank.shape[1]) if torch.equal(bank[:, i], kept_bank[:, j]))
            for j in range(d)]
    block = SIZES["bands"] // HEADS
    offsets = [sorted(i % block for i in kept if i // block == h) for h in range(HEADS)]
    assert all(o == offsets[0] for o in offsets) and len(offsets[0]) == d // HEADS
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())  # the input is not modified


def test_tp_prune_returns_the_copied_back_view():
    plain = trained_like()
    pruned, info = tp_prune(plain, BUDGET, batches(), "group_norm", cost)
    view, expected = _pruned_view(plain, BUDGET, batches(), "group_norm", cost)
    assert info == expected
    reference = view.to_plain().state_dict()
    assert pruned.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in pruned.state_dict().items())


def test_the_studys_smallest_target_is_reached_from_the_studys_sizes():
    config = VadStudyConfig()
    full = allocation_space("transformer", config)[0]
    budget = min(config.targets) * cost(full)
    _, info = _pruned_view(trained_like(full), budget, batches(), "group_norm", cost)
    assert info["reached"] and info["flops_per_s"] <= budget and info["sizes"]["bands"] % HEADS == 0
