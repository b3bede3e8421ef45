"""What every registered width-aware layer must do, checked over softwidth.layers.WRAPPERS: the built-in layers
and the one the worked example of docs/api.md ("Adding a layer type", run here from the doc) adds.

Each registered stock type has a case: the layer, wrapped by ``softwidth.dynamic``, between a producer of the
width it consumes and a consumer of the one it produces. Properties: the eval output equals the consolidated
model's; at integer widths the layer's cost equals independent counts of its consolidated module (moduleprofiler
or an op-by-op count of what it executes for FLOPs, FlopCounterMode for MACs, the parameter count) and the
probe prices the consolidated stock module the same; the task gradient reaches every width in train mode
(both mixes); the consolidated module survives the save/load round trip of softwidth.export exactly.
Layer-specific tests (other sizes, options and inputs) stay in each layer's own test file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from doc_blocks import API, saved_script
from moduleprofiler import ModuleProfiler
from moduleprofiler.ops import get_default_ops_map
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth import Width, export
from softwidth.layers import WRAPPERS, DynamicLayer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore:Converting a tensor with requires_grad")

# The worked example, as the doc shows it: registers nn.RMSNorm (a fresh namespace, like tests/test_docs.py's)
EXAMPLE: dict = {}
exec(compile(saved_script(API.read_text(), "rmsnorm.py"), "docs/api.md (rmsnorm.py)", "exec"), EXAMPLE)  # noqa: S102

aten = torch.ops.aten


class ExecutedArithmetic(TorchDispatchMode):
    """Counts the arithmetic a module executes, op by op: one FLOP per output element of an element-wise op,
    ``n - 1`` adds per output of a sum over ``n`` elements and one divide more for a mean. An op it does not know
    fails the count, so nothing is silently free. Independent of the layers' cost formulas."""

    ELEMENTWISE = {aten.pow, aten.mul, aten.add, aten.add_, aten.sub, aten.div, aten.rsqrt, aten.sqrt}
    REDUCTIONS = {aten.sum: 0, aten.mean: 1}  # extra ops per output

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op in self.REDUCTIONS:
            self.flops += args[0].numel() - out.numel() + self.REDUCTIONS[op] * out.numel()
        elif op in self.ELEMENTWISE:
            self.flops += out.numel()
        else:
            raise AssertionError(f"ExecutedArithmetic does not count {func}")
        return out


def executed(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), ExecutedArithmetic() as counter:
        module(x)
    return counter.flops


def moduleprofiler(module: nn.Module, x: torch.Tensor) -> float:
    return ModuleProfiler().estimate_ops(module, x)["__root__"]["ops"]


class Chain(nn.Module):
    """``front`` (produces the width ``layer`` consumes) -> ``layer`` (the one under test) -> ``head`` (consumes
    what ``layer`` produces); a recurrent layer's sequence output goes on."""

    def __init__(self, front: nn.Module, layer: nn.Module, head: nn.Module):
        super().__init__()
        self.front, self.layer, self.head = front, layer, head

    def forward(self, x):
        y = self.layer(self.front(x))
        return self.head(y[0] if isinstance(y, tuple) else y)


@dataclass(frozen=True)
class Case:
    build: Callable[[str], tuple[Chain, torch.Tensor]]  # width mix -> (model, a batch of 4 examples)
    flops: Callable[[nn.Module, torch.Tensor], float] | None = moduleprofiler  # of the consolidated layer
    macs: bool = True  # FlopCounterMode sees its products (it counts 0 for the fused LSTM kernel)


def _features(front_in: int, c: int, head_out: int, w: Width, v: Width | None = None, *, spatial: int = 0):
    """Producer of ``w`` (``c`` features) and consumer of ``v`` (default ``w``): Linear, or Conv1d/2d on axis 1."""
    stock = {0: nn.Linear, 1: nn.Conv1d, 2: nn.Conv2d}[spatial]
    extra = (3,) if spatial else ()
    consumed = w if v is None else v
    front = sw.dynamic(stock(front_in, c, *extra), out_width=w)
    head = sw.dynamic(stock(consumed.max_size, head_out, *((1,) if spatial else ())), in_width=consumed)
    x = torch.randn(4, 7, front_in) if not spatial else torch.randn(4, front_in, *(9, 8)[:spatial])
    return front, head, x


def _linear(mix):
    w, v = Width(8, init=5.6, mix=mix), Width(6, init=3.3, mix=mix)
    front, head, x = _features(5, 8, 3, w, v)
    return Chain(front, sw.dynamic(nn.Linear(8, 6), in_width=w, out_width=v), head), x


def _conv(spatial):
    def build(mix):
        w, v = Width(8, init=5.6, mix=mix), Width(6, init=3.3, mix=mix)
        front, head, x = _features(3, 8, 2, w, v, spatial=spatial)
        conv = (nn.Conv1d, nn.Conv2d)[spatial - 1](8, 6, 3, padding=1)
        return Chain(front, sw.dynamic(conv, in_width=w, out_width=v), head), x
    return build


def _batchnorm(spatial):
    def build(mix):
        w = Width(8, init=5.6, mix=mix)
        front, head, x = _features(3, 8, 2, w, spatial=spatial)
        norm = (nn.BatchNorm1d, nn.BatchNorm2d)[spatial - 1](8)
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
        model = Chain(front, sw.dynamic(norm, width=w), head)
        with torch.no_grad():
            for _ in range(3):  # non-trivial running statistics
                model(torch.randn_like(x) * 2 + 1)
        return model, x
    return build


def _layernorm(mix):
    w = Width(8, init=5.6, mix=mix)
    front, head, x = _features(5, 8, 3, w)
    norm = nn.LayerNorm(8)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    return Chain(front, sw.dynamic(norm, width=w), head), x


def _rmsnorm(mix):  # the worked example's layer
    w = Width(8, init=5.6, mix=mix)
    front, head, x = _features(5, 8, 3, w)
    norm = nn.RMSNorm(8)
    nn.init.normal_(norm.weight)
    return Chain(front, sw.dynamic(norm, width=w), head), x


def _recurrent(stock):
    def build(mix):
        w, h = Width(8, init=5.6, mix=mix), Width(6, init=3.3, mix=mix)
        front = sw.dynamic(nn.Linear(5, 8), out_width=w)
        layer = sw.dynamic(stock(8, 6, num_layers=2, batch_first=True, bidirectional=True), in_width=w,
                           hidden_width=h)
        return Chain(front, layer, sw.dynamic(nn.Linear(12, 3), in_width=layer.out_layout)), torch.randn(4, 7, 5)
    return build


def _encoder(mix):
    d, f = Width(16, multiple_of=2, init=10.6, mix=mix), Width(32, init=19.3, mix=mix)
    front, head, x = _features(6, 16, 3, d)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True, activation="gelu")
    return Chain(front, sw.dynamic(layer, model_width=d, ff_width=f), head), x


def _activation(make: Callable[[], nn.Module], spatial: int = 0):
    """An element-wise layer on the width of its input (features on axis 1 for convs)."""
    def build(mix):
        w = Width(8, init=5.6, mix=mix)
        front, head, x = _features(3 if spatial else 5, 8, 2, w, spatial=spatial)
        module = make()
        if isinstance(module, nn.PReLU):
            nn.init.uniform_(module.weight, -1.0, 1.0)  # distinct slopes per channel
        return Chain(front, sw.dynamic(module, width=w, dim=1 if spatial else -1), head), x
    return build


CASES: dict[type, Case] = {
    nn.Linear: Case(_linear),
    nn.Conv1d: Case(_conv(1)),
    nn.Conv2d: Case(_conv(2)),
    nn.BatchNorm1d: Case(_batchnorm(1)),
    nn.BatchNorm2d: Case(_batchnorm(2)),
    nn.LayerNorm: Case(_layernorm),
    nn.RMSNorm: Case(_rmsnorm, flops=executed),
    nn.GRU: Case(_recurrent(nn.GRU)),
    nn.LSTM: Case(_recurrent(nn.LSTM), macs=False),
    # FLOPs counted by hand, term by term, in test_attention.py (moduleprofiler has no attention)
    nn.TransformerEncoderLayer: Case(_encoder, flops=None),
    nn.Identity: Case(_activation(nn.Identity)),
    nn.Dropout: Case(_activation(lambda: nn.Dropout(0.1)), flops=executed),  # eval: nothing executed
    nn.Dropout1d: Case(_activation(lambda: nn.Dropout1d(0.1), spatial=1), flops=executed),
    nn.Dropout2d: Case(_activation(lambda: nn.Dropout2d(0.1), spatial=2), flops=executed),
    nn.PReLU: Case(_activation(lambda: nn.PReLU(8), spatial=1)),
    **{t: Case(_activation(t)) for t in (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Softplus)},
    # FLOPs per element are softwidth's convention (ELEMENTWISE_FLOPS); moduleprofiler has none for them
    **{t: Case(_activation(t), flops=None) for t in (nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardtanh)},
}
REGISTERED = sorted(WRAPPERS, key=lambda t: t.__name__)  # at collection: the built-ins and the doc's RMSNorm


def _case(stock: type) -> Case:
    if stock not in CASES:
        pytest.fail(f"no conformance case for the registered type {stock.__name__}: add one to CASES")
    return CASES[stock]


def _widths(model: nn.Module) -> list[Width]:
    return list({id(m): m for m in model.modules() if isinstance(m, Width)}.values())


def _consolidated_layer(plain: Chain, x: torch.Tensor):
    """The consolidated layer under test and the input it gets in ``plain(x)``."""
    seen = []
    handle = plain.layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            plain(x)
    finally:
        handle.remove()
    return plain.layer, seen[0]


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _tensors(item)]


def test_the_doc_example_is_registered_and_checked():
    assert nn.RMSNorm in REGISTERED and WRAPPERS[nn.RMSNorm].__qualname__ == EXAMPLE["RMSNorm"].__qualname__
    assert issubclass(WRAPPERS[nn.RMSNorm], DynamicLayer)


@pytest.mark.parametrize("stock", REGISTERED, ids=lambda t: t.__name__)
def test_eval_output_equals_consolidated(stock):
    torch.manual_seed(0)
    model, x = _case(stock).build("ramp")
    assert isinstance(model.layer, WRAPPERS[stock])  # sw.dynamic picked the registered layer
    model.eval()
    plain = sw.consolidate(model)
    assert not any(isinstance(m, (Width, DynamicLayer)) for m in plain.modules())
    assert type(plain.layer).__module__.startswith("torch.")  # a stock torch module
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stock", REGISTERED, ids=lambda t: t.__name__)
def test_cost_at_integer_widths_equals_independent_counts(stock):
    torch.manual_seed(0)
    case = _case(stock)
    model, x = case.build("ramp")
    with torch.no_grad():
        for w in _widths(model):
            w.value.fill_(float(w.rounded))
    x = x[:1]  # costs are per example
    sw.profile(model, x)
    row = {kind: float(value) for kind, value in sw.cost(model, per_layer=True)["layer"].items()}
    plain = sw.consolidate(model.eval())
    small, inputs = _consolidated_layer(plain, x)
    assert row["params"] == sum(p.numel() for p in small.parameters())
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:  # attention as bmm, which the counter sees
        small(inputs)
    if case.macs:
        assert 2 * row["macs"] == counter.get_total_flops()
    if case.flops is not None:
        if case.flops is moduleprofiler:
            assert type(small) in get_default_ops_map(), f"moduleprofiler does not count {type(small).__name__}"
        assert row["flops"] == pytest.approx(case.flops(small, inputs), rel=1e-6, abs=1e-9)
    sw.profile(plain, x)  # the stock module, priced by the registered layer at fixed size (DynamicLayer.fixed)
    stock_row = {kind: float(value) for kind, value in sw.cost(plain, per_layer=True)["layer"].items()}
    assert stock_row == pytest.approx(row, rel=1e-6)


@pytest.mark.parametrize("mix", ["ramp", "paper"])
@pytest.mark.parametrize("stock", REGISTERED, ids=lambda t: t.__name__)
def test_task_gradient_reaches_every_width_in_train_mode(stock, mix):
    torch.manual_seed(0)
    model, x = _case(stock).build(mix)
    model.train()
    model(x).square().mean().backward()
    for w in _widths(model):
        assert w.value.grad is not None, w.label
        assert bool(torch.isfinite(w.value.grad)) and float(w.value.grad) != 0.0, w.label
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.layer.parameters()
               if not any(p is w.value for w in _widths(model)))


@pytest.mark.parametrize("stock", REGISTERED, ids=lambda t: t.__name__)
def test_export_round_trip_is_exact(stock, tmp_path):
    torch.manual_seed(0)
    model, x = _case(stock).build("ramp")
    small, inputs = _consolidated_layer(sw.consolidate(model.eval()), x)
    export.save(small, tmp_path)  # the generic builder: no user code
    loaded = export.load(tmp_path)
    assert repr(loaded) == repr(small) and not loaded.training
    want, got = small.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    with torch.no_grad():
        for a, b in zip(_tensors(small(inputs)), _tensors(loaded(inputs)), strict=True):
            assert torch.equal(a, b)
