"""Width-aware GRU / LSTM: eval == consolidated, costs vs moduleprofiler and FlopCounterMode, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth.layers.linear import Linear
from softwidth.layers.recurrent import GRU, LSTM

STOCK = {GRU: nn.GRU, LSTM: nn.LSTM}
CONFIG = dict(
    cls=st.sampled_from([GRU, LSTM]), layers=st.integers(1, 2), bi=st.booleans(), batch_first=st.booleans(),
    bias=st.booleans(),
)


def _make(cls, layers, bi, batch_first, bias, *, i=5, h=6, k_in=None, k_h=None):
    rnn = STOCK[cls](i, h, num_layers=layers, bidirectional=bi, batch_first=batch_first, bias=bias)
    w_in = sw.Width(i, init=float(i if k_in is None else k_in))
    w_h = sw.Width(h, init=float(h if k_h is None else k_h))
    return cls(rnn, in_width=w_in, hidden_width=w_h), w_in, w_h


def _input(layer, t, n):
    shape = (n, t, layer.rnn.input_size) if layer.rnn.batch_first else (t, n, layer.rnn.input_size)
    return torch.randn(shape)


def _state(layer, n, hidden):
    shape = (layer.rnn.num_layers * layer.directions, n, hidden)
    h0 = torch.randn(shape)
    return (h0, torch.randn(shape)) if isinstance(layer, LSTM) else h0


def _pieces(out):
    output, state = out
    return (output, *state) if isinstance(state, tuple) else (output, state)


@settings(max_examples=24, deadline=None, derandomize=True)
@given(**CONFIG, k_in=st.floats(1.0, 5.0), k_h=st.floats(1.0, 6.0), with_state=st.booleans())
def test_eval_output_equals_consolidated(cls, layers, bi, batch_first, bias, k_in, k_h, with_state):
    torch.manual_seed(0)
    layer, w_in, w_h = _make(cls, layers, bi, batch_first, bias, k_in=k_in, k_h=k_h)
    layer.eval()
    x = w_in(_input(layer, t=4, n=3))  # the producer's gate: zeros beyond the kept input features
    hx = _state(layer, 3, 6) if with_state else None
    small = layer.consolidated().eval()
    assert small.hidden_size == w_h.rounded and small.input_size == w_in.rounded
    keep_h, keep_in = layer.hidden_layout.kept_indices(), layer.in_layout.kept_indices()
    hx_small = None if hx is None else (
        tuple(s[..., keep_h] for s in hx) if isinstance(hx, tuple) else hx[..., keep_h])
    with torch.no_grad():
        full = _pieces(layer(x, hx))
        ref = _pieces(small(x[..., keep_in], hx_small))
    keeps = [layer.out_layout.kept_indices()] + [keep_h] * (len(full) - 1)
    for got, want, keep in zip(full, ref, keeps):
        torch.testing.assert_close(got[..., keep], want, atol=1e-5, rtol=0)
        dropped = torch.ones(got.shape[-1], dtype=torch.bool)
        dropped[keep] = False
        assert bool((got[..., dropped] == 0).all())  # outputs and states are exactly zero beyond the kept


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_zero_rows_keep_a_unit_exactly_zero(cls):
    # The eval-mode mask alone (before any output gate) keeps dropped units at exactly 0 from a zero state.
    torch.manual_seed(1)
    layer, _, w_h = _make(cls, 2, True, False, True, k_h=2.6)
    layer.eval()
    mask = layer.hidden_layout.shares(layer.rnn.weight_hh_l0)
    output, state = functional_call(layer.rnn, layer._masked(mask, hard=True), (_input(layer, 6, 2),))
    h_n = state[0] if isinstance(state, tuple) else state
    assert w_h.rounded == 3
    assert bool((output.view(6, 2, 2, 6)[..., 3:] == 0).all()) and bool((h_n[..., 3:] == 0).all())
    assert bool((output.view(6, 2, 2, 6)[..., :3] != 0).all())


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_train_mode_unit_with_zero_share_is_read_by_no_one(cls):
    # Train mode masks only the columns that read a unit (recurrent and layer > 0 input): with the paper mix
    # at an integer width, the kept units must not depend on the weights of units with share 0.
    torch.manual_seed(5)
    rnn = STOCK[cls](5, 6, num_layers=2, bidirectional=True)
    layer = cls(rnn, hidden_width=sw.Width(6, init=3.0, mix="paper")).train()
    s = layer.hidden_layout.shares(rnn.weight_hh_l0)
    assert s.tolist() == [1, 1, 1, 0, 0, 0]
    x = _input(layer, 6, 2)
    before = functional_call(rnn, layer._masked(s, hard=False), (x,))[0].view(6, 2, 2, 6)[..., :3]
    rows = torch.cat([g * 6 + torch.arange(3, 6) for g in range(layer._gates)])
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p[rows] += torch.randn_like(p[rows])
    after = functional_call(rnn, layer._masked(s, hard=False), (x,))[0].view(6, 2, 2, 6)[..., :3]
    torch.testing.assert_close(after, before, atol=0, rtol=0)


@settings(max_examples=16, deadline=None, derandomize=True)
@given(**CONFIG, k_in=st.integers(1, 5), k_h=st.integers(1, 6), t=st.integers(1, 6))
def test_cost_matches_moduleprofiler_and_params(cls, layers, bi, batch_first, bias, k_in, k_h, t):
    layer, _, _ = _make(cls, layers, bi, batch_first, bias, k_in=k_in, k_h=k_h)
    small = layer.consolidated()
    x = torch.randn((1, t, k_in) if batch_first else (t, 1, k_in))
    ops = ModuleProfiler().estimate_ops(small, x)["__root__"]["ops"]
    c = layer.cost(t)
    assert float(c["flops"].detach()) == pytest.approx(ops, rel=1e-6)
    assert float(c["params"].detach()) == sum(p.numel() for p in small.parameters())


@settings(max_examples=10, deadline=None, derandomize=True)
@given(layers=st.integers(1, 2), bi=st.booleans(), bias=st.booleans(), k_in=st.integers(1, 5),
       k_h=st.integers(1, 6), n=st.integers(1, 3))
def test_gru_macs_match_flop_counter(layers, bi, bias, k_in, k_h, n):
    # FlopCounterMode counts the GRU's addmm/mm (2 FLOPs per MAC) on CPU; it counts 0 for the fused LSTM
    # kernel, so LSTM MACs are only checked through the moduleprofiler FLOPs above.
    layer, _, _ = _make(GRU, layers, bi, True, bias, k_in=k_in, k_h=k_h)
    small = layer.consolidated()
    with FlopCounterMode(display=False) as counter:
        small(torch.randn(n, 5, k_in))
    assert counter.get_total_flops() == pytest.approx(2 * n * float(layer.cost(5)["macs"].detach()), rel=1e-6)


@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("bi", [False, True])
def test_cost_gradient_matches_finite_differences(cls, bi):
    layer, w_in, w_h = _make(cls, 2, bi, False, True, k_in=3.3, k_h=4.6)
    layer.double()  # the cost is a polynomial in the widths: central differences are exact in float64
    for kind in ("flops", "macs", "params"):
        for width in (w_in, w_h):
            grad, = torch.autograd.grad(layer.cost(7.0)[kind], width.value)
            with torch.no_grad():
                width.value += 1e-3
                up = float(layer.cost(7.0)[kind].detach())
                width.value -= 2e-3
                down = float(layer.cost(7.0)[kind].detach())
                width.value += 1e-3
            assert float(grad) == pytest.approx((up - down) / 2e-3, rel=1e-6)
            assert float(grad) > 0


@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("bi", [False, True])
def test_task_gradient_reaches_both_widths_in_train_mode(cls, bi):
    torch.manual_seed(2)
    layer, w_in, w_h = _make(cls, 2, bi, True, True, k_in=2.5, k_h=3.5)
    layer.train()
    w_in.train()
    x = w_in(_input(layer, t=5, n=4))  # in_width reaches the loss through its producer's gate
    output, state = layer(x)
    h_n = state[0] if isinstance(state, tuple) else state
    loss = (output - 1.0).square().mean() + (h_n - 1.0).square().mean()
    loss.backward()
    for width in (w_in, w_h):
        assert width.value.grad is not None
        assert bool(torch.isfinite(width.value.grad)) and float(width.value.grad) != 0.0
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in layer.rnn.parameters())


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_eval_is_deterministic_and_train_is_noisy(cls):
    torch.manual_seed(3)
    layer, _, _ = _make(cls, 1, True, False, True, k_h=3.5)
    x = _input(layer, t=5, n=4)
    layer.eval()
    with torch.no_grad():
        a, b = _pieces(layer(x)), _pieces(layer(x))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    layer.train()
    with torch.no_grad():
        assert not torch.equal(layer(x)[0], layer(x)[0])


def test_unbatched_input_and_fixed_widths():
    torch.manual_seed(4)
    layer, w_in, w_h = _make(GRU, 2, True, True, True, k_in=3.0, k_h=4.0)
    layer.eval()
    x = w_in(torch.randn(6, 5))  # (T, I)
    output, h_n = layer(x)
    assert output.shape == (6, 12) and h_n.shape == (4, 6)
    small = layer.consolidated().eval()
    torch.testing.assert_close(output[:, layer.out_layout.kept_indices()], small(x[:, :3])[0], atol=1e-5, rtol=0)
    assert layer.count_positions((x,), (output, h_n), batch=6) == 6.0
    stock = nn.LSTM(5, 6)  # no widths: a fixed-size pricer that runs the stock module as is
    fixed = LSTM(stock)
    x = torch.randn(3, 2, 5)
    assert torch.equal(fixed(x)[0], stock(x)[0])
    assert float(fixed.cost(3)["params"]) == sum(p.numel() for p in stock.parameters())


def test_out_layout_feeds_a_consumer_and_profile_counts_steps():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            w, h = sw.Width(8, init=5.0), sw.Width(6, init=4.0)
            self.front = Linear(nn.Linear(3, 8), out_width=w)
            self.rnn = GRU(nn.GRU(8, 6, batch_first=True, bidirectional=True), in_width=w, hidden_width=h)
            self.head = Linear(nn.Linear(12, 2), in_width=self.rnn.out_layout)

        def forward(self, x):
            return self.head(self.rnn(self.front(x))[0])

    model = Model()
    assert model.rnn.out_layout.same_as(sw.concat(model.rnn.hidden_width, model.rnn.hidden_width))
    record = sw.profile(model, torch.randn(2, 9, 3), seconds=0.09)
    positions = {e.name: e.positions for e in record.entries}
    assert positions["rnn"] == 9.0
    plain = sw.consolidate(model).eval()
    x = torch.randn(2, 9, 3)
    torch.testing.assert_close(model.eval()(x), plain(x), atol=1e-5, rtol=0)


def test_errors_are_clear():
    layer, _, _ = _make(GRU, 1, False, True, True)
    with pytest.raises(sw.SoftWidthError, match="features"):
        layer(torch.randn(2, 4, 7))
    with pytest.raises(sw.SoftWidthError, match="NaN"):
        layer(torch.full((2, 4, 5), float("nan")))
    with pytest.raises(sw.SoftWidthError, match="max size 5"):
        GRU(nn.GRU(5, 6), hidden_width=sw.Width(5))
    with pytest.raises(sw.SoftWidthError, match="wraps nn.GRU"):
        GRU(nn.LSTM(5, 6))
    with pytest.raises(sw.SoftWidthError, match="wraps nn.LSTM"):
        LSTM(nn.Linear(5, 6))
    with pytest.raises(sw.SoftWidthError, match="proj_size"):
        LSTM(nn.LSTM(5, 6, proj_size=2))
    with pytest.raises(sw.SoftWidthError, match="one Width"):
        GRU(nn.GRU(5, 6), hidden_width=sw.concat(sw.Width(3), sw.Width(3)))
    with pytest.raises(sw.SoftWidthError, match="initial state has shape"):
        layer(torch.randn(2, 4, 5), torch.zeros(1, 2, 4))
    with pytest.raises(sw.SoftWidthError, match="pair"):
        _make(LSTM, 1, False, True, True)[0](torch.randn(2, 4, 5), torch.zeros(1, 2, 6))
