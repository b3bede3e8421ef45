"""shrink(): train the consolidated model of a frozen dynamic model, carrying the optimizer state, and write back."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth_studies.antispoof.models import build_model as build_countermeasure
from softwidth.errors import SoftWidthError
from softwidth.layers import BatchNorm, Linear
from softwidth.optim import width_modules
from softwidth.shrink import shrink
from softwidth_studies.vad.models import build_model as build_vad
from softwidth.width import Width

MODELS = {
    "crnn": (lambda: build_vad("crnn", dynamic="all"), lambda g: torch.rand(3, 40, 201, generator=g) * 10),
    "transformer": (lambda: build_vad("transformer", dynamic="all"), lambda g: torch.rand(3, 40, 201, generator=g) * 10),
    "resnet": (lambda: build_countermeasure("resnet", dynamic="all", n_features=20),
               lambda g: torch.randn(3, 32, 20, generator=g)),
    "lcnn": (lambda: build_countermeasure("lcnn", dynamic="all", n_features=20),
             lambda g: torch.randn(3, 32, 20, generator=g)),
}


def _frozen(build, make_input, optimizer_cls=torch.optim.Adam, **options):
    """A model trained 3 steps with learning widths, then frozen at 40 % of each range; its optimizer."""
    torch.manual_seed(0)
    model = build().train()
    optimizer = optimizer_cls(model.parameters(), **options)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        optimizer.zero_grad()
        model(make_input(g)).square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        for w in width_modules(model):
            w.value.fill_(w.min_size + 0.4 * (w.max_size - w.min_size))
            w.freeze_()
    return model, optimizer


def _train(model, optimizer, inputs):
    for x in inputs:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_training_the_shrunk_model_is_training_the_masked_one(kind):
    """Same forward in train mode; after Adam steps (weight decay on) on each and a restore, the dynamic model,
    its BatchNorm statistics and the optimizer state of every kept weight match the masked run's."""
    build, make_input = MODELS[kind]
    model, optimizer = _frozen(build, make_input, lr=1e-2, weight_decay=1e-3)
    reference = copy.deepcopy(model)
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, weight_decay=1e-3)
    ref_optimizer.load_state_dict(optimizer.state_dict())
    g = torch.Generator().manual_seed(2)
    inputs = [make_input(g) for _ in range(3)]

    shrunk = shrink(model, optimizer)
    small = sum(p.numel() for p in shrunk.model.parameters())
    assert small < 0.6 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not any(isinstance(m, Width) for m in shrunk.model.modules()) and shrunk.model.training
    torch.testing.assert_close(shrunk.model(inputs[0]), reference(inputs[0]), atol=1e-5, rtol=1e-5)

    _train(reference, ref_optimizer, inputs)
    _train(shrunk.model, shrunk.optimizer, inputs)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    shrunk.restore()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and not any(n.endswith(".value") for n in changed)  # weights written back, widths untouched
    model.eval(), reference.eval()
    torch.testing.assert_close(model(inputs[1]), reference(inputs[1]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sw.consolidate(model)(inputs[2]), sw.consolidate(reference)(inputs[2]),
                               atol=1e-4, rtol=1e-4)
    for p, q in zip(model.parameters(), reference.parameters()):
        state, ref_state = optimizer.state[p], ref_optimizer.state[q]
        if state and p.requires_grad:
            assert int(state["step"]) == int(ref_state["step"])


def _mlp():
    torch.manual_seed(0)
    a, b = Width(12), Width(10)
    model = nn.Sequential(Linear(nn.Linear(5, 12), out_width=a), BatchNorm(nn.BatchNorm1d(12), a), nn.ReLU(),
                          Linear(nn.Linear(12, 10), in_width=a, out_width=b), nn.ReLU(),
                          Linear(nn.Linear(10, 2), in_width=b))
    with torch.no_grad():
        a.value.fill_(7.0), b.value.fill_(4.0)
    a.freeze_(), b.freeze_()
    return model


def test_kept_weights_and_optimizer_state_go_back_where_they_came_from():
    """SGD with momentum: the consolidated weights and momentum buffers are slices of the originals, and restore
    writes new values into exactly those slices."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(3))
    _train(model, optimizer, [x])
    shrunk = shrink(model, optimizer)
    first = shrunk.model[0]
    torch.testing.assert_close(first.weight, model[0].linear.weight[:7], rtol=0, atol=0)
    momentum = shrunk.optimizer.state[first.weight]["momentum_buffer"]
    torch.testing.assert_close(momentum, optimizer.state[model[0].linear.weight]["momentum_buffer"][:7], rtol=0, atol=0)
    assert shrunk.optimizer.param_groups[0]["momentum"] == 0.9 and shrunk.optimizer.param_groups[0]["lr"] == 0.1

    dropped = model[0].linear.weight[7:].detach().clone()
    with torch.no_grad():
        first.weight.fill_(0.5)
        shrunk.optimizer.state[first.weight]["momentum_buffer"].fill_(-2.0)
        shrunk.model[1].running_mean.fill_(3.0)
    shrunk.restore()
    assert torch.all(model[0].linear.weight[:7] == 0.5) and torch.equal(model[0].linear.weight[7:], dropped)
    assert torch.all(optimizer.state[model[0].linear.weight]["momentum_buffer"][:7] == -2.0)
    assert torch.all(model[1].norm.running_mean[:7] == 3.0)


def test_refuses_what_it_cannot_carry_over():
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(SoftWidthError, match="nn.Module and a torch.optim.Optimizer"):
        shrink(model, "adam")
    model[0].out_layout.widths[0].frozen = False
    with pytest.raises(SoftWidthError, match="must be frozen"):
        shrink(model, optimizer)
    with pytest.raises(SoftWidthError, match="must be frozen"):
        shrink(nn.Linear(3, 2), torch.optim.Adam(nn.Linear(3, 2).parameters()))

    tied = _mlp()
    tied.append(Linear(tied[0].linear, out_width=tied[0].out_layout.widths[0]))  # one nn.Linear in two places
    with pytest.raises(SoftWidthError, match="tied weights"):
        shrink(tied, torch.optim.Adam(tied.parameters()))
