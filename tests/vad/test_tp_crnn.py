"""Tests of softwidth_studies.vad.torch_pruning_peer: Torch-Pruning on the consolidated CRNN VAD."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_pruning")

from softwidth.consolidate import consolidate  # noqa: E402
from softwidth.errors import SoftWidthError  # noqa: E402
from softwidth_studies.vad.models import build_model  # noqa: E402
from softwidth_studies.vad.study import model_cost  # noqa: E402
from softwidth_studies.vad.torch_pruning_peer import _CRNNView, tp_prune  # noqa: E402
from vad_test_models import with_batch_statistics  # noqa: E402

SIZES = {"bands": 24, "conv1": 12, "conv2": 12, "hidden": 10}


def trained_like(kind="crnn", sizes=SIZES):
    return with_batch_statistics(kind, sizes)


def cost(sizes):
    return model_cost("crnn", sizes)["flops_per_s"]


def test_the_view_computes_what_the_consolidated_crnn_computes():
    plain = trained_like()
    power = torch.rand(2, 33, 201)
    torch.testing.assert_close(_CRNNView(plain)(power), plain(power))
    torch.testing.assert_close(_CRNNView(plain).to_plain()(power), plain(power))


@pytest.mark.parametrize("importance", ["taylor", "group_norm"])
def test_tp_prune_lands_on_the_budget_and_returns_a_crnn_of_those_sizes(importance):
    plain = trained_like()
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    batches = [(torch.rand(4, 40, 201), torch.rand(4, 40) > 0.5) for _ in range(2)]
    budget = 0.3 * cost(SIZES)
    pruned, info = tp_prune(plain, budget, batches, importance, cost)
    assert info["reached"] and info["flops_per_s"] == cost(info["sizes"]) <= budget
    assert info["sizes"] == {"bands": pruned.norm0.num_features, "conv1": pruned.conv1.out_channels,
                             "conv2": pruned.conv2.out_channels, "hidden": pruned.gru.hidden_size}
    reference = consolidate(build_model("crnn", info["sizes"]).eval())
    assert {k: v.shape for k, v in pruned.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    power = torch.rand(1, 25, 201)
    assert torch.isfinite(pruned(power)).all() and pruned(power).shape == (1, 25)
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())  # the input is not modified


def test_tp_prune_refuses_a_model_that_is_not_a_vad_model():
    with pytest.raises(SoftWidthError, match="VAD models"):
        tp_prune(torch.nn.Linear(201, 1), 1e5, [], "group_norm", cost)
