"""Width-aware TransformerEncoderLayer: eval == consolidated stock layer, costs vs FlopCounterMode and
moduleprofiler, gradients, determinism, errors, TorchScript and ONNX export of the consolidated layer."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st
from moduleprofiler import ModuleProfiler
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth.layers.attention import TransformerEncoderLayer
from softwidth.layers.elementwise import ELEMENTWISE_FLOPS

D, FF = 16, 32
CONFIG = dict(heads=st.sampled_from([2, 4]), norm_first=st.booleans(), batch_first=st.booleans(),
              bias=st.booleans(), activation=st.sampled_from(["relu", "gelu"]))


def _make(heads, norm_first, batch_first, bias, activation, *, k_d=float(D), k_f=float(FF), mix="ramp",
          dropout=0.1):
    stock = nn.TransformerEncoderLayer(D, heads, FF, dropout=dropout, activation=activation,
                                       batch_first=batch_first, norm_first=norm_first, bias=bias)
    w_d = sw.Width(D, multiple_of=heads, init=float(k_d), mix=mix)
    w_f = sw.Width(FF, init=float(k_f), mix=mix)
    return TransformerEncoderLayer(stock, model_width=w_d, ff_width=w_f), w_d, w_f


def _input(layer, t, n):
    """``n`` examples of ``t`` positions in the layer's layout; ``n == 0`` is an unbatched ``(t, d)`` input."""
    if n == 0:
        return torch.randn(t, D)
    return torch.randn((n, t, D) if layer.layer.self_attn.batch_first else (t, n, D))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(**CONFIG, k_d=st.floats(1.0, 16.0), k_f=st.floats(1.0, 32.0), t=st.integers(1, 12), n=st.integers(0, 3),
       masked=st.booleans())
def test_eval_output_equals_consolidated(heads, norm_first, batch_first, bias, activation, k_d, k_f, t, n,
                                         masked):
    torch.manual_seed(0)
    layer, w_d, w_f = _make(heads, norm_first, batch_first, bias, activation, k_d=k_d, k_f=k_f)
    layer.eval()
    small = layer.consolidated().eval()
    d = w_d.rounded
    assert type(small) is nn.TransformerEncoderLayer
    sizes = (small.self_attn.embed_dim, small.self_attn.num_heads, small.linear1.out_features)
    assert sizes == (d, heads, w_f.rounded)
    assert small.self_attn.head_dim == d // heads
    x = _input(layer, t, n)  # ungated: the layer must mask what it consumes in eval mode
    kwargs = {}
    if masked:  # causal mask plus padding of the last key of each example (key 0 stays, so no row is empty)
        pad = torch.zeros((t,) if n == 0 else (n, t), dtype=torch.bool)
        pad[..., -1] = t > 1
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        kwargs = dict(src_mask=causal, src_key_padding_mask=pad)
    for grad in (True, False):  # without grad the stock layer may take its fused fast path
        with torch.set_grad_enabled(grad):
            got = layer(x, **kwargs)
            want = small(x[..., :d], **kwargs)
        torch.testing.assert_close(got[..., :d], want, atol=1e-5, rtol=0)
        assert bool((got[..., d:] == 0).all())  # dropped model features are exactly zero


@settings(max_examples=20, deadline=None, derandomize=True)
@given(**CONFIG, heads_d=st.integers(1, 8), f=st.integers(1, FF), t=st.integers(1, 12))
def test_integer_costs_match_flop_counter_moduleprofiler_and_numel(heads, norm_first, batch_first, bias,
                                                                   activation, heads_d, f, t):
    d = min(heads * heads_d, D)
    layer, _, _ = _make(heads, norm_first, batch_first, bias, activation, k_d=d, k_f=f, dropout=0.0)
    small = layer.consolidated().eval()
    x = torch.randn((1, t, d) if batch_first else (t, 1, d))
    # FlopCounterMode on CPU does not see the default fused attention kernel
    # (aten._scaled_dot_product_flash_attention_for_cpu, the 2 * 2 T^2 d FLOPs of scores and attn @ V) nor the
    # fused encoder fast path taken under no_grad (it counts 0). The math backend runs the attention as bmm,
    # and grad mode (parameters require grad) keeps the stock layer off its fast path.
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        small(x)
    c = {kind: float(value.detach()) for kind, value in layer.cost(t).items()}
    assert float(layer.matmul_flops(t).detach()) == counter.get_total_flops()
    assert c["macs"] * 2 == counter.get_total_flops()
    assert c["params"] == sum(p.numel() for p in small.parameters())
    # Linear, LayerNorm and softmax terms from moduleprofiler's own formulas; the rest by hand.
    profiler = ModuleProfiler()
    ops = profiler.estimate_ops(small, x)
    reference = sum(ops[name]["ops"] for name in ("linear1", "linear2", "norm1", "norm2"))
    h = torch.randn(1, t, d)
    reference += profiler.estimate_ops(nn.Linear(d, 3 * d, bias=bias), h)["__root__"]["ops"]  # in_proj
    reference += profiler.estimate_ops(nn.Linear(d, d, bias=bias), h)["__root__"]["ops"]  # out_proj
    reference += profiler.estimate_ops(nn.Softmax(-1), torch.randn(1, heads, t, t))["__root__"]["ops"]
    act = ELEMENTWISE_FLOPS[nn.ReLU if activation == "relu" else nn.GELU]
    reference += 4 * t * t * d + t * t * heads + 2 * d * t + act * f * t  # scores, attn @ V, scale, adds, act
    assert c["flops"] == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize("bias", [True, False])
def test_cost_gradient_matches_finite_differences(bias):
    layer, w_d, w_f = _make(4, False, True, bias, "gelu", k_d=9.3, k_f=17.6)
    layer.double()
    t, step = 7.0, 1e-3
    for kind in ("flops", "macs", "params"):
        grads = torch.autograd.grad(layer.cost(t)[kind], [w_d.value, w_f.value])
        for width, grad in zip((w_d, w_f), grads):
            base = float(width.value.detach())
            with torch.no_grad():
                width.value.fill_(base + step)
                up = float(layer.cost(t)[kind])
                width.value.fill_(base - step)
                down = float(layer.cost(t)[kind])
                width.value.fill_(base)
            assert float(grad) == pytest.approx((up - down) / (2 * step), rel=1e-6)
            assert float(grad) > 0


@pytest.mark.parametrize("mix", ["ramp", "paper"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_task_gradient_reaches_both_widths_in_train_mode(mix, norm_first):
    torch.manual_seed(2)
    layer, w_d, w_f = _make(4, norm_first, True, True, "relu", k_d=10.4, k_f=19.3, mix=mix)
    layer.train()
    x = w_d(torch.randn(8, 6, D))  # the producer's gate
    target = torch.randn(8, 6, D)
    loss = (layer(x) - target).square().mean()
    loss.backward()
    for width in (w_d, w_f):
        assert width.value.grad is not None
        assert bool(torch.isfinite(width.value.grad)) and float(width.value.grad) != 0.0
    assert float(layer.layer.self_attn.in_proj_weight.grad.abs().sum()) > 0


def test_eval_injects_no_noise_and_train_does():
    torch.manual_seed(3)
    layer, w_d, _ = _make(2, False, True, True, "gelu", k_d=7.7, k_f=20.2)
    x = torch.randn(4, 9, D)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # noise and dropout in train mode


def test_profile_counts_sequence_length_and_state_dict_has_no_shared_tensors():
    for batch_first in (False, True):
        layer, _, _ = _make(2, False, batch_first, True, "relu", k_d=10.0, k_f=20.0)
        model = nn.Sequential(layer)
        x = torch.randn((2, 11, D) if batch_first else (11, 2, D))
        record = sw.profile(model, x)
        assert [(e.layer, e.positions) for e in record.entries] == [(layer, 11.0)]
        assert float(sw.cost(model)["flops"].detach()) == pytest.approx(float(layer.cost(11)["flops"].detach()))
    pointers = [v.data_ptr() for v in layer.state_dict().values()]
    assert len(pointers) == len(set(pointers))  # each stock tensor once, as safetensors requires


def test_errors_name_the_rule_and_the_fix():
    stock = nn.TransformerEncoderLayer(D, 4, FF)
    with pytest.raises(sw.SoftWidthError, match=r"Width\(16, multiple_of=4\)"):
        TransformerEncoderLayer(stock, model_width=sw.Width(D, multiple_of=2))
    with pytest.raises(sw.SoftWidthError, match="max_size equal 16"):
        TransformerEncoderLayer(stock, model_width=sw.Width(8, multiple_of=4))
    with pytest.raises(sw.SoftWidthError, match="max_size equal 32"):
        TransformerEncoderLayer(stock, ff_width=sw.Width(16))
    with pytest.raises(sw.SoftWidthError, match="must be a softwidth.Width"):
        TransformerEncoderLayer(stock, model_width=16)
    with pytest.raises(sw.SoftWidthError, match="wraps nn.TransformerEncoderLayer"):
        TransformerEncoderLayer(nn.Linear(D, D))
    with pytest.raises(sw.SoftWidthError, match="activation"):
        TransformerEncoderLayer(nn.TransformerEncoderLayer(D, 4, FF, activation=torch.tanh))
    layer = TransformerEncoderLayer(stock, model_width=sw.Width(D, multiple_of=4))
    with pytest.raises(sw.SoftWidthError, match="has 12 features"):
        layer(torch.randn(5, 2, 12))
    x = torch.randn(5, 2, D)
    x[0, 0, 0] = float("nan")
    with pytest.raises(sw.SoftWidthError, match="NaN"):
        layer(x)
    with pytest.raises(sw.SoftWidthError, match="src_mask"):
        layer(torch.randn(5, 2, D), src_mask=torch.zeros(4, 4))
    with pytest.raises(sw.SoftWidthError, match="src_key_padding_mask"):
        layer(torch.randn(5, 2, D), src_key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))
    with pytest.raises(sw.SoftWidthError, match="is_causal"):
        layer(torch.randn(5, 2, D), is_causal=True)


def test_consolidated_scripts_and_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(4)
    layer, w_d, _ = _make(4, True, True, True, "gelu", k_d=9.0, k_f=21.4)
    small = layer.consolidated().eval()
    x = torch.randn(2, 6, w_d.rounded)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated, still supported
        want = small(x)
        torch.testing.assert_close(torch.jit.script(small)(x), want, atol=1e-5, rtol=0)
    # The legacy exporter (dynamo=False) fails on this layer in torch 2.13 (is_causal is traced as a tensor).
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(small, (x,), buffer, dynamo=True, verbose=False)
    session = ort.InferenceSession(buffer.getvalue())
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=0)
