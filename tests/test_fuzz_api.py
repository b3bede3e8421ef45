"""Fuzzing the public API with hypothesis: random shapes, dtypes, widths, bounds, NaN/inf and values of the
wrong type. Each example draws valid arguments, then spoils none, one or two of them (junk: None, bools,
strings, lists, NaN, inf, 0, -1, 2**70, ...; or a wrong shape, dtype, feature count, NaN in a tensor).
Every call either works or raises the documented exception, :class:`softwidth.SoftWidthError` (a
ValueError; ``AudioError`` is one) with a one-line message; any other exception (TypeError, RuntimeError,
AttributeError, ZeroDivisionError, MemoryError, ...) fails the test. A call with nothing spoiled must work
and its result must obey the documented invariants (finite, in bounds, right shape).

Out of scope, documented in docs/reliability.md: a floating-point input of another dtype than a layer's
weights (float64 into a float32 layer) gets torch's own RuntimeError, exactly as the stock layer does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import softwidth as sw
from softwidth import FitConfig, Schedule, SoftWidthError, Width
from softwidth_studies.data.audio import read_audio, write_wav
from softwidth_studies.data.features import FeatureConfig, extract, lfcc, log_mel

pytestmark = pytest.mark.filterwarnings("ignore")

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,  # seeded: the same examples every run
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NAN, INF = float("nan"), float("inf")
JUNK = st.one_of(st.none(), st.booleans(), st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=3),
                 st.just([1]), st.just(object()),
                 st.sampled_from([NAN, INF, -INF, 0, -1, 0.0, -0.5, 1e-300, 1e300, 2**70, -2**70, 10**9]))
REFUSED = object()


def attempt(f, *args, **kwargs):
    """``f(*args, **kwargs)``, or ``REFUSED`` if it raised SoftWidthError (whose message must be one line);
    any other exception propagates and fails the test."""
    try:
        return f(*args, **kwargs)
    except SoftWidthError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), "error messages are one line"
        return REFUSED


@st.composite
def spoil(draw, valid: dict, junk: dict | None = None):
    """``(kwargs, spoiled)``: a draw of every strategy in ``valid``, then 0-2 of them replaced by a draw of
    ``junk[name]`` (default :data:`JUNK`); ``spoiled`` names them."""
    kwargs = {name: draw(strategy) for name, strategy in valid.items()}
    n = draw(st.sampled_from([0, 0, 1, 1, 2]))
    names = draw(st.lists(st.sampled_from(sorted(valid)), min_size=n, max_size=n, unique=True))
    for name in names:
        kwargs[name] = draw((junk or {}).get(name, JUNK))
    return kwargs, set(names)


def finite(t) -> bool:
    return bool(torch.isfinite(t).all())


@st.composite
def bad_tensors(draw, shape: tuple[int, ...]):
    """What can be wrong with a tensor of ``shape``: dtype, rank, a feature count, NaN/inf values, no tensor."""
    x = torch.randn(shape)
    how = draw(st.sampled_from(["int", "bool", "complex", "rank", "features", "nan", "inf", "empty", "list"]))
    if how in ("int", "bool", "complex"):
        return {"int": (x * 9).long(), "bool": x > 0, "complex": x.to(torch.complex64)}[how]
    if how == "rank":
        return torch.randn(*shape, 2) if draw(st.booleans()) else torch.randn(())
    if how == "features":
        return torch.randn(*shape[:-1], shape[-1] + draw(st.sampled_from([-1, 1, 5])))
    if how in ("nan", "inf"):
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = NAN if how == "nan" else -INF
        return x
    return torch.zeros(0) if how == "empty" else x.tolist()


# -- widths and layouts -------------------------------------------------------------------------------------

@st.composite
def width_arguments(draw):
    max_size = draw(st.integers(1, 40))
    min_size = 1 + draw(st.floats(0, 1)) * (max_size - 1)
    valid = {"max_size": st.just(max_size), "min_size": st.just(min_size),
             "init": st.floats(min_size, max_size), "mix": st.sampled_from(["ramp", "paper"]),
             "temperature": st.floats(0.01, 10), "multiple_of": st.sampled_from(
                 [d for d in range(1, max_size + 1) if max_size % d == 0 and d <= min_size]),
             "name": st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4))}
    junk = {"max_size": st.one_of(JUNK, st.just(2**24 + 1)), "mix": st.sampled_from(["Ramp", "", None, 3]),
            "name": st.sampled_from([3, b"x", ["w"]])}
    return draw(spoil(valid, junk))


@FUZZ
@given(args=width_arguments(), kappa_min=st.one_of(st.none(), st.floats(-0.5, 1.5), JUNK))
def test_width_construction(args, kappa_min):
    kwargs, spoiled = args
    if kappa_min is not None:  # either bound may be given, not both
        kwargs = {**kwargs, "min_size": None, "init": None, "kappa_min": kappa_min}
        spoiled = spoiled | {"kappa_min"}
    w = attempt(Width, kwargs.pop("max_size"), **kwargs)
    assert w is not REFUSED or spoiled
    if w is REFUSED:
        return
    value = float(w.real())
    assert math.isfinite(value) and w.min_size <= value <= w.max_size
    assert w.rounded % w.multiple_of == 0 and w.min_size - w.multiple_of < w.rounded <= w.max_size
    assert w.shares().shape == (w.max_size,)


@FUZZ
@given(rank=st.integers(1, 4), data=st.data(), train=st.booleans(), mix=st.sampled_from(["ramp", "paper"]),
       init=st.floats(1.0, 6.0), ordering=st.sampled_from([0.0, 1.0]),
       dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]))
def test_width_gate(rank, data, train, mix, init, ordering, dtype):
    """Any float dtype, any rank, feature axis anywhere: the gate keeps shape and dtype and stays finite."""
    dim = data.draw(st.integers(-rank, rank - 1))
    shape = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    shape[dim] = 6
    x = torch.randn(shape).to(dtype) * 3
    (args, spoiled) = data.draw(spoil({"x": st.just(x), "dim": st.just(dim)},
                                      {"x": bad_tensors(tuple(shape)), "dim": st.one_of(st.sampled_from(
                                          [rank, -rank - 1, 1.0, "x"]), JUNK)}))
    w = Width(6, init=init, mix=mix)
    w.set_ordering(ordering)
    w.train(train)
    y = attempt(w, args["x"], args["dim"])
    assert y is not REFUSED or spoiled
    if y is not REFUSED:
        assert y.shape == args["x"].shape and y.dtype == args["x"].dtype and finite(y)


@FUZZ
@given(blocks=st.lists(st.one_of(st.integers(-1, 5), st.sampled_from(["w", "w2"]), JUNK), max_size=4))
def test_concat(blocks):
    widths = {"w": Width(3), "w2": Width(4)}
    layout = attempt(sw.concat, *[widths.get(b, b) if isinstance(b, str) else b for b in blocks])
    valid = blocks and all((isinstance(b, str) and b in widths) or (type(b) is int and b >= 1) for b in blocks)
    assert (layout is not REFUSED) == bool(valid)
    if layout is not REFUSED:
        assert layout.max_size == sum(b.max_size if isinstance(b, Width) else b for b in layout.blocks)


# -- layers -------------------------------------------------------------------------------------------------

def _layer(kind: str, width, other):
    """A width-aware layer of ``kind`` with 6 features (``width`` produced, ``other`` consumed)."""
    if kind == "linear":
        return sw.dynamic(nn.Linear(6, 6), in_width=other, out_width=width)
    if kind == "conv":
        return sw.dynamic(nn.Conv1d(6, 6, 3, padding=1), in_width=other, out_width=width)
    if kind == "gru":
        return sw.dynamic(nn.GRU(6, 6, batch_first=True), in_width=other, hidden_width=width)
    if kind == "layernorm":
        return sw.dynamic(nn.LayerNorm(6), width=width)
    if kind == "batchnorm":
        return sw.dynamic(nn.BatchNorm1d(6), width=width)
    if kind == "transformer":  # other: the feed-forward width (8 features)
        layer = nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
        return sw.dynamic(layer, model_width=width, ff_width=other)
    return sw.dynamic(nn.ReLU(), width=width)


VALID_WIDTHS = {"gru": ["new", "none"], "layernorm": ["new", 6], "batchnorm": ["new", 6], "relu": ["new", 6],
                "transformer": ["heads", "none"]}
VALID_OTHERS = {"transformer": ["ff", "none", 8]}
SHAPES = {"transformer": (2, 3, 6), "linear": (2, 3, 6), "conv": (2, 6, 5), "gru": (2, 3, 6), "layernorm": (3, 6), "batchnorm": (4, 6, 3),
          "relu": (2, 6)}


@FUZZ
@given(kind=st.sampled_from(sorted(SHAPES)), train=st.booleans(), data=st.data())
def test_layers(kind, train, data):
    shape = SHAPES[kind]
    if kind in ("conv", "batchnorm"):  # channels on axis 1: spoil that axis for a wrong feature count
        bad = bad_tensors((shape[0], shape[2], shape[1])).map(lambda t: t.transpose(1, -1)
                                                              if isinstance(t, torch.Tensor) and t.dim() == 3 else t)
    else:
        bad = bad_tensors(shape)
    wrong_width = st.one_of(st.just(Width(5)), st.integers(-1, 7).filter(lambda n: n != 6), JUNK)
    args, spoiled = data.draw(spoil(
        {"width": st.sampled_from(VALID_WIDTHS.get(kind, ["new", "none", 6])),
         "other": st.sampled_from(VALID_OTHERS.get(kind, ["new", "none", 6])),
         "x": st.just(torch.randn(shape))}, {"width": wrong_width, "other": wrong_width, "x": bad}))
    pick = {"new": Width(6, init=3.5), "none": None, "heads": Width(6, init=3.5, multiple_of=2), "ff": Width(8)}
    pick_width = lambda v: pick[v] if isinstance(v, str) and v in pick else v
    if kind not in ("linear", "conv", "gru", "transformer"):
        spoiled.discard("other")  # norms and activations have one width
    layer = attempt(_layer, kind, pick_width(args["width"]), pick_width(args["other"]))
    assert layer is not REFUSED or spoiled - {"x"}
    if layer is REFUSED:
        return
    layer.train(train)
    y = attempt(layer, args["x"])
    assert y is not REFUSED or spoiled
    if y is not REFUSED:
        assert finite(y[0] if isinstance(y, tuple) else y)
    cost = layer.cost(7.0)
    assert all(math.isfinite(float(cost[k])) and float(cost[k]) >= 0 for k in ("flops", "macs", "params"))


# -- probe, cost, objective ---------------------------------------------------------------------------------

def _model():
    torch.manual_seed(0)
    a = Width(6, name="a")
    return nn.Sequential(sw.dynamic(nn.Linear(4, 6), out_width=a), nn.ReLU(), sw.dynamic(nn.Linear(6, 2), in_width=a))


@FUZZ
@given(data=st.data())
def test_profile_cost_and_cost_terms(data):
    args, spoiled = data.draw(spoil(
        {"example": st.integers(1, 3).map(lambda b: torch.randn(b, 7, 4)), "seconds": st.floats(1e-3, 100),
         "weight": st.floats(0, 10), "kind": st.sampled_from(["flops", "macs", "params"]),
         "target": st.floats(0.5, 1.0), "relative": st.just(True), "step_size": st.floats(1e-4, 1.0)},
        {"example": st.one_of(bad_tensors((2, 7, 4)), st.just(torch.zeros(0, 4)), st.just((torch.zeros(2, 4),)),
                              JUNK), "kind": st.sampled_from(["FLOPS", "", None, 3])}))
    model = _model()
    probed = attempt(sw.profile, model, args["example"], seconds=args["seconds"])
    assert probed is not REFUSED or {"example", "seconds"} & spoiled
    if probed is REFUSED:
        for f in (sw.flops, sw.macs, sw.flops_per_second, sw.cost):
            assert attempt(f, model) is REFUSED  # not probed: an error that says so
        return
    for f in (sw.flops, sw.macs, sw.params, sw.flops_per_second):
        value = float(f(model))
        assert math.isfinite(value) and value > 0
    term = attempt(sw.CostPenalty, model, weight=args["weight"], kind=args["kind"])
    assert term is not REFUSED or {"weight", "kind"} & spoiled
    if term is not REFUSED:
        assert 0 <= float(term.penalty()) < INF
    budget = attempt(sw.BudgetController, model, target=args["target"], kind=args["kind"],
                     relative=args["relative"], step_size=args["step_size"])
    assert budget is not REFUSED or {"target", "kind", "relative", "step_size"} & spoiled
    if budget is not REFUSED:
        budget.step()
        assert math.isfinite(float(budget.penalty())) and budget.multiplier >= 0


@FUZZ
@given(data=st.data())
def test_model_level_functions(data):
    args, spoiled = data.draw(spoil({"model": st.just("model"), "width_lr": st.floats(0, 10),
                                     "weight_decay": st.floats(0, 1)}))
    model = _model() if args["model"] == "model" else args["model"]
    groups = attempt(sw.param_groups, model, width_lr=args["width_lr"], weight_decay=args["weight_decay"])
    assert (groups is REFUSED) == bool(spoiled) or (groups is not REFUSED and args["model"] == "model")
    if groups is not REFUSED:
        torch.optim.Adam(groups, lr=1e-3)  # torch accepts what param_groups returns
    for f in (sw.project_, sw.widths, sw.consolidate, sw.params):
        assert (attempt(f, model) is REFUSED) == ("model" in spoiled)


# -- configuration and fit ----------------------------------------------------------------------------------

@st.composite
def schedule_arguments(draw):
    a, b, c = sorted(draw(st.floats(0, 1)) for _ in range(3))
    end = draw(st.floats(1e-3, 5))
    return draw(spoil({"warmup": st.just(a), "anneal_start": st.just(b), "freeze": st.just(c),
                       "temperature_start": st.floats(end, 10), "temperature_end": st.just(end),
                       "ordering": st.floats(0, 1), "width_lr_end": st.floats(1e-3, 1)}))


@FUZZ
@given(args=schedule_arguments())
def test_schedule(args):
    kwargs, spoiled = args
    s = attempt(Schedule, **kwargs)
    assert s is not REFUSED or spoiled
    if s is not REFUSED:
        for p in (0.0, 0.5, 0.9, 1.0):
            assert 0 < s.temperature(p) < INF and 0 < s.width_lr_factor(p) <= 1


@FUZZ
@given(args=spoil({"epochs": st.integers(1, 50), "lr": st.floats(1e-6, 1), "weight_decay": st.floats(0, 1),
                   "width_lr": st.one_of(st.none(), st.floats(1e-6, 1)), "width_travel": st.floats(0.1, 10),
                   "schedule": st.just(Schedule()), "finetune_epochs": st.integers(0, 5),
                   "finetune_lr": st.floats(1e-6, 1), "progress": st.booleans()},
                  {"progress": st.just(True)}))
def test_fit_config(args):
    kwargs, spoiled = args
    assert attempt(FitConfig, **kwargs) is not REFUSED or spoiled


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


_X = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
BATCHES = {"good": [(_X, _X[:, :2])], "empty": [], "nan": [(_X * NAN, _X[:, :2])],
           "wide": [(torch.randn(4, 5), _X[:, :2])], "junk": [("x", 3)], "nolen": iter([(_X, _X[:, :2])])}
LOSSES = {"float": lambda m, b: 1.0, "vector": lambda m, b: m(b[0]), "constant": lambda m, b: torch.ones(()),
          "nan": lambda m, b: _mse(m, b) * NAN, "int": lambda m, b: torch.ones((), dtype=torch.long)}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(args=spoil({"model": st.just("model"), "data": st.just("good"), "loss_fn": st.just(_mse),
                   "config": st.just(FitConfig(epochs=1, progress=False)),
                   "cost_term": st.sampled_from([None, "penalty"]), "out_dir": st.sampled_from([None, "tmp"])},
                  {"data": st.sampled_from(sorted(BATCHES.keys() - {"good"})),
                   "loss_fn": st.one_of(st.sampled_from(sorted(LOSSES)).map(LOSSES.get), JUNK)}))
def test_fit(tmp_path, args):
    kwargs, spoiled = args
    model = _model() if kwargs["model"] == "model" else kwargs["model"]
    if isinstance(model, nn.Module):
        sw.profile(model, torch.zeros(1, 4), seconds=0.01)
    data = BATCHES[kwargs["data"]] if kwargs["data"] in BATCHES else kwargs["data"]
    term = kwargs["cost_term"]
    term = sw.CostPenalty(model, weight=0.1) if term == "penalty" and isinstance(model, nn.Module) else term
    out = tmp_path / "run" if kwargs["out_dir"] == "tmp" else kwargs["out_dir"]
    result = attempt(sw.fit, model, data, loss_fn=kwargs["loss_fn"], config=kwargs["config"], cost_term=term,
                     out_dir=out)
    assert result is not REFUSED or spoiled
    if result is not REFUSED:
        assert len(result.history) == 1 and all(finite(p) for p in result.consolidated.parameters())


# -- front end and features ---------------------------------------------------------------------------------

@st.composite
def stft_arguments(draw):
    rate = draw(st.sampled_from([8000, 16000, 22050]))
    n_fft = draw(st.integers(2, 512))
    f_max = draw(st.one_of(st.none(), st.floats(1.0, rate / 2)))
    return draw(spoil(
        {"sample_rate": st.just(rate), "n_fft": st.just(n_fft), "hop_length": st.integers(1, n_fft),
         "win_length": st.one_of(st.none(), st.integers(1, n_fft)), "n_mels": st.integers(1, 64),
         "f_min": st.floats(0, (f_max or rate / 2) * 0.99), "f_max": st.just(f_max), "log_eps": st.floats(1e-9, 1),
         "waveform": st.sampled_from([(n_fft,), (2, 700), (700 + n_fft,)]).map(lambda s: torch.randn(s) * 0.1)},
        {"n_fft": st.one_of(JUNK, st.just(10**7)), "n_mels": st.one_of(JUNK, st.just(10**8)),
         "waveform": st.one_of(bad_tensors((2, 700)), st.just(torch.zeros(1, 1)))}))


@settings(FUZZ, max_examples=300)  # cheap, and the absurd sizes must come up
@given(args=stft_arguments(), use_width=st.booleans())
def test_logmel_and_features(args, use_width):
    kwargs, spoiled = args
    waveform = kwargs.pop("waveform")
    n_mels = kwargs["n_mels"]
    width = Width(n_mels, init=n_mels / 2 + 0.5) if use_width and "n_mels" not in spoiled else None
    layer = attempt(sw.LogMel, **kwargs, width=width)
    assert layer is not REFUSED or spoiled - {"waveform"}
    if layer is not REFUSED:
        y = attempt(layer, waveform)
        assert y is not REFUSED or spoiled
        assert y is REFUSED or (y.shape[-1] == n_mels and finite(y))
    y = attempt(log_mel, waveform, **kwargs)
    assert y is not REFUSED or spoiled
    assert y is REFUSED or (y.shape[-1] == n_mels and finite(y))
    coeffs = max(1, n_mels // 2) if type(n_mels) is int and n_mels >= 1 else n_mels
    y = attempt(lfcc, waveform, **{k: v for k, v in kwargs.items() if k != "n_mels"}, n_filters=n_mels,
                n_coeffs=coeffs)
    assert y is not REFUSED or spoiled
    assert y is REFUSED or finite(y)
    config = attempt(FeatureConfig, **{k: v for k, v in kwargs.items() if k != "log_eps"})
    assert config is not REFUSED or spoiled - {"waveform", "log_eps"}
    if config is not REFUSED:
        y = attempt(extract, waveform, config)
        assert y is REFUSED or (y.shape[-1] == config.dim and finite(y))


# -- audio I/O arguments (malformed files: tests/data/test_audio_faults.py) ---------------------------------

ARRAYS = {"mono": np.sin(np.arange(800) / 3).astype(np.float32) * 0.5}
ARRAYS.update({"stereo": np.stack([ARRAYS["mono"], -ARRAYS["mono"]], 1), "empty": np.zeros(0),
               "nan": ARRAYS["mono"] * NAN, "3d": np.zeros((2, 2, 2)), "text": "abc", "ragged": [[1.0], [1.0, 2.0]]})


@FUZZ
@given(args=spoil({"path": st.just("good"), "sample_rate": st.sampled_from([8000, 16000, 44100, 1000, 768000]),
                   "max_seconds": st.one_of(st.none(), st.floats(1, 100)), "audio": st.sampled_from(["mono", "stereo"])},
                  {"path": st.one_of(st.sampled_from(["missing", "dir"]), JUNK),
                   "sample_rate": st.one_of(st.sampled_from([999, 768001, 16000.0, np.float32(16000)]), JUNK),
                   "audio": st.one_of(st.sampled_from(sorted(ARRAYS.keys() - {"mono", "stereo"})), JUNK)}))
def test_audio_arguments(tmp_path, args):
    kwargs, spoiled = args
    good = tmp_path / "good.wav"
    write_wav(good, ARRAYS["mono"], 16000)
    path = kwargs["path"]
    path = {"good": good, "missing": tmp_path / "missing.wav", "dir": tmp_path}.get(path, path) \
        if isinstance(path, str) else path
    y = attempt(read_audio, path, kwargs["sample_rate"], max_seconds=kwargs["max_seconds"])
    assert y is not REFUSED or {"path", "sample_rate", "max_seconds"} & spoiled
    if y is not REFUSED:
        assert y.dtype == np.float32 and y.ndim == 1 and len(y) and np.isfinite(y).all()
    audio = kwargs["audio"]
    audio = ARRAYS.get(audio, audio) if isinstance(audio, str) else audio
    written = attempt(write_wav, tmp_path / "out" / "x.wav", audio, kwargs["sample_rate"])
    assert written is not REFUSED or {"audio", "sample_rate"} & spoiled
    if written is not REFUSED:
        assert len(read_audio(written, 16000)) > 0
