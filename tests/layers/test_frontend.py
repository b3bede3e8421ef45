"""Tests of softwidth.layers.frontend: the log-mel front end whose band count is a width."""

from __future__ import annotations

import copy
import math
import operator
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from softwidth.errors import SoftWidthError
from softwidth.layers.frontend import LogMel, mel_filters, sparse_bank, sparse_mel
from softwidth.layers.linear import Linear
from softwidth.width import Width

SR, N_FFT, HOP, N_MELS = 8000, 256, 80, 20
N_FREQ = N_FFT // 2 + 1
SAMPLES = SR // 4  # 0.25 s
FRAMES = 1 + SAMPLES // HOP


def make(width: Width | None = None, **kwargs) -> LogMel:
    options = dict(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, width=width)
    options.update(kwargs)
    return LogMel(**options)


def waveform(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def reference_bank(n: int, f_min: float, f_max: float) -> np.ndarray:
    """Standard n-band HTK mel bank (norm=None), written as a plain loop: an independent reference."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(to_mel(f_min), to_mel(f_max), n + 2) / 2595.0) - 1.0)
    bank = np.zeros((N_FREQ, n))
    for band in range(n):
        low, mid, high = edges[band:band + 3]
        for b in range(N_FREQ):
            f = b * SR / N_FFT
            if low <= f <= mid:
                bank[b, band] = (f - low) / (mid - low)
            elif mid < f <= high:
                bank[b, band] = (high - f) / (high - mid)
    return bank


def bank_at(k, f_min=0.0, f_max=SR / 2):
    return mel_filters(k, n_mels=N_MELS, n_fft=N_FFT, sample_rate=SR, f_min=f_min, f_max=f_max)


# -- filter bank ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 20])
@pytest.mark.parametrize("f_min,f_max", [(0.0, 4000.0), (60.0, 3400.0)])
def test_bank_at_integer_k_is_the_standard_n_band_bank(n, f_min, f_max):
    bank = bank_at(float(n), f_min, f_max)
    assert bank.shape == (N_FREQ, N_MELS)
    np.testing.assert_allclose(bank[:, :n].numpy(), reference_bank(n, f_min, f_max), atol=1e-10)
    assert float(bank[:, n + 1:].abs().sum()) < 1e-12  # bands > K see nothing up to f_max


@pytest.mark.parametrize("n", [3, 20])
def test_bank_matches_librosa(n):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=n, fmin=100.0, fmax=3800.0, htk=True, norm=None,
                              dtype=np.float64).T
    np.testing.assert_allclose(bank_at(float(n), 100.0, 3800.0)[:, :n].numpy(), ref, atol=1e-10)


def test_bank_is_continuous_and_differentiable_in_k():
    for n in (4, 11):
        jump = (bank_at(n + 1e-6) - bank_at(n - 1e-6)).abs().max()
        assert float(jump) < 1e-5
    k = torch.tensor(6.4, requires_grad=True)
    (grad,) = torch.autograd.grad(bank_at(k)[:, :6].sum(), k)
    assert math.isfinite(float(grad)) and float(grad) != 0.0
    assert not torch.equal(bank_at(6.0)[:, :6], bank_at(6.4)[:, :6])  # not the first filters of a bank


def test_bank_stays_finite_for_many_bands_at_small_k():
    bank = mel_filters(torch.tensor(1.0), n_mels=512, n_fft=N_FFT, sample_rate=48000, f_min=0.0, f_max=24000.0)
    assert bool(torch.isfinite(bank).all()) and bool((bank[:, 2:] == 0).all())


# -- STFT ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("center,win_length", [(True, None), (True, 200), (False, None)])
def test_power_matches_torch_stft(center, win_length):
    layer = make(center=center, win_length=win_length)
    x = waveform(3, SAMPLES)
    win = win_length or N_FFT
    spec = torch.stft(x, N_FFT, HOP, win_length=win, window=torch.hann_window(win), center=center,
                      pad_mode="reflect", return_complex=True)
    ref = spec.abs().square().transpose(-1, -2)
    power = layer.power(x)
    assert power.shape == ref.shape
    torch.testing.assert_close(power, ref, rtol=1e-4, atol=1e-4 * float(ref.max()))


def test_shapes_batched_and_unbatched():
    layer = make(Width(N_MELS, init=9.0)).eval()
    x = waveform(2, SAMPLES)
    y = layer(x)
    assert y.shape == (2, FRAMES, N_MELS)
    torch.testing.assert_close(layer(x[1]), y[1], rtol=0, atol=1e-5)
    assert layer.count_positions((x,), y, 2) == FRAMES
    assert layer.count_positions((x[1],), layer(x[1]), 1) == FRAMES


# -- eval mode and consolidation -------------------------------------------------------------------------
def test_eval_output_equals_consolidated_for_random_real_k():
    gen = torch.Generator().manual_seed(1)
    x = waveform(3, SAMPLES, seed=2)
    for _ in range(5):
        init = float(1 + (N_MELS - 1) * torch.rand((), generator=gen))
        width = Width(N_MELS, init=init)
        layer = make(width).eval()
        n = width.rounded
        y = layer(x)
        plain = layer.consolidated()
        assert isinstance(plain, fx.GraphModule) and type(plain).__name__ == "LogMel"
        assert plain.bank.shape == (N_FREQ, n) and not list(plain.parameters())
        torch.testing.assert_close(plain(x), y[..., :n], rtol=0, atol=1e-5)
        assert bool((y[..., n:] == 0).all())
        assert float(width.value.detach()) == init  # consolidation does not touch the width


def test_fixed_band_count_without_width():
    layer = make(None)
    assert layer.out_layout.max_size == N_MELS and not layer.out_layout.is_dynamic and layer.in_layout is None
    x = waveform(2, SAMPLES)
    ref = torch.log(layer.power(x) @ torch.from_numpy(reference_bank(N_MELS, 0.0, SR / 2)).float() + 1e-6)
    torch.testing.assert_close(layer.train()(x), ref, rtol=0, atol=1e-4)
    torch.testing.assert_close(layer.consolidated()(x), ref, rtol=0, atol=1e-4)
    assert layer.cost(10.0)["params"] == 0.0


def test_eval_is_deterministic_and_train_is_noisy():
    layer = make(Width(N_MELS, init=8.5))
    x = waveform(4, SAMPLES)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(1)
    assert not torch.equal(a, layer(x))


# -- cost ------------------------------------------------------------------------------------------------
class ArithmeticCount(fx.Interpreter):
    """Runs a consolidated front end and counts what it executes besides matmuls: one op per output element
    of every elementwise multiply, add and log, and one add per source element of ``scatter_add``; gathers,
    padding, framing and zeros are free. Independent of the layer's cost formula."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.ops = 0

    def run_node(self, node):
        out = super().run_node(node)
        if node.op == "call_method" and node.target in ("scatter_add", "index_add"):
            self.ops += self.env[node.args[3]].numel()
        elif node.target in (operator.mul, operator.add, torch.log) and isinstance(out, torch.Tensor):
            self.ops += out.numel()
        return out


def executed_flops(plain: fx.GraphModule, x: torch.Tensor) -> int:
    """Matmul FLOPs (FlopCounterMode) plus the hand count of every other arithmetic op of one forward."""
    counter = ArithmeticCount(plain)
    with FlopCounterMode(display=False) as flops:
        counter.run(x)
    return flops.get_total_flops() + counter.ops


def bank_nonzeros(n: int, **kwargs) -> int:
    """Nonzeros of the first ``n`` columns of the ``n``-band bank (at ``n_mels = N_MELS`` unless given)."""
    options = dict(n_mels=N_MELS, n_fft=N_FFT, sample_rate=SR, f_min=0.0, f_max=SR / 2)
    options.update(kwargs)
    return int(torch.count_nonzero(mel_filters(float(n), **options)[:, :n]))


def test_nonzeros_are_the_banks_nonzero_counts_at_integers():
    layer = make(None)
    for n in range(N_MELS + 1):
        assert float(layer.nonzeros(n)) == bank_nonzeros(n)
    wide = LogMel(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80)  # the VAD front end
    assert [float(wide.nonzeros(n)) for n in (2, 5, 16, 27, 80)] == [252, 315, 368, 380, 393]
    assert float(wide.nonzeros(27)) == bank_nonzeros(27, n_mels=80, n_fft=400, sample_rate=16000, f_max=8000.0)


def test_nonzeros_interpolate_linearly_with_a_gradient():
    layer = make(None)
    k = torch.tensor(6.25, dtype=torch.float64, requires_grad=True)
    value = layer.nonzeros(k)
    (grad,) = torch.autograd.grad(value, k)
    assert float(grad) == bank_nonzeros(7) - bank_nonzeros(6)
    assert float(value) == pytest.approx(bank_nonzeros(6) + 0.25 * (bank_nonzeros(7) - bank_nonzeros(6)))
    for n in (1, 7, N_MELS - 1):  # continuous at the integers
        assert float(layer.nonzeros(n + 1e-9)) == pytest.approx(float(layer.nonzeros(n - 1e-9)), abs=1e-6)
    assert float(layer.nonzeros(float(N_MELS))) == bank_nonzeros(N_MELS)


@pytest.mark.parametrize("init", [1.0, 6.0, 13.0, 20.0])
def test_cost_equals_what_the_consolidated_module_executes(init):
    width = Width(N_MELS, init=init)
    layer = make(width).eval()
    n, batch = width.rounded, 2
    plain = layer.consolidated()
    nnz = bank_nonzeros(n)
    assert plain.weights.shape == plain.bins.shape == plain.bands.shape == (nnz,)
    with FlopCounterMode(display=False) as counter:
        plain(waveform(batch, SAMPLES))
    assert counter.get_total_flops() == batch * FRAMES * 2 * N_FFT * 2 * N_FREQ  # only the DFT is a matmul
    cost = layer.cost(FRAMES)
    assert executed_flops(plain, waveform(batch, SAMPLES)) == batch * float(cost["flops"])
    assert float(cost["flops"]) == FRAMES * (2 * N_FFT * 2 * N_FREQ + 3 * N_FREQ + 2 * nnz + 2 * n)
    assert float(cost["macs"]) == FRAMES * (N_FFT * 2 * N_FREQ + nnz) and cost["params"] == 0.0
    assert 2 * nnz < 2 * N_FREQ * n  # cheaper than the dense bank


def test_cost_gradient_matches_finite_differences():
    width = Width(N_MELS, init=7.5)
    layer = make(width)
    (grad,) = torch.autograd.grad(layer.cost(FRAMES)["flops"], width.value)
    h = 0.25  # the cost is linear in K between integers; a wide step keeps float32 rounding out of the quotient
    with torch.no_grad():
        width.value.fill_(7.5 + h)
        up = float(layer.cost(FRAMES)["flops"])
        width.value.fill_(7.5 - h)
        down = float(layer.cost(FRAMES)["flops"])
    assert float(grad) == pytest.approx((up - down) / (2 * h), rel=1e-4)
    assert float(grad) == pytest.approx(FRAMES * (2 * (bank_nonzeros(8) - bank_nonzeros(7)) + 2))


# -- the sparse bank -----------------------------------------------------------------------------------------
def test_sparse_bank_holds_exactly_the_nonzeros():
    bank = mel_filters(9.0, n_mels=N_MELS, n_fft=N_FFT, sample_rate=SR, f_min=0.0, f_max=SR / 2)[:, :9]
    bins, bands, weights = sparse_bank(bank)
    assert bins.dtype == bands.dtype == torch.int64 and weights.dtype == bank.dtype
    assert bool((weights != 0).all()) and bool((bands[1:] >= bands[:-1]).all())
    dense = torch.zeros_like(bank).index_put((bins, bands), weights)
    assert torch.equal(dense, bank)
    power = torch.rand(2, 5, N_FREQ, dtype=torch.float64)
    torch.testing.assert_close(sparse_mel(power, bins, bands, weights, 9), power @ bank, rtol=1e-12, atol=1e-12)
    with pytest.raises(SoftWidthError, match="sparse_bank"):
        sparse_bank(bank[0])


def test_state_dict_keeps_the_dense_bank_and_loading_refreshes_the_sparse_buffers():
    layer = make(Width(N_MELS, init=11.0)).eval()
    plain = layer.consolidated()
    assert list(plain.state_dict()) == ["basis", "bank"]
    x = waveform(2, SAMPLES)
    other = torch.rand(N_FREQ, 11) * (torch.rand(N_FREQ, 11) > 0.7)  # another sparsity pattern (e.g. pruned)
    state = {**plain.state_dict(), "bank": other}
    copied = copy.deepcopy(plain)
    assert list(copied.state_dict()) == ["basis", "bank"]  # a deep copy keeps the sparse buffers out of it
    for module in (plain, copied):
        module.load_state_dict(state)
        assert list(module.state_dict()) == ["basis", "bank"]
        assert module.weights.shape == (int(torch.count_nonzero(other)),)
        want = torch.log(layer.power(x) @ other + 1e-6)
        torch.testing.assert_close(module(x), want, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.jit.script(module)(x), want, rtol=0, atol=1e-5)


# -- gradient to K -----------------------------------------------------------------------------------------
def test_train_loss_gradient_reaches_k():
    torch.manual_seed(0)
    width = Width(N_MELS, init=8.4, temperature=1.0)
    layer = make(width).train()
    layer(waveform(4, SAMPLES)).square().mean().backward()
    grad = width.value.grad
    assert grad is not None and math.isfinite(float(grad)) and float(grad) != 0.0


def test_gradient_flows_through_the_filter_shapes():
    # With the paper's mix, bands well below K pass with share 1 and a flat gate: any gradient on them
    # comes from the filter shapes alone.
    torch.manual_seed(0)
    width = Width(N_MELS, init=8.4, mix="paper")
    layer = make(width).train()
    layer(waveform(4, SAMPLES))[..., :6].mean().backward()
    grad = width.value.grad
    assert grad is not None and math.isfinite(float(grad)) and float(grad) != 0.0


def test_without_shape_grad_k_learns_through_the_gate_only():
    # The bands of the test above, well below K, get no gradient once the shape path is cut; the boundary
    # band's noise mix still reaches K, and the forward pass (the bank at the real K) is unchanged.
    x = waveform(4, SAMPLES)
    grads, outputs = {}, {}
    for shape_grad in (True, False):
        torch.manual_seed(0)
        width = Width(N_MELS, init=8.4, mix="paper")
        layer = make(width, shape_grad=shape_grad).train()
        torch.manual_seed(1)
        outputs[shape_grad] = layer(x)
        outputs[shape_grad][..., :6].mean().backward(retain_graph=True)
        low = width.value.grad.clone()
        width.value.grad = None
        outputs[shape_grad].mean().backward()
        grads[shape_grad] = (float(low), float(width.value.grad))
        assert layer.filters().requires_grad is shape_grad
    assert torch.equal(outputs[True], outputs[False])
    assert grads[False][0] == 0.0 and grads[True][0] != 0.0
    assert math.isfinite(grads[False][1]) and grads[False][1] != 0.0 and grads[False][1] != grads[True][1]
    assert "shape_grad=False" in repr(make(Width(N_MELS), shape_grad=False))


# -- export ------------------------------------------------------------------------------------------------
def test_consolidated_scripts_and_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    layer = make(Width(N_MELS, init=12.6)).eval()
    plain = layer.consolidated().eval()
    x, other = waveform(3, SAMPLES), waveform(2, SAMPLES - 333, seed=5)
    scripted = torch.jit.script(plain)
    torch.testing.assert_close(scripted(x), plain(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(scripted(x[0]), plain(x)[0], rtol=0, atol=1e-5)
    path = tmp_path / "logmel.onnx"
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=N_FFT, max=10 * SR)}
    torch.onnx.export(plain, (x,), str(path), dynamo=True, input_names=["waveform"], dynamic_shapes=(dims,),
                      verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for inp in (x, other):  # a different batch and length than exported with
        (out,) = session.run(None, {"waveform": inp.numpy()})
        np.testing.assert_allclose(out, plain(inp).numpy(), rtol=0, atol=1e-4)


def test_saved_script_runs_without_softwidth(tmp_path):
    layer = make(Width(N_MELS, init=5.0)).eval()
    path = tmp_path / "logmel.pt"
    torch.jit.save(torch.jit.script(layer.consolidated()), str(path))
    x = waveform(2, SAMPLES)
    torch.save(x, tmp_path / "x.pt")
    expected = layer(x)[..., :5]
    torch.save(expected, tmp_path / "expected.pt")
    code = textwrap.dedent(f"""
        import sys, torch
        model = torch.jit.load({str(path)!r})
        out = model(torch.load({str(tmp_path / 'x.pt')!r}))
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        assert "softwidth" not in sys.modules, "softwidth was imported"
        assert out.shape == expected.shape, out.shape
        assert float((out - expected).abs().max()) < 1e-5
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- integration with the probe -----------------------------------------------------------------------------
def test_probe_cost_and_consolidation_of_a_frontend_model():
    from softwidth import consolidate, cost, profile

    width = Width(N_MELS, init=9.0)
    model = nn.Sequential(make(width), Linear(nn.Linear(N_MELS, 3), in_width=width))
    profile(model, torch.zeros(1, SAMPLES), seconds=0.25)
    total = cost(model)["flops"]
    assert float(total) == pytest.approx(float(model[0].cost(FRAMES)["flops"] + model[1].cost(FRAMES)["flops"]))
    model.eval()
    x = waveform(2, SAMPLES)
    torch.testing.assert_close(consolidate(model)(x), model(x), rtol=0, atol=1e-4)


# -- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    dict(width=Width(N_MELS + 1)),
    dict(width=nn.Linear(2, 2)),
    dict(sample_rate=0), dict(sample_rate=-8000), dict(sample_rate=float("nan")),
    dict(n_fft=0), dict(n_fft=-256), dict(n_fft=256.0),
    dict(hop_length=0), dict(hop_length=-80), dict(hop_length=N_FFT + 1),
    dict(win_length=0), dict(win_length=N_FFT + 1),
    dict(n_mels=0),
    dict(f_max=SR / 2 + 1), dict(f_min=-1.0), dict(f_min=3000.0, f_max=2000.0),
    dict(log_eps=0.0),
    dict(shape_grad=1), dict(shape_grad="no"),
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(SoftWidthError):
        make(**kwargs)


@pytest.mark.parametrize("x", [
    torch.zeros(2, 3, SAMPLES),  # wrong rank
    torch.zeros(()),
    torch.full((2, SAMPLES), float("nan")),
    torch.zeros(2, N_FFT // 2),  # too short to reflect-pad
    torch.zeros(2, SAMPLES, dtype=torch.int64),
])
def test_bad_inputs_raise(x):
    with pytest.raises(SoftWidthError, match="LogMel"):
        make(Width(N_MELS))(x)


def test_short_input_without_center_raises():
    with pytest.raises(SoftWidthError, match="at least 256"):
        make(center=False)(torch.zeros(N_FFT - 1))
    assert make(center=False)(torch.zeros(N_FFT)).shape == (1, N_MELS)


# -- power-spectrum input ----------------------------------------------------------------------------------
def test_power_input_equals_waveform_input_and_its_consolidation():
    width = Width(N_MELS, init=7.3)
    wave_layer, power_layer = make(width), make(width, input="power")
    x = waveform(2, SAMPLES)
    power = wave_layer.power(x)
    for mode in (True, False):
        wave_layer.train(mode), power_layer.train(mode)
        torch.manual_seed(3)
        a = wave_layer(x)
        torch.manual_seed(3)
        torch.testing.assert_close(power_layer(power), a, rtol=0, atol=0)
    plain = power_layer.eval().consolidated()
    assert type(plain).__name__ == "LogMel" and plain.bank.shape == (N_FREQ, width.rounded)
    torch.testing.assert_close(plain(power), power_layer(power)[..., :width.rounded], rtol=0, atol=1e-5)
    torch.jit.script(plain)


def test_power_input_cost_counts_only_the_mel_bank_and_log():
    for n in (1, 6, N_MELS):
        width = Width(N_MELS, init=float(n))
        layer = make(width, input="power").eval()
        plain, power = layer.consolidated(), torch.rand(2, FRAMES, N_FREQ)
        with FlopCounterMode(display=False) as counter:
            plain(power)
        assert counter.get_total_flops() == 0  # no matmul: the sparse bank is gathers, products and adds
        cost, nnz = layer.cost(FRAMES), bank_nonzeros(n)
        assert executed_flops(plain, power) == 2 * float(cost["flops"])
        assert float(cost["flops"]) == FRAMES * (2 * nnz + 2 * n)
        assert float(cost["macs"]) == FRAMES * nnz


@pytest.mark.parametrize("x", [torch.rand(2, FRAMES, N_FREQ + 1), torch.rand(FRAMES), torch.ones(2, 3, N_FREQ,
                                                                                                 dtype=torch.long)])
def test_power_input_rejects_wrong_shapes_and_dtypes(x):
    with pytest.raises(SoftWidthError, match="power"):
        make(Width(N_MELS), input="power")(x)


def test_unknown_input_kind_raises():
    with pytest.raises(SoftWidthError, match="input must be"):
        make(None, input="spectrogram")
