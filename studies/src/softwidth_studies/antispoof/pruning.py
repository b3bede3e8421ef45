"""L1-norm structured pruning of a trained countermeasure: the classic baseline (Li et al. 2017, "Pruning filters
for efficient ConvNets") that the trained stage widths are compared against.

``prune(model, {"B0": 8, "B1": 16, "B2": 24, "B3": 40})`` returns a plain model with exactly the structure and
tensor shapes of ``consolidate(build_model(kind, sizes, dynamic=()).eval())`` (same ``n_features``, and for the
:class:`~softwidth_studies.antispoof.models.ThinResNet` the same ``blocks``), so the pruned model is evaluated,
fine-tuned and costed by the same code as a from-scratch model of those sizes. For every width the channels
whose weights have the largest L1 norm are kept ("independent" pruning: importance is measured on the trained
full-size weights, not after other widths were pruned), most important first (ties: lower index first).

Importance per width (``|W[o]|_1`` = sum of absolute values of output channel ``o``'s filter, full size):

- ThinResNet stage ``B_s`` (the residual stream of the stage: one index set, because the residual ``Add`` sums
  channel ``o`` of every writer): ``sum |W[o]|_1`` over every conv that WRITES the stream, i.e. the stem
  (``B0`` only), each block's ``conv2`` and the projection shortcut of the stage's first block (``s > 0``).
  Slices those convs' output filters and their BatchNorms (``stem_bn``, ``bn2``, ``proj.1``: affine parameters
  and running statistics), and the input channels of every conv that READS the stream (the next blocks'
  ``conv1`` and projections) and of the head (``B3``).
- ThinResNet block-inner channels (``conv1`` -> ``bn1`` -> ``conv2``; the same :class:`~softwidth.Width` as the
  stream in the dynamic model, so ``B_s`` of them are kept): a feature space of its own, so each block keeps
  the ``B_s`` filters of largest ``|conv1.weight[o]|_1`` (Li et al.'s criterion on that conv); slices ``conv1``'s
  output filters, ``bn1`` and ``conv2``'s input channels.
- LCNN stage ``B_s`` (MFM output channel ``j = max(y[j], y[C + j])`` of the stage conv with ``2 C`` filters):
  ``|W[j]|_1 + |W[C + j]|_1``; keeps both filter rows ``j`` and ``C + j`` (so the consolidated conv's two
  halves still pair up in the MFM), slices the stage BatchNorm and the next conv's (or the head's) input channels.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from softwidth.consolidate import consolidate
from ..experiments.pruning import check_prune_sizes
from ..experiments.slicing import Index, State, batchnorm_plan, full_size_model, slice_state, top_indices
from .models import LCNN, STAGES, ThinResNet

__all__ = ["prune"]


def prune(model: nn.Module, sizes: Mapping[str, int]) -> nn.Module:
    """Return a plain copy of the trained countermeasure ``model`` pruned by L1 norm to ``sizes`` (eval mode).

    Args:
        model: a trained :class:`~softwidth_studies.antispoof.models.ThinResNet` or
            :class:`~softwidth_studies.antispoof.models.LCNN`: fixed-size (``dynamic=()``), already consolidated, or
            dynamic; a dynamic model is evaluated at full size (every width set to its maximum in a copy). It
            is not modified.
        sizes: target width per stage name (``"B0".."B3"``), each an int in ``[1, full size]``; stages left out
            keep their full size.

    Returns the model of ``consolidate(build_model(kind, sizes, dynamic=()).eval())``'s structure, parameter and
    buffer shapes (on ``model``'s device and dtype) holding the kept slices of the trained tensors; see the
    module docstring for the importance measure. With every size at its full value the result only permutes
    channels, so it computes what ``model`` computes in eval mode.
    """
    target = check_prune_sizes(model, sizes, (ThinResNet, LCNN), package="antispoof")
    full = full_size_model(model)
    state = {name: t.detach() for name, t in full.state_dict().items()}
    if isinstance(model, ThinResNet):
        pruned = _resnet(state, target, model.blocks)
        skeleton = ThinResNet(target, n_features=model.n_features, blocks=model.blocks)
    else:
        pruned = _lcnn(state, target)
        skeleton = LCNN(target, n_features=model.n_features)
    skeleton = consolidate(skeleton.eval())
    like = state["norm0.weight"]
    skeleton.to(device=like.device, dtype=like.dtype)
    skeleton.load_state_dict(pruned, strict=True)
    return skeleton.eval()


def _filters(w: torch.Tensor) -> torch.Tensor:
    """``|W[o]|_1`` per output channel of a conv weight ``(out, in, kh, kw)``."""
    return w.abs().sum((1, 2, 3))


def _resnet(state: State, sizes: Mapping[str, int], blocks: tuple[int, ...]) -> State:
    names = [[f"stages.{s}.{b}" for b in range(blocks[s])] for s in range(len(STAGES))]
    stream = []  # kept stream channels per stage
    for s, stage in enumerate(STAGES):
        importance = _filters(state["stem.weight"]) if s == 0 else 0.0
        for p in names[s]:  # every writer of the stage's residual stream
            importance = importance + _filters(state[f"{p}.conv2.weight"])
            if f"{p}.proj.0.weight" in state:
                importance = importance + _filters(state[f"{p}.proj.0.weight"])
        stream.append(top_indices(importance, sizes[stage]))
    plan: dict[str, tuple[Index, ...]] = {"stem.weight": (stream[0], None), **batchnorm_plan("stem_bn", stream[0]),
                                          "head.weight": (None, stream[-1])}
    reads = stream[0]  # the channels the next block consumes
    for s, stage in enumerate(STAGES):
        for p in names[s]:
            inner = top_indices(_filters(state[f"{p}.conv1.weight"]), sizes[stage])
            plan.update({f"{p}.conv1.weight": (inner, reads), **batchnorm_plan(f"{p}.bn1", inner),
                         f"{p}.conv2.weight": (stream[s], inner), **batchnorm_plan(f"{p}.bn2", stream[s])})
            if f"{p}.proj.0.weight" in state:
                plan.update({f"{p}.proj.0.weight": (stream[s], reads), **batchnorm_plan(f"{p}.proj.1", stream[s])})
            reads = stream[s]
    return slice_state(state, plan)


def _lcnn(state: State, sizes: Mapping[str, int]) -> State:
    plan: dict[str, tuple[Index, ...]] = {}
    reads: Index = None  # the single input channel of the first conv
    for s, stage in enumerate(STAGES):
        w = state[f"convs.{s}.weight"]  # (2 C, C_in, k, k): MFM halves [0, C) and [C, 2 C)
        c = w.shape[0] // 2
        keep = top_indices(_filters(w).view(2, c).sum(0), sizes[stage])
        plan.update({f"convs.{s}.weight": (torch.cat([keep, c + keep]), reads), **batchnorm_plan(f"norms.{s}", keep)})
        reads = keep
    plan["head.weight"] = (None, reads)
    return slice_state(state, plan)
