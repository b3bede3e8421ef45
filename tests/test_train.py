"""Tests of softwidth.train: fit end to end, logs, checkpoints, exact resume, fine-tuning, validation."""

from __future__ import annotations

import csv
import math
import warnings

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import BudgetController, CostPenalty, FitConfig, Schedule, SoftWidthError, Width
from softwidth.layers import Linear
from softwidth.objective import model_cost
from softwidth.train import evaluate

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

SECONDS = 0.01  # one probe example = one position = 10 ms of audio
EPOCHS = 4


def _model(seed=0, hidden=(64, 64)):
    """8 -> Linear (a) -> ReLU -> Linear (a -> b) -> ReLU -> Linear (b -> 1); widths start at max."""
    torch.manual_seed(seed)
    a, b = Width(hidden[0]), Width(hidden[1])
    model = nn.Sequential(
        Linear(nn.Linear(8, hidden[0]), out_width=a), nn.ReLU(),
        Linear(nn.Linear(hidden[0], hidden[1]), in_width=a, out_width=b), nn.ReLU(),
        Linear(nn.Linear(hidden[1], 1), in_width=b),
    )
    sw.profile(model, torch.zeros(1, 8), seconds=SECONDS)
    return model, (a, b)


def _data(batches=4, size=16, seed=1):
    """Regression on 3 of 8 inputs, as a list of (x, y) batches."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        x = torch.randn(size, 8, generator=g)
        y = x[:, :1] - 0.5 * x[:, 1:2] + torch.tanh(2 * x[:, 2:3])
        out.append((x, y))
    return out


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _config(**options):
    return FitConfig(**{"epochs": EPOCHS, "lr": 1e-2, "progress": False, **options})


def _stock_flops(plain):
    """FLOP/s of the consolidated stock model, counted from its shapes (2 I O per Linear, 1 per ReLU)."""
    linears = [m for m in plain if isinstance(m, nn.Linear)]
    total = sum(2 * m.in_features * m.out_features for m in linears)
    total += sum(m.out_features for m in linears[:-1])  # each hidden Linear feeds a ReLU
    return total / SECONDS


def _is_softwidth(module):
    return type(module).__module__.startswith("softwidth")


# -- end to end ------------------------------------------------------------------------------------------

def test_fit_with_cost_penalty_end_to_end():
    data = _data()
    costs = []
    for weight in (0.0, 3.0):
        model, (a, b) = _model()
        term = CostPenalty(model, weight=weight)
        result = sw.fit(model, data, loss_fn=_mse, config=_config(), cost_term=term, val_data=data[:1])
        assert result.model is model and len(result.history) == EPOCHS
        assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
        assert all(set(row) >= {"train_task", "val_task", "cost", "flops"} for row in result.history)
        assert set(result.widths) == {a.label, b.label}
        assert result.widths[a.label]["rounded"] == a.rounded == int(a.value)  # frozen at an integer
        plain = result.consolidated
        assert not any(_is_softwidth(m) for m in plain.modules())
        assert plain[0].out_features == a.rounded and plain[2].in_features == a.rounded
        assert not plain.training and not model.training
        x = torch.randn(32, 8)
        with torch.no_grad():
            assert torch.allclose(plain(x), model(x), atol=1e-5)
        assert result.history[-1]["flops"] == pytest.approx(_stock_flops(plain), rel=1e-6)
        costs.append(result.history[-1]["cost"])
    assert costs[1] < costs[0] - 0.1  # the penalty makes the model cheaper


def test_fit_with_budget_controller_meets_the_target():
    """Two widths of 64: one feature of either costs < 2.5 % of a 40 % budget, so the consolidated
    model can (and must) land within 3 % under the target."""
    model, (a, b) = _model()
    controller = BudgetController(model, target=0.4)
    result = sw.fit(model, _data(), loss_fn=_mse, config=_config(), cost_term=controller)
    flops = _stock_flops(result.consolidated)
    assert flops == pytest.approx(float(model_cost(model)), rel=1e-6)
    assert 0.97 * controller.target <= flops <= controller.target
    assert result.history[-1]["flops"] == pytest.approx(flops)
    assert "multiplier" in result.history[-1]
    assert max(row["multiplier"] for row in result.history) > 0  # it was over budget at first


def test_log_csv_and_checkpoint(tmp_path):
    model, (a, b) = _model()
    result = sw.fit(model, _data(), loss_fn=_mse, config=_config(), cost_term=BudgetController(model, target=0.5),
                    val_data=_data(1, seed=7), out_dir=tmp_path / "run")
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == EPOCHS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    columns = set(rows[0])
    assert {f"width:{a.label}", f"width:{b.label}", "cost", "flops", "train_task", "val_task"} <= columns
    assert a.label == "0.out_width" and b.label == "2.out_width"
    assert float(rows[-1][f"width:{a.label}"]) == float(a.value)
    for row, record in zip(rows, result.history):  # the CSV is the history, column for column
        assert {k: float(v) for k, v in row.items()} == pytest.approx(record, rel=1e-12)
    assert float(rows[-1]["flops"]) == pytest.approx(float(model_cost(model)), rel=1e-6)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == EPOCHS and len(state["history"]) == EPOCHS
    fresh, _ = _model(seed=5)
    fresh.load_state_dict(state["model"])
    assert all(torch.equal(p, q) for p, q in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temporaries


def test_nothing_written_without_out_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, _ = _model(hidden=(6, 5))
    sw.fit(model, _data(2), loss_fn=_mse, config=_config(epochs=1))
    assert list(tmp_path.iterdir()) == []


# -- resume ------------------------------------------------------------------------------------------------

class _Interrupted:
    """Batches with a length; iteration raises KeyboardInterrupt in the middle of epoch ``stop`` (1-based)."""

    def __init__(self, batches, stop):
        self.batches, self.stop, self.epochs = batches, stop, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.epochs += 1
        for i, batch in enumerate(self.batches):
            if self.epochs == self.stop and i == 2:
                raise KeyboardInterrupt
            yield batch


def _run(tmp_path, data, *, resume=False, **options):
    model, widths = _model(seed=3)
    controller = BudgetController(model, target=0.4)
    result = sw.fit(model, data, loss_fn=_mse, config=_config(**options), cost_term=controller,
                    val_data=_data(1, seed=9), out_dir=tmp_path, resume=resume)
    return result, controller


@pytest.mark.parametrize("lr_decay", ["constant", "cosine"])
def test_resume_gives_the_uninterrupted_run(tmp_path, lr_decay):
    """Checkpoint after epoch 2 (weights, Adam, schedule, multiplier, RNG), resume: bit-identical result.
    The run crosses the anneal start (step 9.6) and the freeze (step 13.6) after the interruption."""
    data = _data()
    full, full_controller = _run(tmp_path / "full", data, lr_decay=lr_decay)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", _Interrupted(data, stop=3), lr_decay=lr_decay)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed, resumed_controller = _run(tmp_path / "cut", data, resume=True, lr_decay=lr_decay)

    assert resumed.widths == full.widths
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed.history == full.history
    assert resumed_controller.multiplier == full_controller.multiplier
    for p, q in zip(full.consolidated.parameters(), resumed.consolidated.parameters()):
        assert torch.equal(p, q)
    with open(tmp_path / "cut" / "log.csv") as f, open(tmp_path / "full" / "log.csv") as g:
        assert f.read() == g.read()


def test_after_the_freeze_fit_trains_the_consolidated_model(tmp_path, monkeypatch):
    """FitConfig.shrink (default): from the freeze (step 4.8 of 16) on, the optimizer steps the consolidated
    model; the run matches the masked one up to float rounding, and a resume inside the frozen phase is the
    uninterrupted run bit for bit."""
    schedule = Schedule(warmup=0.0, anneal_start=0.1, freeze=0.3)
    stepped = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        stepped.append(sum(p.numel() for g in self.param_groups for p in g["params"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    data = _data()
    full, _ = _run(tmp_path / "full", data, schedule=schedule)
    assert len(stepped) == 16 and len(set(stepped[:5])) == 1
    assert all(n == stepped[-1] < 0.6 * stepped[0] for n in stepped[5:])  # the consolidated model's weights
    masked, _ = _run(tmp_path / "masked", data, schedule=schedule, shrink=False)
    assert masked.widths == full.widths
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(full.consolidated(x), masked.consolidated(x), atol=1e-4, rtol=1e-4)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", _Interrupted(data, stop=3), schedule=schedule)
    resumed, _ = _run(tmp_path / "cut", data, resume=True, schedule=schedule)
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed.history == full.history


def test_a_model_without_widths_trains_past_the_freeze_without_a_warning():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to shrink is not worth a warning
        result = sw.fit(model, _data(), loss_fn=_mse, config=_config(schedule=Schedule(warmup=0.0, anneal_start=0.1, freeze=0.3)))
    assert result.widths == {}


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    first, _ = _run(tmp_path / "a", _data())
    second, _ = _run(tmp_path / "b", _data(), resume=True)
    assert second.widths == first.widths and len(second.history) == EPOCHS


def _garbage(path):
    path.write_bytes(b"this is not a checkpoint")


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("spoil", [_garbage, _truncated])
def test_corrupt_checkpoint_is_refused(tmp_path, spoil):
    model, _ = _model(hidden=(6, 5))
    sw.fit(model, _data(2), loss_fn=_mse, config=_config(epochs=1), out_dir=tmp_path)
    spoil(tmp_path / "checkpoint.pt")
    model, _ = _model(hidden=(6, 5))
    with pytest.raises(SoftWidthError, match="cannot resume from .*checkpoint.pt"):
        sw.fit(model, _data(2), loss_fn=_mse, config=_config(epochs=2), out_dir=tmp_path, resume=True)


def _not_a_checkpoint(path):
    torch.save({"weights": torch.zeros(3)}, path)


def _other_model(path):
    torch.save({"epoch": 1, "model": _model(hidden=(7, 5))[0].state_dict()}, path)


@pytest.mark.parametrize("spoil", [_not_a_checkpoint, _other_model])
def test_wrong_checkpoint_is_refused(tmp_path, spoil):
    spoil(tmp_path / "checkpoint.pt")
    model, _ = _model(hidden=(6, 5))
    with pytest.raises(SoftWidthError, match="cannot resume from"):
        sw.fit(model, _data(2), loss_fn=_mse, config=_config(epochs=2), out_dir=tmp_path, resume=True)


# -- fine-tuning -------------------------------------------------------------------------------------------

def test_finetune_changes_weights_and_lowers_the_loss():
    data = _data()
    plains = []
    for finetune in (0, 5):
        model, _ = _model(seed=4)
        result = sw.fit(model, data, loss_fn=_mse, cost_term=CostPenalty(model, weight=1.0),
                        config=_config(finetune_epochs=finetune, finetune_lr=3e-3))
        plains.append(result.consolidated)
    before, after = plains
    assert [p.shape for p in before.parameters()] == [p.shape for p in after.parameters()]
    assert any(not torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters()))
    assert not after.training
    assert evaluate(after, data, _mse) < evaluate(before, data, _mse)


# -- validation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, rule", [
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"epochs": 2.0}, "epochs must be an int >= 1"),
    ({"finetune_epochs": -1}, "finetune_epochs must be an int >= 0"),
    ({"finetune_epochs": 1.5}, "finetune_epochs must be an int >= 0"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": -1e-3}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"lr": "fast"}, "lr must be a finite number > 0"),
    ({"finetune_lr": float("inf")}, "finetune_lr must be a finite number > 0"),
    ({"width_travel": 0}, "width_travel must be a finite number > 0"),
    ({"lr_decay": "linear"}, "lr_decay must be one of constant, cosine"),
    ({"lr_decay": None}, "lr_decay must be one of constant, cosine"),
])
def test_fit_config_validation(options, rule):
    with pytest.raises(SoftWidthError, match=f"FitConfig: {rule}"):
        FitConfig(**options)


@pytest.mark.parametrize("options", [{"width_lr": -0.1}, {"width_lr": float("nan")}, {"weight_decay": -0.1},
                                     {"weight_decay": float("nan")}])
def test_fit_config_checks_width_lr_and_weight_decay(options):
    with pytest.raises(SoftWidthError, match="FitConfig"):
        FitConfig(**options)


def test_fit_config_defaults():
    config = FitConfig()
    assert config.epochs == 20 and config.finetune_epochs == 0 and config.schedule == Schedule()
    with pytest.raises(AttributeError):
        config.epochs = 3  # type: ignore[misc]


def test_fit_refuses_data_without_length_or_batches():
    model, _ = _model(hidden=(6, 5))
    with pytest.raises(SoftWidthError, match="train_data must have a length"):
        sw.fit(model, (b for b in _data(2)), loss_fn=_mse, config=_config())
    with pytest.raises(SoftWidthError, match="train_data is empty"):
        sw.fit(model, [], loss_fn=_mse, config=_config())


def _nan_at(call):
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = _mse(model, batch)
        return loss * float("nan") if len(calls) == call else loss
    return loss_fn


def test_nan_loss_names_epoch_and_step():
    model, _ = _model(hidden=(6, 5))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(SoftWidthError, match=r"fit: loss became nan at epoch \d+, step 5\b"):
        sw.fit(model, _data(), loss_fn=_nan_at(6), config=_config())  # 6th batch: 2nd epoch, 6th step
    model, _ = _model(hidden=(6, 5))
    with pytest.raises(SoftWidthError, match=r"step 0\b"):
        sw.fit(model, _data(), loss_fn=_nan_at(1), config=_config())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # no step taken on NaN


def test_nan_loss_epoch_matches_log_numbering():
    model, _ = _model(hidden=(6, 5))
    with pytest.raises(SoftWidthError, match=r"at epoch 2, step 5"):
        sw.fit(model, _data(), loss_fn=_nan_at(6), config=_config())


# -- evaluate ----------------------------------------------------------------------------------------------

def test_evaluate_is_the_eval_mode_mean_and_restores_the_mode():
    model, (a, b) = _model(hidden=(6, 5))
    with torch.no_grad():
        a.value.fill_(3.4)
    data = _data(3)
    model.train()
    loss = evaluate(model, data, _mse)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = sum(float(_mse(model, batch)) for batch in data) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    assert evaluate(model, data, _mse) == loss  # eval mode: no noise, deterministic
    with pytest.raises(SoftWidthError, match="yielded no batches"):
        evaluate(model, [], _mse)


def test_width_learning_rate_follows_the_schedule(monkeypatch):
    """Each width has its own Adam group whose lr is scaled by Schedule.width_lr_factor at every step."""
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append([g["lr"] / g["base_lr"] for g in self.param_groups if "width" in g])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    model, _ = _model()
    schedule = Schedule(warmup=0.0, anneal_start=0.25, freeze=0.75, width_lr_end=0.1)
    # shrink=False: the frozen phase keeps the original optimizer, so the factor is seen to its end
    sw.fit(model, _data(), loss_fn=_mse, config=_config(schedule=schedule, shrink=False, width_optimizer="adam"),
           cost_term=CostPenalty(model, weight=0.5))
    factors = [f[0] for f in seen]
    assert all(len(f) == 2 and f[0] == f[1] for f in seen)  # one group per width, same factor
    assert factors[0] == 1.0 and min(factors) == pytest.approx(0.1)
    assert all(b <= a + 1e-12 for a, b in zip(factors, factors[1:]))


def test_shared_width_optimizer_follows_the_schedule(monkeypatch):
    """The default WidthSGD steps only while widths learn, with its lr scaled by Schedule.width_lr_factor."""
    seen = []
    original = sw.WidthSGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"] / self.param_groups[0]["base_lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sw.WidthSGD, "step", spy)
    model, _ = _model()
    schedule = Schedule(warmup=0.0, anneal_start=0.25, freeze=0.75, width_lr_end=0.1)
    sw.fit(model, _data(), loss_fn=_mse, config=_config(schedule=schedule), cost_term=CostPenalty(model, weight=0.5))
    total = EPOCHS * len(_data())
    assert len(seen) == round(0.75 * total)  # not during the frozen phase
    assert seen[0] == 1.0 and min(seen) == pytest.approx(schedule.width_lr_factor(0.75 - 1 / total))
    assert all(b <= a + 1e-12 for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("lr_decay", ["constant", "cosine"])
def test_weights_learning_rate_follows_lr_decay(monkeypatch, lr_decay):
    """Every step (the small model's after the freeze included) uses lr * decay(step / total) for the weights;
    the widths' groups keep their own schedule."""
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(([g["lr"] for g in self.param_groups if "width" not in g],
                     [g["lr"] / g["base_lr"] for g in self.param_groups if "width" in g and g["params"]]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    model, _ = _model()
    schedule = Schedule(warmup=0.0, anneal_start=0.25, freeze=0.75, width_lr_end=0.1)
    sw.fit(model, _data(), loss_fn=_mse,
           config=_config(schedule=schedule, lr_decay=lr_decay, width_optimizer="adam"),
           cost_term=CostPenalty(model, weight=0.5))
    total = EPOCHS * len(_data())
    assert len(seen) == total
    for step, (weights, width) in enumerate(seen):
        factor = 0.5 * (1 + math.cos(math.pi * step / total)) if lr_decay == "cosine" else 1.0
        assert weights == [pytest.approx(1e-2 * factor, rel=1e-12)], step
        if step < 0.75 * total:  # widths learn: their factor comes from the schedule alone
            assert width and all(f == pytest.approx(schedule.width_lr_factor(step / total)) for f in width)


def test_restart_reinitialises_the_shrunk_model_once_at_the_freeze(monkeypatch):
    """FitConfig(restart=True): at the freeze the chosen sizes start from fresh weights and optimizer moments,
    once (not at every epoch's re-shrink), and the result is still the exact consolidation of the trained model."""
    import softwidth.train as train

    calls = []
    original = train._restart

    def spy(net, optimizer, how):
        calls.append((sum(p.numel() for p in net.parameters()), len(optimizer.state)))
        original(net, optimizer, how)
        assert not optimizer.state

    monkeypatch.setattr(train, "_restart", spy)
    model, (a, b) = _model()
    result = sw.fit(model, _data(), loss_fn=_mse, cost_term=BudgetController(model, target=0.3),
                    config=_config(restart=True, schedule=Schedule(warmup=0.0, anneal_start=0.2, freeze=0.4)))
    full = sum(p.numel() for p in model.parameters()) - 2  # every weight of the full-size model, widths aside
    assert len(calls) == 1 and calls[0][0] < full and calls[0][1] > 0  # the shrunk model, its moments dropped
    x = torch.randn(5, 8)
    model.eval()
    assert torch.allclose(result.consolidated(x), model(x), atol=1e-6)
    with pytest.raises(SoftWidthError, match="restart must be True, False or a callable"):
        FitConfig(restart=1)


def test_a_restart_callable_sets_the_weights_the_chosen_sizes_train_from():
    """FitConfig(restart=f): f re-initialises the consolidated model once, at the freeze; the run then differs from
    restart=True only by those starting weights (same widths: everything before the freeze is the same)."""
    seen = []

    def constant(net):
        seen.append(sum(p.numel() for p in net.parameters()))
        for i, p in enumerate(net.parameters()):
            p.copy_(torch.full_like(p, 0.01 * (i + 1)))

    schedule = Schedule(warmup=0.0, anneal_start=0.2, freeze=0.4)
    results = []
    for how in (constant, True):
        model, _ = _model()
        results.append(sw.fit(model, _data(), loss_fn=_mse, cost_term=BudgetController(model, target=0.3),
                              config=_config(restart=how, schedule=schedule)))
    full = sum(p.numel() for p in _model()[0].parameters()) - 2
    assert len(seen) == 1 and seen[0] < full  # once, on the shrunk model
    assert results[0].widths == results[1].widths
    x = torch.randn(5, 8)
    assert not torch.allclose(results[0].consolidated(x), results[1].consolidated(x), atol=1e-3)
