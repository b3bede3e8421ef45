"""Torch-Pruning's global structured pruning of a trained VAD to a FLOP/s budget (the studies' library peer).

:func:`tp_prune` hands Torch-Pruning an equivalent, traceable view of the consolidated model: the mel filter bank
as a bias-free ``nn.Linear(201, bands)`` holding the dense bank (so Torch-Pruning can prune bands as the output
channels of a linear layer, coupled with everything that reads them), then the model's own modules. The pruned
view is copied back into ``consolidate(build_model(kind, sizes))``, whose sparse bank holds the kept columns of
the trained bank (as :func:`softwidth_studies.vad.pruning.prune` does), priced as that many bands.

- CRNN: the model's own BatchNorms, convolutions, GRU (pruned with
  :class:`~softwidth_studies.experiments.torch_pruning_peer.GRUPruner`) and head (never pruned: one output).
  Every width (``bands, conv1, conv2, hidden``) is prunable.
- Transformer: the model's own ``norm0``, depthwise ``local`` convolution, both ``nn.TransformerEncoderLayer``
  and head, run by :class:`~softwidth_studies.vad.models.TransformerVAD`'s own ``forward`` (1 s chunks, padding
  mask). Every width (``bands, ff1, ff2``) is prunable. The model width ``bands`` is one coupled group (bank
  outputs, ``norm0``, ``local``, both layers' attention, LayerNorms and residual stream, the head's inputs);
  each attention is given to Torch-Pruning as ``num_heads={attention: 4}``, which makes the group's channels 4
  equal blocks (the heads): every step removes the same offsets from each block, ranked by their importance
  averaged over the blocks, so each head loses the same dimensions, the 4 heads stay and ``bands`` stays a multiple
  of 4 (``prune_num_heads`` stays off: the model has 4 heads at every size). Torch-Pruning's attention pruner
  removes a residual channel together with the same index of the query, key and value projections and of the
  output projection's inputs. Global pruning ranks the model width as ``bands / 4`` entries (one per offset)
  beside ``ff1 + ff2`` feed-forward entries, and its schedule counts entries, so the feed-forward units make up
  most of it: from the study's sizes (80, 128, 128) to 12.5 % of the FLOP/s, the default schedule (up to 95 %
  of the entries) ends with both feed-forward widths near 1 and the model width too wide (``group_norm``: 28
  bands, 4.2 MFLOP/s for a 3.2 MFLOP/s budget). The Transformer's schedule therefore runs to every entry
  (Torch-Pruning never empties a layer); the loop stops at the budget as for the CRNN. A step removes whole
  blocks of 4 model-width channels, so it can land well below the budget.
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
from .models import HEADS, N_FREQ, TransformerVAD, build_model

__all__ = ["tp_prune"]


class _LinearLogMel(nn.Module):
    """The consolidated mel bank and log as ``log(power @ bank + eps)``, the bank a bias-free linear layer."""

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        bank = mel.state_dict()["bank"]  # (201, bands), the dense bank the sparse one is built from
        self.bank = nn.Linear(bank.shape[0], bank.shape[1], bias=False)
        self.bank.weight.data.copy_(bank.T)
        with torch.no_grad():  # the graph's offset: log(0 @ bank + eps) = log(eps), read from what it computes
            eps = float(torch.exp(mel(torch.zeros(1, 1, bank.shape[0], dtype=bank.dtype)))[0, 0, 0])
        self.log_eps = float(f"{eps:.5g}")  # exp(log(eps)) in float32 is eps to 6 digits

    def forward(self, power: torch.Tensor) -> torch.Tensor:  # (B, T, 201) -> (B, T, bands)
        return torch.log(self.bank(power) + self.log_eps)


class _View(nn.Module):
    """A consolidated VAD with its mel bank as a linear layer (``mel.bank``); the model's other modules as they are."""

    kind: str
    modules_kept: tuple[str, ...]

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        self.mel = _LinearLogMel(plain.mel)
        for name in self.modules_kept:
            setattr(self, name, getattr(plain, name))

    def sizes(self) -> dict[str, int]:
        raise NotImplementedError

    def to_plain(self) -> nn.Module:
        """``consolidate(build_model(kind, sizes))`` holding this view's weights (strict state-dict load)."""
        plain = consolidate(build_model(self.kind, self.sizes(), dynamic=()).eval())
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("mel.")}
        state["mel.bank"] = self.mel.bank.weight.detach().T.contiguous()  # the load re-derives the sparse bank
        plain.load_state_dict(state, strict=True)
        return plain.eval()


class _CRNNView(_View):
    """The consolidated CRNN: ``forward(power (B, T, 201)) -> (B, T)``."""

    kind = "crnn"
    modules_kept = ("norm0", "conv1", "norm1", "act1", "conv2", "norm2", "act2", "gru", "head")

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.norm0(self.mel(power).transpose(1, 2)), (4, 0))
        x = self.act2(self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x))))))
        out, _ = self.gru(x.transpose(1, 2))
        return self.head(out).squeeze(-1)

    def sizes(self) -> dict[str, int]:
        return {"bands": self.mel.bank.out_features, "conv1": self.conv1.out_channels,
                "conv2": self.conv2.out_channels, "hidden": self.gru.hidden_size}


class _TransformerView(_View):
    """The consolidated Transformer VAD: ``forward(power (B, T, 201)) -> (B, T)``."""

    kind = "transformer"
    modules_kept = ("norm0", "local", "layer1", "layer2", "head")
    # the model's own forward (chunking, padding mask) on the same attribute names: nothing to keep in step
    forward = TransformerVAD.forward

    def sizes(self) -> dict[str, int]:
        return {"bands": self.mel.bank.out_features, "ff1": self.layer1.linear1.out_features,
                "ff2": self.layer2.linear1.out_features}


_VIEWS: dict[str, type[_View]] = {"crnn": _CRNNView, "transformer": _TransformerView}


def _loss(model: nn.Module, batch) -> torch.Tensor:
    power, labels = batch
    return F.binary_cross_entropy_with_logits(model(power), labels.float())


def tp_prune(model: nn.Module, budget_flops: float, batches: Iterable, importance: str,
             cost: Callable[[dict[str, int]], float]) -> tuple[nn.Module, dict]:
    """Prune a trained, consolidated CRNN or Transformer VAD to ``budget_flops`` FLOP/s with Torch-Pruning.

    Args:
        model: the consolidated :class:`~softwidth_studies.vad.models.CRNNVAD` or
            :class:`~softwidth_studies.vad.models.TransformerVAD` (not modified).
        budget_flops: the FLOP/s to reach (at or below), as :func:`softwidth_studies.vad.study.model_cost` counts.
        batches: a re-iterable of ``(power (B, T, 201), labels (B, T))`` training batches (Taylor importance).
        importance: ``"taylor"`` or ``"group_norm"``.
        cost: ``cost(sizes) -> FLOP/s`` of a model of this kind at those sizes (the study's ``model_cost``).

    Returns ``(plain model in eval mode, info)`` with ``info = {"sizes", "importance", "steps", "flops_per_s",
    "reached"}``; the Transformer's ``sizes["bands"]`` is a multiple of its 4 heads.
    """
    view, info = _pruned_view(model, budget_flops, batches, importance, cost)
    return view.to_plain(), info


def _pruned_view(model: nn.Module, budget_flops: float, batches: Iterable, importance: str,
                 cost: Callable[[dict[str, int]], float]) -> tuple[_View, dict]:
    """:func:`tp_prune` before the copy back: the pruned view (in the mode the loop left it) and the info."""
    kind = getattr(model, "kind", None)
    if kind not in _VIEWS:
        raise SoftWidthError(f"the Torch-Pruning peer prunes the VAD models {sorted(_VIEWS)}, not "
                             f"{kind or type(model).__name__!r}")
    view = _VIEWS[kind](copy.deepcopy(model))
    batches = list(batches)
    example = batches[0][0][:1] if batches else torch.rand(1, 100, N_FREQ)
    options = {}
    if kind == "transformer":
        # the model width's channels as 4 blocks, one per head, pruned at the same offsets; the schedule runs to
        # every channel, so that the budget is reached (module docstring)
        options = {"num_heads": {layer.self_attn: HEADS for layer in (view.layer1, view.layer2)}, "max_ratio": 1.0}
    info = prune_to_flops(view, example, lambda m: cost(m.sizes()), budget_flops, importance=importance,
                          loss=_loss, batches=batches, ignored_layers=[view.head], **options)
    return view, {"sizes": view.sizes(), "importance": importance, "steps": info["steps"],
                  "flops_per_s": info["cost"], "reached": info["reached"]}
