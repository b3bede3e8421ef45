"""Numerical faults: softwidth.diagnostics, and fit stopping on NaN/inf in the loss, the features, the gradients,
the widths or the buffers with a message naming the step and the layer, never saving a NaN model and keeping
the last good checkpoint (a resume then finishes bit-identical to an undisturbed run). Widths never leave
their bounds, whatever an optimizer does to them (hypothesis)."""

from __future__ import annotations

import csv
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import softwidth as sw
from softwidth import FitConfig, SoftWidthError, Width, diagnostics
from softwidth.diagnostics import NonFinite, check_finite, locate_nonfinite, nonfinite_tensors
from softwidth.layers import Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

NAN = float("nan")


class Log(nn.Module):
    """log(x): NaN for the negative inputs a Linear layer produces, the layer the diagnostics must name."""

    def forward(self, x):
        return torch.log(x)


def _model(*, log: bool = False, batchnorm: bool = False, stock_first: bool = False) -> nn.Sequential:
    """Profiled (which names every width-aware layer by its path); layer 3 is the BatchNorm or the Log."""
    torch.manual_seed(0)
    hidden = Width(6, name="hidden")
    first = [nn.Linear(8, 8), Linear(nn.Linear(8, 6), out_width=hidden)] if stock_first else \
        [Linear(nn.Linear(8, 6), out_width=hidden)]
    layers = [*first, nn.ReLU(), Linear(nn.Linear(6, 4), in_width=hidden)]
    layers += [nn.BatchNorm1d(4)] if batchnorm else []
    layers += [Log()] if log else []
    model = nn.Sequential(*layers, nn.Linear(4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Log module is not priced
        sw.profile(model, torch.ones(1, 8), seconds=0.01)
    return model


def _data(batches: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(8, 8, generator=g) for _ in range(batches)]
    return [(x, x[:, :1] - x[:, 1:2]) for x in xs]


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _fit(model, loss_fn=_mse, data=None, **kwargs):
    config = kwargs.pop("config", FitConfig(epochs=3, lr=1e-2, progress=False))
    return sw.fit(model, data if data is not None else _data(), loss_fn=loss_fn, config=config, **kwargs)


def _at_call(n: int, action):
    """A loss function that runs ``action(model, batch)`` on its ``n``-th call (1-based), else plain MSE."""
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        if len(calls) == n:
            return action(model, batch)
        return _mse(model, batch)
    return loss_fn


# -- locate_nonfinite, nonfinite_tensors, check_finite -------------------------------------------------------

def test_locate_names_the_first_module_whose_output_is_nonfinite():
    model = _model(log=True)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    report = locate_nonfinite(model, lambda: model(x).sum())
    assert (report.module, report.module_type, report.input_finite) == ("3", "Log", True)
    assert not report.tensors and not report.error and not report.output_finite
    assert str(report) == "first non-finite output: module '3' (Log), its input was finite"


def test_locate_says_when_the_input_was_already_nonfinite():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = torch.tensor([[1.0, NAN, 0.0]])
    report = locate_nonfinite(model, lambda: model(x))
    assert (report.module, report.input_finite) == ("0", False)
    assert "its input was already non-finite (the batch" in str(report)


def test_locate_blames_the_code_after_the_model_and_lists_bad_parameters():
    model = nn.Sequential(nn.Linear(3, 2))
    x = torch.ones(1, 3)
    report = locate_nonfinite(model, lambda: torch.log(model(x) * 0 - 1).sum())
    assert report.module is None and not report.output_finite
    assert str(report) == "every module output was finite: the code after the model made the NaN/inf"
    with torch.no_grad():
        model[0].bias[1] = float("inf")
    report = locate_nonfinite(model, lambda: model(x))
    assert report.module == "0" and report.tensors == ("0.bias",)
    assert "non-finite parameters/buffers: 0.bias" in str(report)


def test_locate_restores_the_random_state_removes_hooks_and_reports_errors():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    state = torch.get_rng_state()
    report = locate_nonfinite(model, lambda: model(torch.ones(4, 3)))
    assert torch.equal(torch.get_rng_state(), state)  # the training run's random stream is untouched
    assert all(not m._forward_hooks for m in model.modules())
    assert str(report).startswith("the rerun was finite everywhere")

    def boom():
        raise RuntimeError("shape\nmismatch")
    report = locate_nonfinite(model, boom)
    assert report.error == "RuntimeError: shape mismatch" and str(report) == "the rerun raised RuntimeError: shape mismatch"
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(SoftWidthError, match="model must be an nn.Module"):
        locate_nonfinite("model", lambda: None)
    with pytest.raises(SoftWidthError, match="run must be a callable"):
        locate_nonfinite(model, "run")


def test_nonfinite_tensors_and_check_finite():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert nonfinite_tensors(model) == [] and nonfinite_tensors(model, grads=True) == []
    check_finite(model)  # nothing to say
    with torch.no_grad():
        model[1].running_var[0] = NAN
        model[0].weight[0, 0] = -float("inf")
    assert nonfinite_tensors(model) == ["0.weight", "1.running_var"]
    with pytest.raises(SoftWidthError, match=r"^saving: non-finite values \(NaN or inf\) in 0.weight, 1.running_var;"):
        check_finite(model, where="saving")
    model[0].bias.grad = torch.tensor([0.0, NAN])
    assert nonfinite_tensors(model, grads=True) == ["0.bias"]
    many = nn.ModuleList(nn.Linear(1, 1) for _ in range(4))
    for layer in many:
        layer.weight.data.fill_(NAN)
        layer.bias.data.fill_(NAN)
    with pytest.raises(SoftWidthError, match=r"in 0.weight, 0.bias, 1.weight, 1.bias, 2.weight and 3 more;"):
        check_finite(many)
    with pytest.raises(SoftWidthError, match="model must be an nn.Module"):
        nonfinite_tensors("model")
    assert isinstance(NonFinite(None), NonFinite) and diagnostics.__all__ == [
        "NonFinite", "check_finite", "locate_nonfinite", "nonfinite_tensors"]


def test_api_doc_has_a_diagnostics_section_naming_every_public_name():
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = text.split("## `softwidth.diagnostics`", 1)[1].split("\n## ", 1)[0]
    for name in diagnostics.__all__:
        assert re.search(rf"`{name}\b", section), name


# -- fit stops with the step and the layer ----------------------------------------------------------------

def test_nan_loss_names_the_step_and_the_layer():
    with pytest.raises(SoftWidthError) as info:
        _fit(_model(log=True))
    message = str(info.value)
    assert message.startswith("fit: loss became nan at epoch 1, step 0; first non-finite output: module '3' (Log)")
    assert "\n" not in message


def test_nan_in_the_features_names_the_step_and_where_it_entered():
    data = _data()
    data[2][0][3, 5] = NAN  # one feature of one example of the 3rd batch
    with pytest.raises(SoftWidthError, match=r"^fit: at epoch 1, step 2: 0: input features contain NaN or inf$"):
        _fit(_model(), data=data)
    with pytest.raises(SoftWidthError) as info:  # a stock first layer: the NaN reaches the dynamic layer 1
        _fit(_model(stock_first=True), data=data)
    assert str(info.value) == ("fit: at epoch 1, step 2: 1: input features contain NaN or inf; first non-finite "
                               "output: module '0' (Linear), its input was already non-finite (the batch, or code "
                               "outside modules)")


def test_a_nan_gradient_stops_before_the_step():
    snapshot = {}

    def sqrt_at_zero(model, batch):  # finite loss, NaN gradient: d sqrt(u)/du at 0 is inf, times 0
        weight = model[0].linear.weight
        loss = _mse(model, batch) + 0.0 * torch.sqrt(weight.abs().sum() * 0.0)
        snapshot.update({k: v.detach().clone() for k, v in model.state_dict().items()})  # after the forward
        return loss

    model = _model()
    with pytest.raises(SoftWidthError, match=r"^fit: non-finite gradient at epoch 2, step 5 in 0.linear.weight;"):
        _fit(model, loss_fn=_at_call(6, sqrt_at_zero))
    for key, value in model.state_dict().items():  # the step was refused: no NaN entered the model
        assert torch.equal(value, snapshot[key]), key
    assert not nonfinite_tensors(model)


def test_a_nan_width_is_reset_and_named():
    def corrupt(model, batch):
        model[0].out_width.value.data.fill_(NAN)
        return _mse(model, batch)

    model = _model()
    with pytest.raises(SoftWidthError, match=r"^fit: at epoch 1, step 3: hidden: width became nan .*reset to its "
                                             r"last value"):
        _fit(model, loss_fn=_at_call(4, corrupt))
    value = float(model[0].out_width.value)
    assert math.isfinite(value) and 1 <= value <= 6


def _spoil_running_mean(model, batch):
    """Train-mode loss is unaffected (batch statistics), but the saved model would be broken."""
    loss = _mse(model, batch)
    model[3].running_mean = torch.full((4,), NAN)  # a new tensor: the one autograd saved stays untouched
    return loss


@pytest.mark.parametrize("spoil", ["buffer", "loss"])
def test_no_nan_checkpoint_is_written_and_a_resume_finishes_identically(tmp_path, spoil):
    full = _fit(_model(batchnorm=True), out_dir=tmp_path / "full")
    run = tmp_path / "run"
    last_of_epoch_3 = 3 * len(_data())
    action = _spoil_running_mean if spoil == "buffer" else (lambda m, b: _mse(m, b) * NAN)
    expected = (r"^fit: after epoch 3: non-finite values \(NaN or inf\) in 3.running_mean;" if spoil == "buffer"
                else r"^fit: loss became nan at epoch 3, step 11;")
    with pytest.raises(SoftWidthError, match=expected):
        _fit(_model(batchnorm=True), loss_fn=_at_call(last_of_epoch_3, action), out_dir=run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and not (run / "checkpoint.tmp").exists()
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values() if t.is_floating_point())
    with open(run / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]  # nothing of the broken epoch logged
    resumed = _fit(_model(batchnorm=True), out_dir=run, resume=True)
    assert resumed.history == full.history and resumed.widths == full.widths
    for (key, p), q in zip(resumed.model.state_dict().items(), full.model.state_dict().values()):
        assert torch.equal(p, q), key
    assert (run / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()


def test_nan_during_fine_tuning_is_refused():
    def loss_fn(model, batch):
        plain = not any(isinstance(m, Width) for m in model.modules())
        return _mse(model, batch) * (NAN if plain else 1.0)

    config = FitConfig(epochs=1, lr=1e-2, progress=False, finetune_epochs=1)
    with pytest.raises(SoftWidthError, match=r"^fit: fine-tuning loss became nan; every module output was finite"):
        _fit(_model(), loss_fn=loss_fn, config=config)


@pytest.mark.parametrize("loss_fn, message", [
    (lambda m, b: 1.0, "loss_fn must return a scalar floating-point tensor, got float at epoch 1, step 0"),
    (lambda m, b: m(b[0]), r"got shape \(8, 1\) torch.float32"),
    (lambda m, b: torch.tensor(1.0), "does not depend on a trainable parameter"),
])
def test_a_loss_that_is_not_a_differentiable_scalar_is_refused(loss_fn, message):
    with pytest.raises(SoftWidthError, match=message):
        _fit(_model(), loss_fn=loss_fn)


# -- widths never leave their bounds -------------------------------------------------------------------------

GRADS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                  st.sampled_from([NAN, float("inf"), -float("inf"), 1e38, -1e38, 0.0]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_size=st.integers(1, 64), low=st.floats(0, 1), start=st.floats(0, 1),
       optimizer=st.sampled_from(["sgd", "adam", "adamw", "sgd-momentum"]),
       lr=st.sampled_from([1e-3, 1.0, 1e6, 1e30]), grads=st.lists(GRADS, min_size=1, max_size=12))
def test_width_stays_in_bounds_under_any_optimizer_step(max_size, low, start, optimizer, lr, grads):
    """Huge steps are clamped; a NaN/inf value (a NaN or inf gradient, an overflowing step) is reset to the
    last good value and reported, so after projection the value is always finite and in [min, max]."""
    min_size = 1 + low * (max_size - 1)
    w = Width(max_size, min_size=min_size, init=min_size + start * (max_size - min_size))
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=lr), "adam": lambda p: torch.optim.Adam(p, lr=lr),
            "adamw": lambda p: torch.optim.AdamW(p, lr=lr),
            "sgd-momentum": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9)}[optimizer]
    opt = make([w.value])
    for g in grads:
        before = float(w.value)
        w.value.grad = torch.tensor(g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.step()
        stepped = float(w.value)
        try:
            w.project_()
        except SoftWidthError as err:
            assert not math.isfinite(stepped) and "width became" in str(err)
            assert float(w.value) == before  # reset to the last projected value
        value = float(w.value)
        assert math.isfinite(value) and w.min_size <= value <= w.max_size
        assert w.min_size <= float(w.real()) <= w.max_size
        assert math.ceil(w.min_size - 1e-9) <= w.rounded <= w.max_size
