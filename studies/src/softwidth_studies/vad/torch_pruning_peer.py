"""Torch-Pruning's global structured pruning of a trained CRNN VAD to a FLOP/s budget (the studies' library peer).

:func:`tp_prune` hands Torch-Pruning an equivalent, traceable view of the consolidated CRNN: the mel filter bank as
a bias-free ``nn.Linear(201, bands)`` holding the dense bank (so Torch-Pruning can prune bands as the output
channels of a linear layer, coupled with ``norm0`` and ``conv1``'s inputs), then the model's own BatchNorms,
convolutions, GRU (pruned with :class:`~softwidth_studies.experiments.torch_pruning_peer.GRUPruner`) and head
(never pruned: one output). Every width of the CRNN (``bands, conv1, conv2, hidden``) is prunable; the pruned
view is copied back into ``consolidate(build_model("crnn", sizes))``, whose sparse bank holds the kept columns of
the trained bank (as :func:`softwidth_studies.vad.pruning.prune` does), priced as that many bands.

The Transformer VAD is not pruned by this peer (its chunked attention is not wired to Torch-Pruning here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from softwidth.consolidate import consolidate
from softwidth.errors import SoftWidthError
from ..experiments.torch_pruning_peer import prune_to_flops
from .models import build_model

__all__ = ["tp_prune"]


class _CRNNView(nn.Module):
    """The consolidated CRNN with its mel bank as a linear layer: ``forward(power (B, T, 201)) -> (B, T)``."""

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        bank = plain.state_dict()["mel.bank"]  # (201, bands)
        self.bank = nn.Linear(bank.shape[0], bank.shape[1], bias=False)
        self.bank.weight.data.copy_(bank.T)
        self.log_eps = float(plain.mel.log_eps) if hasattr(plain.mel, "log_eps") else 1e-6
        for name in ("norm0", "conv1", "norm1", "act1", "conv2", "norm2", "act2", "gru", "head"):
            setattr(self, name, getattr(plain, name))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        x = self.norm0(torch.log(self.bank(power) + self.log_eps).transpose(1, 2))
        x = F.pad(x, (4, 0))
        x = self.act2(self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x))))))
        out, _ = self.gru(x.transpose(1, 2))
        return self.head(out).squeeze(-1)

    def sizes(self) -> dict[str, int]:
        return {"bands": self.bank.out_features, "conv1": self.conv1.out_channels,
                "conv2": self.conv2.out_channels, "hidden": self.gru.hidden_size}

    def to_plain(self) -> nn.Module:
        plain = consolidate(build_model("crnn", self.sizes(), dynamic=()).eval())
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("bank.")}
        state["mel.bank"] = self.bank.weight.detach().T.contiguous()
        plain.load_state_dict(state, strict=True)
        return plain.eval()


def _loss(model: nn.Module, batch) -> torch.Tensor:
    power, labels = batch
    return F.binary_cross_entropy_with_logits(model(power), labels.float())


def tp_prune(model: nn.Module, budget_flops: float, batches: Iterable, importance: str,
             cost: Callable[[dict[str, int]], float]) -> tuple[nn.Module, dict]:
    """Prune a trained, consolidated CRNN VAD to ``budget_flops`` FLOP/s with Torch-Pruning.

    Args:
        model: the consolidated :class:`~softwidth_studies.vad.models.CRNNVAD` (not modified).
        budget_flops: the FLOP/s to reach (at or below), as :func:`softwidth_studies.vad.study.model_cost` counts.
        batches: a re-iterable of ``(power (B, T, 201), labels (B, T))`` training batches (Taylor importance).
        importance: ``"taylor"`` or ``"group_norm"``.
        cost: ``cost(sizes) -> FLOP/s`` of a CRNN of those sizes (the study's ``model_cost``).

    Returns ``(plain model in eval mode, info)`` with ``info = {"sizes", "importance", "steps", "flops_per_s",
    "reached"}``.
    """
    if getattr(model, "kind", None) != "crnn":
        raise SoftWidthError(f"the Torch-Pruning peer prunes the CRNN VAD, not "
                             f"{getattr(model, 'kind', type(model).__name__)!r}")
    view = _CRNNView(copy.deepcopy(model))
    batches = list(batches)
    example = batches[0][0][:1] if batches else torch.rand(1, 100, 201)
    info = prune_to_flops(view, example, lambda m: cost(m.sizes()), budget_flops, importance=importance,
                          loss=_loss, batches=batches, ignored_layers=[view.head])
    return view.to_plain(), {"sizes": view.sizes(), "importance": importance, "steps": info["steps"],
                             "flops_per_s": info["cost"], "reached": info["reached"]}
