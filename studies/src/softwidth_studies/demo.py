"""A one-minute tour: make a small frame classifier dynamic, train it with a FLOP/s penalty, consolidate."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from softwidth import (
    consolidate,
    dynamic,
    flops_per_second,
    param_groups,
    params,
    profile,
    widths,
)
from softwidth.width import Width

__all__ = ["run_demo"]


def _data(seed: int, frames: int = 100, features: int = 40, examples: int = 256):
    """Frame labels that depend on 4 of 40 input features through a small nonlinear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, frames, features, generator=g)
    proj = torch.randn(features, 4, generator=g)
    y = (torch.tanh(x @ proj).sum(-1) > 0).long()
    return x, y


def run_demo(*, steps: int = 200, seed: int = 0, weight: float = 0.5) -> nn.Module:
    """Train a dynamic 2-hidden-layer frame classifier on 1 s inputs (100 frames x 40 features)."""
    torch.manual_seed(seed)
    hidden1, hidden2 = Width(128, kappa_min=1 / 32), Width(64, kappa_min=1 / 32)
    model = nn.Sequential(
        dynamic(nn.Linear(40, 128), out_width=hidden1), nn.ReLU(),
        dynamic(nn.Linear(128, 64), in_width=hidden1, out_width=hidden2), nn.ReLU(),
        dynamic(nn.Linear(64, 2), in_width=hidden2),
    )
    profile(model, torch.zeros(1, 100, 40), seconds=1.0)  # 1 s of audio = 100 frames at 10 ms
    full = flops_per_second(model).detach()
    print(f"full model: {full / 1e6:.3f} MFLOP/s, {int(params(model))} parameters")
    x, y = _data(seed)
    opt = torch.optim.Adam(param_groups(model, width_lr=0.5), lr=3e-3)
    bar = tqdm(range(steps), desc="training", unit="step")
    for step in bar:
        idx = torch.randint(0, len(x), (32,))
        logits = model(x[idx])
        task = nn.functional.cross_entropy(logits.reshape(-1, 2), y[idx].reshape(-1))
        cost = flops_per_second(model) / full  # normalised, differentiable in both widths
        loss = task + weight * cost
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(task=f"{task.item():.3f}", cost=f"{cost.item():.2f}")
    model.eval()
    for name, record in widths(model).items():
        print(f"width {name}: {record['value']:.2f} -> {record['rounded']} of {record['max_size']}")
    small = consolidate(model)
    with torch.no_grad():
        acc = (small(x[:64]).argmax(-1) == y[:64]).float().mean().item()
    now = flops_per_second(model).item()
    print(f"consolidated: {now / 1e6:.3f} MFLOP/s ({now / full.item():.1%} of full), "
          f"{int(params(model))} parameters, frame accuracy {acc:.3f}")
    print(small)
    return small
