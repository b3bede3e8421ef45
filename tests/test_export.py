"""Tests of softwidth.export: consolidated models saved as safetensors + JSON and reloaded exactly without
pickle or user code (generic builder) or through a registered builder; TorchScript; ONNX with onnxruntime."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import SoftWidthError, export
from softwidth.layers import BatchNorm, Conv1d, LayerNorm, Linear, TransformerEncoderLayer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore:Converting a tensor with requires_grad")


def _shrink(*widths):
    with torch.no_grad():
        for w, value in widths:
            w.value.fill_(value)


def _mlp():
    torch.manual_seed(0)
    a, b = sw.Width(24), sw.Width(16)
    model = nn.Sequential(Linear(nn.Linear(10, 24), out_width=a), LayerNorm(nn.LayerNorm(24), a), nn.GELU(),
                          Linear(nn.Linear(24, 16), in_width=a, out_width=b), nn.Tanh(), nn.Dropout(0.1),
                          Linear(nn.Linear(16, 3), in_width=b))
    _shrink((a, 9.4), (b, 5.6))
    return sw.consolidate(model.eval()), torch.randn(4, 7, 10)


def _conv():
    torch.manual_seed(1)
    c = sw.Width(12)
    model = nn.Sequential(Conv1d(nn.Conv1d(4, 12, 5, padding=2), out_width=c), BatchNorm(nn.BatchNorm1d(12), c),
                          nn.ReLU(), Conv1d(nn.Conv1d(12, 6, 3, stride=2), in_width=c), nn.AdaptiveAvgPool1d(1),
                          nn.Flatten(1), nn.Sequential(nn.Linear(6, 2), nn.LogSoftmax(-1)))
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(torch.randn(8, 4, 20))
    _shrink((c, 7.0))
    return sw.consolidate(model.eval()), torch.randn(3, 4, 20)


def _transformer():
    torch.manual_seed(2)
    d, f = sw.Width(16, multiple_of=2), sw.Width(32)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, activation="gelu")
    model = nn.Sequential(Linear(nn.Linear(6, 16), out_width=d), TransformerEncoderLayer(layer, model_width=d, ff_width=f),
                          Linear(nn.Linear(16, 2), in_width=d))
    _shrink((d, 10.0), (f, 20.0))
    return sw.consolidate(model.eval()), torch.randn(2, 9, 6)


MODELS = {"mlp": _mlp, "conv": _conv, "transformer": _transformer}


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", MODELS)
def test_round_trip_is_exact_and_needs_no_user_code(tmp_path, name):
    plain, x = MODELS[name]()
    assert not any(type(m).__module__.startswith("softwidth") for m in plain.modules())
    export.save(plain, tmp_path)
    record = json.loads((tmp_path / "model.json").read_text())  # plain JSON: the architecture
    assert record["format"] == "softwidth.export" and record["architecture"]["builder"] == "softwidth.modules"
    raw = (tmp_path / "model.safetensors").read_bytes()
    header = struct.unpack("<Q", raw[:8])[0]
    assert raw[8:9] == b"{" and json.loads(raw[8:8 + header])  # a safetensors file, not a pickle
    loaded = export.load(tmp_path)
    assert not loaded.training
    _assert_same(plain, loaded)
    with torch.no_grad():
        assert torch.equal(plain(x), loaded(x))


def test_generic_description_of_recurrent_and_nested_containers(tmp_path):
    torch.manual_seed(3)
    h = sw.Width(10)
    gru = sw.consolidate(sw.dynamic(nn.GRU(6, 10, num_layers=2, batch_first=True, bidirectional=True), hidden_width=h))
    tree = nn.ModuleDict({"gru": gru, "heads": nn.ModuleList([nn.LSTM(4, 3, proj_size=2), nn.PReLU(3)]),
                          "norm": nn.Sequential(nn.LayerNorm([3, 4], bias=False), nn.Unflatten(1, (2, 2)))})
    description = export.describe(tree)
    assert description["type"] == "ModuleDict" and [n for n, _ in description["children"]] == ["gru", "heads", "norm"]
    gru_args = description["children"][0][1]["args"]
    assert gru_args["hidden_size"] == 10 and gru_args["bidirectional"] is True and "proj_size" not in gru_args
    export.save(tree, tmp_path)
    loaded = export.load(tmp_path)
    _assert_same(tree, loaded)
    x = torch.randn(2, 5, 6)
    assert torch.equal(tree["gru"](x)[0], loaded["gru"](x)[0])


class Net(nn.Module):
    """A user's own model class: saved through a registered builder."""

    def __init__(self, hidden: int, classes: int = 2):
        super().__init__()
        self.body, self.head = nn.Linear(5, hidden), nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_registered_builder(tmp_path):
    export.register_builder("tests.net", Net)
    export.register_builder("tests.net", Net)  # the same function again: fine
    with pytest.raises(SoftWidthError, match="taken"):
        export.register_builder("tests.net", lambda **c: Net(**c))
    net = Net(7)
    with pytest.raises(SoftWidthError, match=r"the model is a .*Net, which the generic builder does not know"):
        export.save(net, tmp_path)
    with pytest.raises(SoftWidthError, match="weights differ"):
        export.save(net, tmp_path, architecture={"builder": "tests.net", "config": {"hidden": 8}})
    with pytest.raises(SoftWidthError, match="no builder 'tests.other'"):
        export.save(net, tmp_path, architecture={"builder": "tests.other", "config": {}})
    with pytest.raises(SoftWidthError, match="not JSON"):
        export.save(net, tmp_path, architecture={"builder": "tests.net", "config": {"hidden": torch.tensor(7)}})
    export.save(net, tmp_path, architecture={"builder": "tests.net", "config": {"hidden": 7}})
    loaded = export.load(tmp_path)
    assert isinstance(loaded, Net)
    x = torch.randn(3, 5)
    assert torch.equal(net(x), loaded(x))
    del export._BUILDERS["tests.net"]  # a process that did not register it
    with pytest.raises(SoftWidthError, match="no builder 'tests.net' is registered"):
        export.load(tmp_path)


def test_load_refuses_bad_folders(tmp_path):
    with pytest.raises(SoftWidthError, match="has no model.json"):
        export.load(tmp_path)
    plain, _ = _mlp()
    export.save(plain, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SoftWidthError, match="cannot read"):
        export.load(tmp_path)
    other, _ = _conv()
    export.save(other, tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "model.safetensors")
    with pytest.raises(SoftWidthError, match="do not fit"):
        export.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(SoftWidthError, match="not valid JSON"):
        export.load(tmp_path)


def test_fit_saves_the_consolidated_model(tmp_path):
    torch.manual_seed(0)
    a = sw.Width(8)
    model = nn.Sequential(Linear(nn.Linear(4, 8), out_width=a), nn.ReLU(), Linear(nn.Linear(8, 1), in_width=a))
    sw.profile(model, torch.zeros(1, 4), seconds=0.01)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(2)]
    mse = lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])
    result = sw.fit(model, data, loss_fn=mse, config=sw.FitConfig(epochs=2, progress=False),
                    cost_term=sw.CostPenalty(model, weight=0.5), out_dir=tmp_path)
    loaded = export.load(tmp_path / "consolidated")
    _assert_same(result.consolidated, loaded)
    assert json.loads((tmp_path / "consolidated" / "model.json").read_text())["widths"] == result.widths

    class Wrapped(nn.Module):  # a user class: only the weights can be saved
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    wrapped = Wrapped()
    sw.profile(wrapped, torch.zeros(1, 4), seconds=0.01)
    sw.fit(wrapped, data, loss_fn=mse, config=sw.FitConfig(epochs=1, progress=False), out_dir=tmp_path / "w")
    assert json.loads((tmp_path / "w" / "consolidated" / "model.json").read_text())["architecture"] is None
    with pytest.raises(SoftWidthError, match="holds weights only"):
        export.load(tmp_path / "w" / "consolidated")


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches(tmp_path, name):
    plain, x = MODELS[name]()
    export.to_torchscript(plain, tmp_path / "model.pt")
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), plain(x), atol=1e-6, rtol=0)


class _Recurrent(nn.Module):
    """Linear -> GRU (hidden width 7 of 12) -> Linear, a user class (GRU returns a tuple)."""

    def __init__(self):
        super().__init__()
        h = sw.Width(12, init=7.0)
        self.gru = sw.dynamic(nn.GRU(5, 12, batch_first=True), hidden_width=h)
        self.head = sw.dynamic(nn.Linear(12, 2), in_width=h)

    def forward(self, x):
        return self.head(self.gru(x)[0])


@pytest.mark.parametrize("name", ["mlp", "transformer", "gru"])
def test_onnx_matches_onnxruntime(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    if name == "gru":
        torch.manual_seed(4)
        plain, x = sw.consolidate(_Recurrent().eval()), torch.randn(3, 6, 5)
        assert isinstance(plain.gru, nn.GRU) and plain.gru.hidden_size == 7
    else:
        plain, x = MODELS[name]()
    export.to_onnx(plain, x, tmp_path / "model.onnx", dynamic=(0, 1))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    other = torch.randn(x.shape[0] + 2, x.shape[1] + 3, *x.shape[2:])  # another batch and length: dynamic axes
    for inp in (x, other):
        got = session.run(None, {session.get_inputs()[0].name: inp.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), plain(inp), atol=1e-4, rtol=0)


def test_onnx_refuses_a_size_one_dynamic_axis(tmp_path):
    plain, _ = _mlp()
    with pytest.raises(SoftWidthError, match="size >= 2"):
        export.to_onnx(plain, torch.randn(1, 7, 10), tmp_path / "m.onnx")



def test_consolidated_crnn_vad_exports_to_onnx_with_its_sparse_mel_bank(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from softwidth_studies.vad.models import build_model

    torch.manual_seed(5)
    sizes = {"conv1": 12, "conv2": 10, "hidden": 8, "bands": 20}
    plain = sw.consolidate(build_model("crnn", sizes, dynamic="all").eval())
    assert plain.mel.weights.numel() < plain.mel.bank.numel()  # the graph runs the bank's nonzeros only
    x = torch.rand(2, 150, 201) * 10
    # the whole model with a dynamic batch (torch.export may specialise the CRNN's frames axis), its front end with
    # dynamic batch and frames
    for module, name, dynamic, other in ((plain, "vad", (0,), torch.rand(3, 150, 201) * 10),
                                         (plain.mel, "mel", (0, 1), torch.rand(3, 230, 201) * 10)):
        export.to_onnx(module, x, tmp_path / f"{name}.onnx", dynamic=dynamic)
        session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for inp in (x, other):
            got = session.run(None, {session.get_inputs()[0].name: inp.numpy()})[0]
            with torch.no_grad():
                torch.testing.assert_close(torch.from_numpy(got), module(inp), atol=1e-4, rtol=0)
            # the same answer every run: onnxruntime's ScatterND(add) raced on repeated indices (what index_add
            # exported to); the bank's ScatterElements(add) does not
            for _ in range(10):
                again = session.run(None, {session.get_inputs()[0].name: inp.numpy()})[0]
                assert (again == got).all()
    scripted = torch.jit.script(plain.mel)  # the front end scripts on its own (the VAD's input check does not)
    torch.testing.assert_close(scripted(x), plain.mel(x), atol=1e-6, rtol=0)
