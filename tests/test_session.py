"""Tests of softwidth.session: the one training protocol that fit and the Lightning callback drive.

fit and SoftWidthCallback take the same width steps for the same seed and batches; a session's state_dict
continues a run bit for bit; every width group follows one convention; cost terms follow the CostTerm protocol.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import BudgetController, CostPenalty, CostTerm, Schedule, SoftWidthError, Width, WidthSession
from softwidth.layers import Linear
from softwidth.optim import WIDTH_KEY
from softwidth.schedule import WidthScheduler

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

SECONDS = 0.01
SCHEDULE = Schedule(warmup=0.1, anneal_start=0.4, freeze=0.7)


def _net(seed=0):
    """8 -> Linear (a of 16) -> ReLU -> Linear (a -> b of 12) -> ReLU -> Linear (b -> 1), profiled."""
    torch.manual_seed(seed)
    a, b = Width(16, name="a"), Width(12, name="b")
    net = nn.Sequential(Linear(nn.Linear(8, 16), out_width=a), nn.ReLU(),
                        Linear(nn.Linear(16, 12), in_width=a, out_width=b), nn.ReLU(),
                        Linear(nn.Linear(12, 1), in_width=b))
    sw.profile(net, torch.zeros(1, 8), seconds=SECONDS)
    return net


def _loader():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 8, generator=g)
    y = x[:, :1] - 0.5 * x[:, 1:2] + torch.tanh(2 * x[:, 2:3])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _steps(model, session, optimizer, batches):
    """The protocol of the module docstring, by hand."""
    for batch in batches:
        loss = _mse(model, batch) + session.penalty()
        optimizer.zero_grad(set_to_none=True)
        session.zero_grad()
        loss.backward()
        session.before_step()
        optimizer.step()
        session.after_step()


def _session(model, term="budget", **options):
    cost_term = BudgetController(model, target=0.4) if term == "budget" else CostPenalty(model, weight=0.5)
    session = WidthSession(model, cost_term, total_steps=16, schedule=SCHEDULE, **options)
    optimizer = torch.optim.Adam(session.param_groups(), lr=1e-2)
    session.adopt([optimizer])
    return session, optimizer


# -- one trajectory --------------------------------------------------------------------------------------

@pytest.mark.parametrize("width_optimizer", ["shared", "adam"])
def test_fit_and_the_lightning_callback_take_the_same_width_steps(tmp_path, width_optimizer):
    """Same seed, batches and schedule: fit and SoftWidthCallback record the same trace (every width and its
    gradients at every learning step, bit for bit) and end at the same sizes."""
    lightning = pytest.importorskip("lightning.pytorch")
    from softwidth.integrations.lightning import SoftWidthCallback, penalty

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def training_step(self, batch, index):
            return _mse(self.net, batch) + penalty(self)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    model = _net()
    torch.manual_seed(7)
    result = sw.fit(model, _loader(), loss_fn=_mse, cost_term=CostPenalty(model, weight=0.5), tensorboard=False,
                    config=sw.FitConfig(epochs=3, lr=1e-2, schedule=SCHEDULE, progress=False, trace=True,
                                        width_optimizer=width_optimizer))
    callback = SoftWidthCallback(weight=0.5, schedule=SCHEDULE, trace=True, width_optimizer=width_optimizer)
    module = Module()
    torch.manual_seed(7)
    trainer = lightning.Trainer(max_epochs=3, accelerator="cpu", callbacks=[callback], logger=False,
                                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                                default_root_dir=tmp_path)
    trainer.fit(module, _loader())
    assert len(result.trace) == math.ceil(0.7 * 24) - math.ceil(0.1 * 24)  # every width-learning step
    assert result.trace == callback.trace_rows  # bit for bit: one protocol
    assert {w.label: w.rounded for w in sw.optim.width_modules(module.net)} == \
        {name: record["rounded"] for name, record in result.widths.items()}
    assert [row["cost"] for row in result.history] == [row["cost"] for row in callback.history]


# -- state -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width_optimizer", ["shared", "adam"])
def test_state_dict_round_trip_resumes_identically(width_optimizer):
    """8 steps, state saved (model, optimizer, session, RNG), 8 more; a fresh session loaded from the state takes
    the same 8 steps bit for bit, across the freeze (step 11.2) and its budget enforcement."""
    batches = list(_loader())
    model = _net()
    session, optimizer = _session(model, trace=True, width_optimizer=width_optimizer)
    _steps(model, session, optimizer, batches)
    saved = {"model": {k: v.clone() for k, v in model.state_dict().items()}, "optimizer": optimizer.state_dict(),
             "session": session.state_dict(), "rng": torch.get_rng_state()}
    saved = _round_trip(saved)
    _steps(model, session, optimizer, batches)
    assert session.scheduler.frozen and session.scheduler.steps == 16

    other = _net(seed=3)
    resumed, other_optimizer = _session(other, trace=True, width_optimizer=width_optimizer)
    other.load_state_dict(saved["model"])
    other_optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["session"])
    torch.set_rng_state(saved["rng"])
    assert resumed.scheduler.steps == 8 and not resumed.scheduler.frozen
    _steps(other, resumed, other_optimizer, batches)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    assert resumed.log_row() == session.log_row()
    assert resumed.trace.rows == session.trace.rows
    assert resumed.cost_term.multiplier == session.cost_term.multiplier
    assert resumed.state_dict()["scheduler"] == session.state_dict()["scheduler"]


def _round_trip(state):
    """Through torch.save / torch.load(weights_only=True), as fit's checkpoints go."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_load_state_dict_refuses_a_state_it_cannot_continue():
    model = _net()
    session, _ = _session(model)
    with pytest.raises(SoftWidthError, match="holds no schedule"):
        session.load_state_dict({"cost_term": None})
    adam, _ = _session(_net(), width_optimizer="adam")
    with pytest.raises(SoftWidthError, match="holds no width optimizer"):
        session.load_state_dict(adam.state_dict())


def test_fit_checkpoint_is_the_session_state_beside_the_run(tmp_path):
    model = _net()
    sw.fit(model, list(_loader())[:4], loss_fn=_mse, cost_term=BudgetController(model, target=0.5),
           config=sw.FitConfig(epochs=1, progress=False, trace=True), out_dir=tmp_path, tensorboard=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"epoch", "model", "optimizer", "scheduler", "cost_term", "width_optimizer", "trace",
                          "history", "rng"}
    assert state["scheduler"]["steps"] == 4 and state["width_optimizer"]["param_groups"][0]["t"] > 0
    assert state["trace"]["rows"] and state["cost_term"]["target"] > 0


# -- width groups ------------------------------------------------------------------------------------------

def _width_groups(optimizer):
    return [g for g in optimizer.param_groups if WIDTH_KEY in g]


def test_width_groups_follow_one_convention():
    """param_groups, the session's own groups and an adopted optimizer all mark width groups alike."""
    model = _net()
    helper = sw.param_groups(model, width_lr=0.5)[1]
    assert helper[WIDTH_KEY] == "a, b" and helper["base_lr"] == helper["lr"] == 0.5 and helper["weight_decay"] == 0

    session, optimizer = _session(model, width_optimizer="adam")
    groups = _width_groups(optimizer)
    assert [g[WIDTH_KEY] for g in groups] == ["a", "b"]
    assert [g["base_lr"] for g in groups] == pytest.approx([session.width_rate * 16, session.width_rate * 12])
    assert all(g["weight_decay"] == 0.0 and len(g["params"]) == 1 for g in groups)
    assert session.width_rate == pytest.approx(3.0 / ((0.7 - 0.1) * 16))  # width_travel crossings while learning

    other = _net()
    adopted = torch.optim.Adam(other.parameters(), lr=1e-3, weight_decay=0.1)  # widths mixed with weights
    WidthSession(other, total_steps=16, schedule=SCHEDULE, width_optimizer="adam").adopt([adopted])
    assert [(g[WIDTH_KEY], g["weight_decay"]) for g in _width_groups(adopted)] == [("a", 0.0), ("b", 0.0)]
    widths_of_other = {id(w.value) for w in sw.optim.width_modules(other)}
    assert not any(id(p) in widths_of_other for p in adopted.param_groups[0]["params"])
    mine = _net()
    own = torch.optim.SGD(sw.param_groups(mine, width_lr=0.25), lr=0.1)  # the user's own width group is kept
    WidthSession(mine, total_steps=16, schedule=SCHEDULE, width_optimizer="adam").adopt([own])
    assert len(own.param_groups) == 2 and own.param_groups[1]["base_lr"] == 0.25


def test_shared_takes_the_widths_out_and_rates_follow_the_schedule():
    model = _net()
    shared = torch.optim.Adam(model.parameters(), lr=1e-3)
    session = WidthSession(model, total_steps=16, schedule=SCHEDULE)
    session.adopt([shared])
    ids = {id(w.value) for w in sw.optim.width_modules(model)}
    assert not any(id(p) in ids for g in shared.param_groups for p in g["params"])
    assert [id(p) for p in session.width_opt.param_groups[0]["params"]] == [id(w.value) for w in
                                                                          sw.optim.width_modules(model)]

    adam_model = _net()
    session, optimizer = _session(adam_model, width_optimizer="adam")
    factors = []
    for _ in range(16):
        session.after_step()
        factors.append([g["lr"] / g["base_lr"] for g in _width_groups(optimizer)])
    expected = [SCHEDULE.width_lr_factor(min(1.0, (i + 1) / 16)) for i in range(16)]
    assert [f[0] for f in factors] == pytest.approx(expected) and all(f[0] == f[1] for f in factors)
    assert optimizer.param_groups[0]["lr"] == 1e-2  # the weights' rate is not the session's


def test_adam_needs_every_width_in_an_optimizer():
    model = _net()
    weights_only = torch.optim.Adam(sw.param_groups(model, width_lr=0.1)[0]["params"], lr=1e-3)
    session = WidthSession(model, total_steps=16, schedule=SCHEDULE, width_optimizer="adam")
    with pytest.raises(SoftWidthError, match=r"the widths \['a', 'b'\] are in no optimizer"):
        session.adopt([weights_only])


# -- the per-step sequence ---------------------------------------------------------------------------------

def test_penalty_before_step_and_log_row_follow_the_schedule():
    """Warm-up (steps 0-1): zero penalty, no width step, no trace row; then the cost term's penalty, a WidthSGD
    step and a trace row per step; frozen from step 11.2 on; the log row names the cost and every width."""
    model = _net()
    session, optimizer = _session(model, term="penalty", trace=True)
    assert float(session.penalty()) == 0.0 and not session.penalty().requires_grad
    batches = list(_loader())
    _steps(model, session, optimizer, batches[:2])
    assert session.trace.rows == [] and session.width_opt.param_groups[0]["t"] == 0
    assert session.penalty().requires_grad
    _steps(model, session, optimizer, batches[:2])
    assert [r["step"] for r in session.trace.rows] == [2, 3] and session.width_opt.param_groups[0]["t"] == 2
    row = session.log_row()
    assert list(row) == ["cost", "flops", "width:a", "width:b"]  # a fixed weight has no multiplier
    assert row["cost"] == pytest.approx(float(session.cost_term.normalised_cost()))
    assert set(session.log_row(prefix="width/")) == {"cost", "flops", "width/a", "width/b"}
    for _ in range(8):
        session.after_step()
    assert session.scheduler.frozen and float(session.penalty()) == 0.0


def test_a_budget_is_enforced_at_the_freeze_and_logs_its_multiplier():
    model = _net()
    session, optimizer = _session(model, trace=True)
    batches = list(_loader())
    _steps(model, session, optimizer, batches + batches)
    assert session.scheduler.frozen
    assert float(sw.objective.model_cost(model)) <= session.cost_term.target
    assert "multiplier" in session.log_row()


def test_options_are_checked():
    model = _net()
    for options, rule in [({"width_optimizer": "sgd"}, "width_optimizer must be one of shared, adam"),
                          ({"width_travel": 0}, "width_travel must be a finite number > 0"),
                          ({"width_lr": -1.0}, "width_lr must be None or a finite number > 0"),
                          ({"trace": 1}, "trace must be True or False"),
                          ({"schedule": "late"}, "schedule must be a softwidth.Schedule"),
                          ({"total_steps": 0}, "total_steps must be an int >= 1")]:
        with pytest.raises(SoftWidthError, match=f"WidthSession: {rule}"):
            WidthSession(model, **{"total_steps": 16, **options})
    with pytest.raises(SoftWidthError, match="model must be an nn.Module"):
        WidthSession("model", total_steps=16)


# -- the cost-term protocol --------------------------------------------------------------------------------

class _Fixed:
    """A cost term of one's own: a constant price on the first width."""

    kind = "flops"

    def __init__(self, width):
        self.width, self.calls = width, []

    def penalty(self):
        return 0.01 * self.width.real()

    def step(self):
        self.calls.append("step")

    def normalised_cost(self):
        return self.width.real().detach() / self.width.max_size

    def enforce(self):
        self.calls.append("enforce")
        return {}

    def state_dict(self):
        return {"calls": list(self.calls)}

    def load_state_dict(self, state):
        self.calls = list(state["calls"])


def test_built_in_terms_and_a_term_of_ones_own_follow_the_protocol():
    model = _net()
    assert isinstance(CostPenalty(model, weight=1.0), CostTerm)
    assert isinstance(BudgetController(model, target=0.5), CostTerm)
    assert CostPenalty(model, weight=1.0).enforce() == {}
    term = _Fixed(sw.optim.width_modules(model)[0])
    assert isinstance(term, CostTerm)
    session = WidthSession(model, term, total_steps=16, schedule=SCHEDULE)
    optimizer = torch.optim.Adam(session.param_groups(), lr=1e-2)
    session.adopt([optimizer])
    _steps(model, session, optimizer, list(_loader()) * 2)
    assert term.calls.count("enforce") == 1 and term.calls.count("step") == math.ceil(0.7 * 16) - math.ceil(0.1 * 16)


class _NoEnforce:
    kind = "flops"

    def penalty(self):
        return torch.zeros(())

    def step(self):
        pass

    def normalised_cost(self):
        return torch.zeros(())


@pytest.mark.parametrize("bad", [_NoEnforce(), "budget", 0.3])
def test_the_protocol_rejects_a_bad_cost_term_in_one_line(bad):
    model = _net()
    calls = [lambda: WidthSession(model, bad, total_steps=16),
             lambda: WidthScheduler(model, SCHEDULE, total_steps=16, controller=bad),
             lambda: sw.fit(model, list(_loader())[:1], loss_fn=_mse, cost_term=bad,
                            config=sw.FitConfig(epochs=1, progress=False))]
    for where, call in zip(("WidthSession", "WidthScheduler", "fit"), calls):
        with pytest.raises(SoftWidthError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{where}: ") and "\n" not in message
        assert "must be a CostPenalty, a BudgetController or None" in message and "softwidth.CostTerm" in message
        assert f"got {type(bad).__name__}" in message
    if isinstance(bad, _NoEnforce):
        assert "missing: enforce, state_dict, load_state_dict" in message
