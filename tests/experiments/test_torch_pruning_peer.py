"""Tests of softwidth_studies.experiments.torch_pruning_peer: the GRU pruner and the prune-to-budget loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torch_pruning")

from softwidth.errors import SoftWidthError  # noqa: E402
from softwidth_studies.experiments.torch_pruning_peer import GRUPruner, prune_to_flops  # noqa: E402


def test_pruning_an_isolated_hidden_unit_keeps_the_other_units_outputs():
    torch.manual_seed(0)
    gru = nn.GRU(5, 6, batch_first=True)
    with torch.no_grad():
        gru.weight_hh_l0[:, 2] = 0  # unit 2 feeds no gate of any unit
    x = torch.randn(3, 7, 5)
    before, _ = gru(x)
    GRUPruner().prune_out_channels(gru, [2])
    after, h = gru(x)
    assert gru.hidden_size == 5 and gru.weight_ih_l0.shape == (15, 5) and gru.weight_hh_l0.shape == (15, 5)
    assert h.shape == (1, 3, 5)
    torch.testing.assert_close(after, before[..., [0, 1, 3, 4, 5]])


def test_pruning_an_unused_input_keeps_the_outputs():
    torch.manual_seed(1)
    gru = nn.GRU(5, 4)
    with torch.no_grad():
        gru.weight_ih_l0[:, 1] = 0
    x = torch.randn(7, 2, 5)
    before, _ = gru(x)
    GRUPruner().prune_in_channels(gru, [1])
    after, _ = gru(x[..., [0, 2, 3, 4]])
    assert gru.input_size == 4
    torch.testing.assert_close(after, before)


def test_gru_pruner_refuses_stacked_and_bidirectional_grus():
    with pytest.raises(SoftWidthError, match="single-layer"):
        GRUPruner().prune_out_channels(nn.GRU(3, 3, num_layers=2), [0])
    with pytest.raises(SoftWidthError, match="single-layer"):
        GRUPruner().prune_in_channels(nn.GRU(3, 3, bidirectional=True), [0])


class ConvGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 3, padding=1)
        self.norm = nn.BatchNorm1d(16)
        self.gru = nn.GRU(16, 12, batch_first=True)
        self.head = nn.Linear(12, 1)

    def forward(self, x):  # (B, 4, T) -> (B, T)
        out, _ = self.gru(F.relu(self.norm(self.conv(x))).transpose(1, 2))
        return self.head(out).squeeze(-1)


def macs(m: ConvGRU) -> float:
    c, h = m.conv.out_channels, m.gru.hidden_size
    return 4 * c * 3 + 3 * h * (c + h) + h


@pytest.mark.parametrize("importance", ["taylor", "group_norm"])
def test_prune_to_flops_lands_at_or_below_the_budget_and_the_model_still_runs(importance):
    torch.manual_seed(2)
    model = ConvGRU()
    batches = [(torch.randn(4, 4, 20), torch.rand(4, 20)) for _ in range(2)]
    budget = 0.4 * macs(model)
    info = prune_to_flops(model, batches[0][0][:1], macs, budget, importance=importance,
                          loss=lambda m, b: F.binary_cross_entropy_with_logits(m(b[0]), b[1]), batches=batches)
    assert info["reached"] and info["cost"] == macs(model) <= budget
    assert info["steps"] >= 1 and model.gru.input_size == model.conv.out_channels == model.norm.num_features
    assert model.head.in_features == model.gru.hidden_size and model.head.out_features == 1
    assert model(torch.randn(2, 4, 9)).shape == (2, 9)
    assert not hasattr(model.gru, "forward") or type(model.gru).forward is nn.GRU.forward  # tracing stand-in gone
    assert "forward" not in vars(model.gru)


def test_prune_to_flops_checks_its_arguments():
    model = ConvGRU()
    x = torch.randn(1, 4, 10)
    with pytest.raises(SoftWidthError, match="budget"):
        prune_to_flops(model, x, macs, 0.0, importance="group_norm")
    with pytest.raises(SoftWidthError, match="taylor"):
        prune_to_flops(model, x, macs, 10.0, importance="taylor")
    with pytest.raises(SoftWidthError, match="unknown Torch-Pruning importance"):
        prune_to_flops(model, x, macs, 10.0, importance="hessian-ish")
