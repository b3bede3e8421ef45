"""Small VAD models for the tests of tests/vad: imported as ``from vad_test_models import ...`` (pytest puts this
folder on ``sys.path`` for its test modules)."""

from __future__ import annotations

import torch

import softwidth as sw
from softwidth.optim import width_modules
from softwidth_studies.vad.models import build_model


def stepped(kind: str, sizes: dict, fill: float) -> torch.nn.Module:
    """A consolidated ``kind`` VAD whose weights moved off their init by 3 Adam steps (seed 0), every width of the
    dynamic model set to ``fill`` of its maximum before consolidation."""
    torch.manual_seed(0)
    model = build_model(kind, sizes, dynamic="all")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(torch.rand(4, 100, 201) * 5).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for w in width_modules(model):
            w.value.fill_(fill * w.max_size)
    return sw.consolidate(model.eval())


def with_batch_statistics(kind: str, sizes: dict) -> torch.nn.Module:
    """A consolidated ``kind`` VAD at ``sizes`` (seed 0) whose BatchNorm statistics are not the defaults."""
    torch.manual_seed(0)
    model = build_model(kind, sizes).train()
    model(torch.rand(4, 30, 201))
    return sw.consolidate(model.eval())
