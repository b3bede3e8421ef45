"""The two countermeasures of the anti-spoofing case study, on a clip's frame features.

Both take features ``(batch, frames, n_features)`` (LFCC or log-mel, :mod:`softwidth_studies.antispoof.data`) and return
one bona fide logit per clip ``(batch,)`` (higher = more likely bona fide). The feature map is treated as an
image ``(batch, 1, n_features, frames)``; a stock ``BatchNorm2d(1)`` normalises it first.

- :class:`ThinResNet`: the paper's thin ResNet-34 scaled down for a CPU: a 3x3 stem (stride 2), four residual
  stages of basic blocks (``blocks``, default one per stage instead of 3/4/6/3) of widths ``B0..B3`` (default
  16/32/64/128 as in the thin ResNet-34), stages 1-3 starting with stride 2 and a 1x1 projection shortcut,
  global average pooling, a linear head. Each stage's width is *one* :class:`~softwidth.Width` shared by every
  conv, BatchNorm and residual :class:`~softwidth.layers.Add` of the stage (the residual stream of a stage has
  one size), and consumed by the next stage's first convs and projection.
- :class:`LCNN`: a light CNN in the style of the ASVspoof LCNN baseline: four stages of conv -> max-feature-map
  (MFM) -> BatchNorm -> 2x2 max pooling, widths ``B0..B3`` (MFM outputs, default 16/24/32/32), global average
  pooling, a linear head. The conv before an MFM produces ``2 C`` channels whose layout is the stage width
  twice (``Layout([w, w])``), so at width ``K`` it keeps channels ``[0, K)`` and ``[C, C + K)`` and the MFM
  ``max(y[:C], y[C:])`` of the consolidated conv is exact.

``dynamic`` names the stages whose width is trainable (``"B2"``, ``("B0", "B1")`` or ``"all"``), each with
``kappa_min`` of its maximum as lower bound; ``dynamic=()`` builds the fixed-size model of the same shape (the
from-scratch baseline). Costs are priced by :func:`softwidth.profile` (convs, norms, ReLUs, residual additions,
the head); the functional pooling and the MFM maxima are not priced (under 1 % of the FLOP/s).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from softwidth.errors import SoftWidthError
from softwidth.layers import Add, BatchNorm, Conv2d, Linear
from softwidth.layout import Layout
from ..experiments.model_widths import max_size, model_widths
from softwidth.width import Width

__all__ = ["LCNN", "MODELS", "STAGES", "ThinResNet", "build_model"]

STAGES = ("B0", "B1", "B2", "B3")


def _conv(cin: Width | int, cout: Width | int | Layout, k: int, stride: int = 1) -> Conv2d:
    n_in = max_size(cin)
    n_out = cout.max_size if isinstance(cout, Layout) else max_size(cout)
    return Conv2d(nn.Conv2d(n_in, n_out, k, stride=stride, padding=k // 2, bias=False), in_width=cin,
                  out_width=cout)


def _bn(w: Width | int) -> BatchNorm:
    return BatchNorm(nn.BatchNorm2d(max_size(w)), w)


def _check_input(x: torch.Tensor, n_features: int, where: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != n_features or x.shape[1] < 8:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise SoftWidthError(f"{where}: expects features (batch, frames >= 8, {n_features}), got {got}; "
                             f"pass n_features= to match your features")


def _check_common(kind: str, n_features, blocks=None) -> None:
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 8:
        raise SoftWidthError(f"{kind}: n_features must be an int >= 8, got {n_features!r}")
    if blocks is not None and (not isinstance(blocks, (tuple, list)) or len(blocks) != 4 or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks)):
        raise SoftWidthError(f"{kind}: blocks must be 4 ints >= 1 (blocks per stage), got {blocks!r}")


class _BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, -> ReLU. Consumes ``w_in``, produces ``w``."""

    def __init__(self, w_in: Width | int, w: Width | int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = _conv(w_in, w, 3, stride), _bn(w), nn.ReLU()
        self.conv2, self.bn2 = _conv(w, w, 3), _bn(w)
        project = stride != 1 or w_in is not w
        self.proj = nn.Sequential(_conv(w_in, w, 1, stride), _bn(w)) if project else None
        self.add, self.relu2 = Add(w, dim=1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.proj is None else self.proj(x)
        return self.relu2(self.add(skip, y))


class ThinResNet(nn.Module):
    """Thin ResNet countermeasure. ``forward(features (B, T, n_features)) -> bona fide logits (B,)``.

    Args:
        sizes: stage widths (maximum, or actual if fixed); defaults ``B0=16, B1=32, B2=64, B3=128``.
        dynamic: names of the trainable stage widths (see the module docstring).
        kappa_min: lower bound of each trainable width as a fraction of its maximum.
        n_features: features per frame (default 60).
        blocks: basic blocks per stage (default ``(1, 1, 1, 1)``; ``(3, 4, 6, 3)`` is ResNet-34).
    """

    kind = "resnet"
    defaults: ClassVar[dict[str, int]] = {"B0": 16, "B1": 32, "B2": 64, "B3": 128}

    def __init__(self, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] = (),
                 kappa_min: float = 1 / 8, n_features: int = 60, blocks: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        super().__init__()
        _check_common(self.kind, n_features, blocks)
        w = model_widths(self.kind, dict(sizes or {}), dynamic, kappa_min, self.defaults, {})
        self.sizes = {k: max_size(v) for k, v in w.items()}
        self.n_features, self.blocks = n_features, tuple(blocks)
        self.norm0 = nn.BatchNorm2d(1)
        self.stem, self.stem_bn, self.stem_relu = _conv(1, w["B0"], 3, 2), _bn(w["B0"]), nn.ReLU()
        stages = []
        prev = w["B0"]
        for s, name in enumerate(STAGES):
            layers = []
            for b in range(blocks[s]):
                layers.append(_BasicBlock(prev, w[name], 2 if (s > 0 and b == 0) else 1))
                prev = w[name]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = Linear(nn.Linear(max_size(w["B3"]), 1), in_width=w["B3"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_input(features, self.n_features, "ThinResNet")
        x = self.norm0(features.transpose(1, 2).unsqueeze(1))  # (B, 1, F, T)
        x = self.stages(self.stem_relu(self.stem_bn(self.stem(x))))  # (B, B3, F / 16, T / 16)
        return self.head(x.mean(dim=(2, 3))).squeeze(-1)  # dropped channels are 0, so their mean is 0


class LCNN(nn.Module):
    """Light CNN countermeasure with max-feature-map. ``forward(features (B, T, n_features)) -> logits (B,)``.

    Args:
        sizes: MFM output widths per stage; defaults ``B0=16, B1=24, B2=32, B3=32``.
        dynamic, kappa_min, n_features: as for :class:`ThinResNet`.

    Stage ``s``: conv (5x5 stride 2 in stage 0, else 3x3; ``2 B_s`` channels) -> MFM -> BatchNorm -> 2x2 max pooling.
    """

    kind = "lcnn"
    defaults: ClassVar[dict[str, int]] = {"B0": 16, "B1": 24, "B2": 32, "B3": 32}

    def __init__(self, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] = (),
                 kappa_min: float = 1 / 8, n_features: int = 60) -> None:
        super().__init__()
        _check_common(self.kind, n_features)
        w = model_widths(self.kind, dict(sizes or {}), dynamic, kappa_min, self.defaults, {})
        self.sizes = {k: max_size(v) for k, v in w.items()}
        self.n_features = n_features
        self.norm0 = nn.BatchNorm2d(1)
        prev: Width | int = 1
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        for s, name in enumerate(STAGES):
            self.convs.append(_conv(prev, Layout([w[name], w[name]]), 5 if s == 0 else 3, 2 if s == 0 else 1))
            self.norms.append(_bn(w[name]))
            prev = w[name]
        self.head = Linear(nn.Linear(max_size(w["B3"]), 1), in_width=w["B3"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_input(features, self.n_features, "LCNN")
        x = self.norm0(features.transpose(1, 2).unsqueeze(1))  # (B, 1, F, T)
        for conv, norm in zip(self.convs, self.norms):
            a, b = conv(x).chunk(2, dim=1)  # the two halves of the MFM; both gated by the same width
            x = F.max_pool2d(norm(torch.maximum(a, b)), 2, ceil_mode=True)
        return self.head(x.mean(dim=(2, 3))).squeeze(-1)


MODELS: dict[str, type[nn.Module]] = {"resnet": ThinResNet, "lcnn": LCNN}


def build_model(kind: str, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] | str = (),
                kappa_min: float = 1 / 8, n_features: int = 60) -> nn.Module:
    """``build_model("resnet", dynamic="all")``: a countermeasure by name; ``dynamic`` is ``"all"``, a stage
    name (``"B0".."B3"``) or a collection of stage names."""
    if kind not in MODELS:
        raise SoftWidthError(f"unknown anti-spoofing model {kind!r}; choose one of {sorted(MODELS)}")
    names = STAGES if dynamic == "all" else (dynamic,) if isinstance(dynamic, str) else tuple(dynamic)
    return MODELS[kind](sizes, dynamic=names, kappa_min=kappa_min, n_features=n_features)
