"""L1-norm structured pruning of a trained VAD model: the classic baseline (Li et al. 2017, "Pruning filters
for efficient ConvNets") that the trained widths are compared against.

``prune(model, {"bands": 40, "conv1": 32, "conv2": 32, "hidden": 32})`` returns a plain model with exactly the
structure and tensor shapes of ``consolidate(build_model(kind, sizes, dynamic=()).eval())``, so the pruned model
is evaluated, fine-tuned and costed by the same code as a from-scratch model of those sizes. For every width the
features whose weights have the largest L1 norm are kept ("independent" pruning: each width's importance is
measured on the trained full-size weights, not after the other widths were pruned), in order of decreasing
importance (ties: lower index first), so the most important features come first as in a dynamic model.

Importance per width (``|.|_1`` sums absolute values over every named axis; full-size trained weights):

- CRNN ``bands``: band ``i``'s slice of the conv1 weight ``|conv1.weight[:, i, :]|_1``. The kept bands are
  those columns of the trained model's full mel bank (not a ``K``-band bank), with ``norm0`` and conv1's input
  channels sliced to match. The cost is priced as a ``K``-band bank's (the sizes' cost); the full bank's narrower
  filters have fewer nonzeros, so the sparse bank the pruned model runs costs at most that.
- CRNN ``conv1`` / ``conv2``: filter ``o``'s weights ``|conv.weight[o]|_1``; slices the conv's output
  filters and bias, its BatchNorm (affine parameters and running statistics) and the next layer's input
  channels (conv2, resp. the GRU's ``weight_ih`` columns).
- CRNN ``hidden``: unit ``j``'s rows in the three gate blocks (r, z, n) of ``weight_ih`` and ``weight_hh``,
  ``sum_g |weight_ih[g H + j]|_1 + |weight_hh[g H + j]|_1``; slices those rows (and biases) of each gate
  block, the columns of ``weight_hh`` and the head's input columns.
- Transformer ``bands`` (= model width ``d``, the residual stream): dim ``i``'s weights that read or write
  it, ``|local.weight[i]|_1 + |head.weight[:, i]|_1`` plus, per encoder layer, ``|in_proj_weight[:, i]|_1 +
  |out_proj.weight[i]|_1 + |linear1.weight[:, i]|_1 + |linear2.weight[i]|_1``; slices the mel bank columns,
  ``norm0``, the depthwise ``local`` conv, every LayerNorm, those rows/columns and the head's columns.
  The attention's inner dims follow ``d``: each of the 4 heads keeps ``d' / 4`` of its ``d / 4`` dims, those
  with the largest ``|q_j|_1 + |k_j|_1 + |v_j|_1`` over that head's ``in_proj`` rows (per layer); slices the
  ``in_proj`` rows per head and the ``out_proj`` columns. The query rows are scaled by
  ``sqrt(head_dim' / head_dim)`` so that the stock layer's ``1 / sqrt(head_dim')`` score scaling reproduces
  the trained ``1 / sqrt(head_dim)`` (the kept dims' scores keep their trained temperature; 1 at full size).
- Transformer ``ff1`` / ``ff2``: hidden unit ``j``'s ``|linear1.weight[j]|_1``; slices ``linear1`` rows and
  bias and ``linear2`` columns of that layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from softwidth.consolidate import consolidate
from ..experiments.pruning import check_prune_sizes
from ..experiments.slicing import Index, State, batchnorm_plan, full_size_model, slice_state, top_indices
from .models import CRNNVAD, HEADS, TransformerVAD, build_model

__all__ = ["prune"]

def prune(model: nn.Module, sizes: Mapping[str, int]) -> nn.Module:
    """Return a plain copy of the trained VAD ``model`` pruned by L1 norm to ``sizes`` (in eval mode).

    Args:
        model: a trained :class:`~softwidth_studies.vad.models.CRNNVAD` or
            :class:`~softwidth_studies.vad.models.TransformerVAD`: fixed-size (``dynamic=()``), already consolidated,
            or dynamic; a dynamic model is evaluated at full size (every width set to its maximum in a copy).
            It is not modified.
        sizes: target size per width name of the model's class (CRNN: ``bands, conv1, conv2, hidden``;
            Transformer: ``bands`` (a multiple of the 4 heads), ``ff1, ff2``); each an int in
            ``[1, full size]``; names left out keep their full size.

    Returns the model of ``consolidate(build_model(kind, sizes, dynamic=()).eval())``'s structure, parameter
    and buffer shapes (on ``model``'s device and dtype) holding the kept slices of the trained tensors; see
    the module docstring for the importance measure per width. With every size at its full value the result
    only permutes features, so it computes what ``model`` computes in eval mode.
    """
    target = check_prune_sizes(model, sizes, (CRNNVAD, TransformerVAD), package="vad",
                               steps={"bands": HEADS} if getattr(model, "kind", None) == "transformer" else None)
    kind = model.kind
    full = full_size_model(model)
    state = {name: t.detach() for name, t in full.state_dict().items()}
    pruned = _PRUNERS[kind](state, target)
    skeleton = consolidate(build_model(kind, target, dynamic=()).eval())
    like = state["mel.bank"]
    skeleton.to(device=like.device, dtype=like.dtype)
    skeleton.load_state_dict(pruned, strict=True)
    return skeleton.eval()


def _crnn(state: State, sizes: Mapping[str, int]) -> State:
    w1, w2 = state["conv1.weight"], state["conv2.weight"]  # (C1, bands, 3), (C2, C1, 3)
    w_ih, w_hh = state["gru.weight_ih_l0"], state["gru.weight_hh_l0"]  # (3 H, C2), (3 H, H)
    h = w_hh.shape[1]
    bands = top_indices(w1.abs().sum((0, 2)), sizes["bands"])
    c1 = top_indices(w1.abs().sum((1, 2)), sizes["conv1"])
    c2 = top_indices(w2.abs().sum((1, 2)), sizes["conv2"])
    units = top_indices((w_ih.abs().sum(1) + w_hh.abs().sum(1)).view(3, h).sum(0), sizes["hidden"])  # r, z, n blocks
    rows = torch.cat([gate * h + units for gate in range(3)])
    return slice_state(state, {
        "mel.bank": (None, bands), **batchnorm_plan("norm0", bands),
        "conv1.weight": (c1, bands), "conv1.bias": (c1,), **batchnorm_plan("norm1", c1),
        "conv2.weight": (c2, c1), "conv2.bias": (c2,), **batchnorm_plan("norm2", c2),
        "gru.weight_ih_l0": (rows, c2), "gru.weight_hh_l0": (rows, units),
        "gru.bias_ih_l0": (rows,), "gru.bias_hh_l0": (rows,),
        "head.weight": (None, units),
    })


def _transformer(state: State, sizes: Mapping[str, int]) -> State:
    d = state["local.weight"].shape[0]
    layers = ("layer1", "layer2")
    importance = state["local.weight"].abs().sum((1, 2)) + state["head.weight"].abs().sum(0)
    for p in layers:  # every weight that reads (columns) or writes (rows) the residual stream
        importance = (importance + state[f"{p}.self_attn.in_proj_weight"].abs().sum(0)
                      + state[f"{p}.self_attn.out_proj.weight"].abs().sum(1)
                      + state[f"{p}.linear1.weight"].abs().sum(0) + state[f"{p}.linear2.weight"].abs().sum(1))
    keep = top_indices(importance, sizes["bands"])
    plan: dict[str, tuple[Index, ...]] = {
        "mel.bank": (None, keep), **batchnorm_plan("norm0", keep), "local.weight": (keep,), "local.bias": (keep,),
        "head.weight": (None, keep),
    }
    head_dim, kept_dim = d // HEADS, sizes["bands"] // HEADS
    for p, ff in zip(layers, ("ff1", "ff2")):
        w_in = state[f"{p}.self_attn.in_proj_weight"]  # (3 d, d): q, k, v blocks, head h owns rows h*hd + j
        per_dim = w_in.abs().sum(1).view(3, HEADS, head_dim).sum(0)  # (heads, head_dim)
        inner = torch.cat([h * head_dim + top_indices(per_dim[h], kept_dim) for h in range(HEADS)])
        rows = torch.cat([part * d + inner for part in range(3)])
        units = top_indices(state[f"{p}.linear1.weight"].abs().sum(1), sizes[ff])
        plan.update({
            f"{p}.self_attn.in_proj_weight": (rows, keep), f"{p}.self_attn.in_proj_bias": (rows,),
            f"{p}.self_attn.out_proj.weight": (keep, inner), f"{p}.self_attn.out_proj.bias": (keep,),
            f"{p}.linear1.weight": (units, keep), f"{p}.linear1.bias": (units,),
            f"{p}.linear2.weight": (keep, units), f"{p}.linear2.bias": (keep,),
            **{f"{p}.{norm}.{n}": (keep,) for norm in ("norm1", "norm2") for n in ("weight", "bias")},
        })
    out = slice_state(state, plan)
    scale = math.sqrt(kept_dim / head_dim)  # keep the trained score temperature (see the module docstring)
    d_new = sizes["bands"]
    for p in layers:
        for n in ("weight", "bias"):
            out[f"{p}.self_attn.in_proj_{n}"][:d_new] *= scale  # the query block
    return out


_PRUNERS: dict[str, Callable[[State, Mapping[str, int]], State]] = {"crnn": _crnn, "transformer": _transformer}
