"""Tests of softwidth.consolidate: equivalence on nested models, purity, TorchScript, ONNX, widths record."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, Width
from softwidth.layers import Add, BatchNorm, Concat, Conv1d, DynamicLayer, Elementwise, Linear

pytestmark = [
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),
    pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning"),  # TorchScript is what we test
]


class Nested(nn.Module):
    """(N, c_in, T) -> stem conv (w1) + BN + ReLU -> residual [depthwise, BN, PReLU, conv (w1 -> w1)] + Add
    -> Concat with a second branch [1x1 conv (w2), Sigmoid] -> (N, T, C) -> Linear head over concat(w1, w2)."""

    def __init__(self, c_in: int, w1: Width, w2: Width, kernel: int = 3, dilation: int = 1):
        super().__init__()
        c1, c2 = w1.max_size, w2.max_size
        pad = dilation * (kernel - 1) // 2
        self.stem = nn.Sequential(
            Conv1d(nn.Conv1d(c_in, c1, kernel, padding=pad, dilation=dilation), out_width=w1),
            BatchNorm(nn.BatchNorm1d(c1), w1),
            nn.ReLU(),
        )
        self.block = nn.Sequential(
            Conv1d(nn.Conv1d(c1, c1, 3, padding=1, groups=c1), in_width=w1, out_width=w1),
            BatchNorm(nn.BatchNorm1d(c1), w1),
            Elementwise(nn.PReLU(c1), w1, dim=1),
            Conv1d(nn.Conv1d(c1, c1, 1), in_width=w1, out_width=w1),
        )
        self.add = Add(w1, dim=1)
        self.branch = nn.Sequential(Conv1d(nn.Conv1d(c_in, c2, 1), out_width=w2),
                                    Elementwise(nn.Sigmoid(), w2, dim=1))
        self.cat = Concat(w1, w2, dim=1)
        self.head = Linear(nn.Linear(c1 + c2, 3), in_width=sw.concat(w1, w2))

    def forward(self, x):
        h = self.stem(x)
        h = self.add(h, self.block(h))
        z = self.cat(h, self.branch(x))
        return self.head(z.transpose(1, 2))


def _nested(c_in=2, c1=6, c2=4, k1=4.4, k2=2.6, seed=0, kernel=3, dilation=1):
    torch.manual_seed(seed)
    w1, w2 = Width(c1, init=1 + (c1 - 1) * (k1 - 1) / 5.0), Width(c2, init=1 + (c2 - 1) * (k2 - 1) / 5.0)
    model = Nested(c_in, w1, w2, kernel, dilation)
    for m in model.modules():
        if isinstance(m, nn.PReLU):
            nn.init.uniform_(m.weight, -1, 1)
    model.train()
    for _ in range(3):  # non-trivial BatchNorm running statistics
        model(torch.randn(4, c_in, 9) * 2 + 0.5)
    return model.eval(), (w1, w2)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(c_in=st.integers(1, 3), c1=st.integers(2, 8), c2=st.integers(1, 6), k1=st.floats(1, 6),
       k2=st.floats(1, 6), frames=st.integers(1, 12), kernel=st.sampled_from([1, 3, 5]),
       dilation=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_nested_eval_output_equals_consolidated(c_in, c1, c2, k1, k2, frames, kernel, dilation, seed):
    model, (w1, w2) = _nested(c_in, c1, c2, k1, k2, seed, kernel, dilation)
    x = torch.randn(3, c_in, frames)
    plain = sw.consolidate(model)
    assert plain.head.in_features == w1.rounded + w2.rounded
    assert torch.allclose(model(x), plain(x), atol=1e-5)


def _is_stock(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.")


def test_result_has_no_softwidth_classes():
    model, _ = _nested()
    plain = sw.consolidate(model)
    for name, m in plain.named_modules():
        assert not isinstance(m, (Width, DynamicLayer)), name
        if name:  # the root is the user's own class
            assert _is_stock(m), (name, type(m))
    assert isinstance(plain.add, torch.fx.GraphModule) and isinstance(plain.cat, torch.fx.GraphModule)
    assert "softwidth_profile" not in plain.__dict__
    assert not any("value" == n.rsplit(".", 1)[-1] for n, _ in plain.named_parameters())

    seq = nn.Sequential(Linear(nn.Linear(3, 6), out_width=Width(6, init=3.0)), nn.ReLU())
    seq.append(Linear(nn.Linear(6, 2), in_width=seq[0].out_width))
    assert all(_is_stock(m) for m in sw.consolidate(seq).modules())


def test_input_model_is_never_mutated():
    model, (w1, w2) = _nested()
    sw.profile(model, torch.randn(1, 2, 8))
    record = model.softwidth_profile
    state = {k: v.clone() for k, v in model.state_dict().items()}
    types = [(n, type(m), id(m)) for n, m in model.named_modules()]
    plain = sw.consolidate(model)
    plain.head.weight.data.zero_()  # the copy shares no storage with the original
    assert [(n, type(m), id(m)) for n, m in model.named_modules()] == types
    after = model.state_dict()
    assert after.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(after[k], v), k
    assert model.softwidth_profile is record and isinstance(model.stem[0], Conv1d)
    assert float(w1.value.detach()) == pytest.approx(1 + 5 * 3.4 / 5)


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_train_eval_mode_is_kept(mode):
    model, _ = _nested()
    model.train(mode == "train")
    if mode == "mixed":
        model.train()
        model.stem.eval()
    plain = sw.consolidate(model)
    original = dict(model.named_modules())
    for name, m in plain.named_modules():
        if name in original:
            assert m.training == original[name].training, name
    layer = Linear(nn.Linear(3, 4), out_width=Width(4)).eval()
    assert type(sw.consolidate(layer)) is nn.Linear and not sw.consolidate(layer).training


def test_torchscript_sequential_and_custom_class():
    w = Width(6, init=3.3)
    seq = nn.Sequential(Conv1d(nn.Conv1d(2, 6, 3), out_width=w), BatchNorm(nn.BatchNorm1d(6), w), nn.ReLU(),
                        Conv1d(nn.Conv1d(6, 6, 3, groups=6), in_width=w, out_width=w),
                        Conv1d(nn.Conv1d(6, 2, 1), in_width=w)).eval()
    x = torch.randn(2, 2, 10)
    scripted = torch.jit.script(sw.consolidate(seq))
    assert torch.allclose(scripted(x), seq(x), atol=1e-5)
    model, _ = _nested()
    scripted = torch.jit.script(sw.consolidate(model))
    x = torch.randn(2, 2, 7)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, _ = _nested()
    plain = sw.consolidate(model)
    x = torch.randn(2, 2, 9)
    path = tmp_path / "nested.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(plain, (x,), str(path), dynamo=False, input_names=["x"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": x.numpy()})
    assert torch.allclose(torch.from_numpy(out), model(x).detach(), atol=1e-4)


def test_saved_torchscript_runs_without_softwidth(tmp_path):
    model, _ = _nested()
    x = torch.randn(2, 2, 8)
    torch.jit.save(torch.jit.script(sw.consolidate(model)), str(tmp_path / "model.pt"))
    torch.save({"x": x, "y": model(x).detach()}, str(tmp_path / "io.pt"))
    code = (
        "import sys\n"
        "sys.modules['softwidth'] = None  # importing softwidth would now fail\n"
        "import torch\n"
        f"m = torch.jit.load({str(tmp_path / 'model.pt')!r})\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "assert torch.allclose(m(io['x']), io['y'], atol=1e-5)\n"
        "assert not any(k.startswith('softwidth') and sys.modules[k] is not None for k in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_widths_record_is_json_with_rounded_values():
    model, (w1, w2) = _nested()
    record = sw.widths(model)
    assert json.loads(json.dumps(record)) == record
    assert set(record) == {"stem.0.out_width", "branch.0.out_width"}
    first = record["stem.0.out_width"]
    assert first["rounded"] == w1.rounded == round(first["value"]) and isinstance(first["rounded"], int)
    assert first["max_size"] == 6 and first["min_size"] == 1.0 and first["mix"] == "ramp"
    assert record["branch.0.out_width"]["rounded"] == w2.rounded


def test_consolidate_errors():
    with pytest.raises(SoftWidthError, match="consolidate: expected an nn.Module, got list"):
        sw.consolidate([])

    class Loose(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.w = Width(4)

        def forward(self, x):
            return self.w(self.fc(x))

    with pytest.raises(SoftWidthError, match=r"widths left outside width-aware layers at \['w'\]"):
        sw.consolidate(Loose())


@pytest.mark.parametrize("returned, got", [(None, "NoneType"), ("self", "a module holding softwidth classes")])
def test_a_layer_must_consolidate_into_a_plain_module(returned, got):
    class Bad(DynamicLayer):
        def __init__(self):
            super().__init__()
            self.in_layout = self.out_layout = sw.layers.as_layout(Width(3), 3, where=self.where, role="width")
            self.register_widths(width=self.out_layout)

        def forward(self, x):
            return x

        def cost(self, positions):
            return {"flops": 0.0, "macs": 0.0, "params": 0.0}

        def consolidated(self):
            return self if returned == "self" else returned

    message = rf"^consolidate: {{}} \(Bad\).consolidated\(\) returned {got}; it must return a new stock torch module"
    with pytest.raises(SoftWidthError, match=message.format("1")):
        sw.consolidate(nn.Sequential(nn.Identity(), Bad()))
    with pytest.raises(SoftWidthError, match=message.format("the model")):
        sw.consolidate(Bad())
