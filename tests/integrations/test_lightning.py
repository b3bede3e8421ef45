"""Tests of softwidth.integrations.lightning: a 2-epoch CPU Trainer run with SoftWidthCallback, in one process
and under a 2-process DDP strategy (ddp_spawn, gloo); the consolidated model costs what the callback logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")
import lightning.pytorch as L

import softwidth as sw
from softwidth import export
from softwidth.integrations.lightning import SoftWidthCallback, penalty
from softwidth.layers import Linear

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SECONDS = 0.01  # one example = one 10 ms frame


class Regressor(L.LightningModule):
    """8 -> Linear(16, width a) -> ReLU -> Linear(12, width b) -> ReLU -> Linear(1); records widths per step."""

    def __init__(self, trace_dir: str | None = None):
        super().__init__()
        torch.manual_seed(0)
        a, b = sw.Width(16, name="a"), sw.Width(12, name="b")
        self.net = nn.Sequential(Linear(nn.Linear(8, 16), out_width=a), nn.ReLU(),
                                 Linear(nn.Linear(16, 12), in_width=a, out_width=b), nn.ReLU(),
                                 Linear(nn.Linear(12, 1), in_width=b))
        sw.profile(self.net, torch.zeros(1, 8), seconds=SECONDS)
        self.trace_dir, self.trace = trace_dir, []

    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y) + penalty(self)

    def on_train_batch_end(self, outputs, batch, index):
        self.trace.append([float(w.value.detach()) for w in sw.optim.width_modules(self.net)])

    def on_train_end(self):
        if self.trace_dir:
            Path(self.trace_dir, f"rank{self.global_rank}.json").write_text(json.dumps(self.trace))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)  # the callback gives the widths their own groups


def _loader(batch_size=32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = x[:, :1] - 0.5 * x[:, 1:2] + torch.tanh(2 * x[:, 2:3])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def _trainer(tmp_path, callback, **options):
    return L.Trainer(max_epochs=2, accelerator="cpu", callbacks=[callback], default_root_dir=tmp_path,
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     logger=False, **options)


def _stock_flops(plain: nn.Module) -> float:
    """FLOP/s of a consolidated stock MLP from its shapes: 2 I O per Linear, one per ReLU output."""
    linears = [m for m in plain.modules() if isinstance(m, nn.Linear)]
    return (sum(2 * m.in_features * m.out_features for m in linears)
            + sum(m.out_features for m in linears[:-1])) / SECONDS


def test_callback_trains_logs_and_consolidates(tmp_path):
    module = Regressor()
    callback = SoftWidthCallback(weight=0.5, dirpath=tmp_path / "small", trace=True)
    trainer = _trainer(tmp_path, callback)
    trainer.fit(module, _loader())
    logged = trainer.callback_metrics
    assert {"width/a", "width/b", "cost", "flops"} <= set(logged)
    assert len(callback.history) == 2
    a, b = sw.optim.width_modules(module.net)
    assert float(logged["width/a"]) == float(a.value) and float(logged["width/b"]) == float(b.value)
    assert float(a.value) == a.rounded  # the schedule froze the widths at integers before the end
    assert a.rounded < 16 or b.rounded < 12  # the cost term moved them
    plain = callback.consolidated
    assert not any(type(m).__module__.startswith("softwidth") for m in plain.modules())
    assert _stock_flops(plain) == pytest.approx(float(logged["flops"]), rel=1e-6)
    x = torch.randn(5, 8)
    module.eval()
    torch.testing.assert_close(plain(x), module.net(x), atol=1e-5, rtol=0)
    reloaded = export.load(tmp_path / "small")  # a stock nn.Sequential: reloads with no user code
    torch.testing.assert_close(reloaded(x), plain(x), atol=0, rtol=0)
    held = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not held & {id(a.value), id(b.value)}  # the callback's WidthSGD trains the widths
    assert callback.width_opt.param_groups[0]["params"] == [a.value, b.value]
    steps = [row["step"] for row in callback.trace_rows]
    assert steps and steps == list(range(steps[0], steps[0] + len(steps)))  # every width-learning step
    assert {"width:a", "task_grad:a", "cost_grad:b", "cost"} <= set(callback.trace_rows[0])
    assert (tmp_path / "small" / "trace.csv").is_file()


def test_adam_width_groups_when_asked(tmp_path):
    module = Regressor()
    callback = SoftWidthCallback(weight=0.5, width_optimizer="adam")
    trainer = _trainer(tmp_path, callback)
    trainer.fit(module, _loader())
    groups = trainer.optimizers[0].param_groups
    assert sorted(g["width"] for g in groups if "width" in g) == ["a", "b"]
    assert all(g["weight_decay"] == 0.0 for g in groups if "width" in g)


def test_budget_target_is_met(tmp_path):
    module = Regressor()
    callback = SoftWidthCallback(target=0.4)
    _trainer(tmp_path, callback).fit(module, _loader())
    full = _stock_flops(sw.consolidate(Regressor().net.eval()))
    flops = _stock_flops(callback.consolidated)
    assert 0.85 * 0.4 * full <= flops <= 0.4 * full
    assert "multiplier" in callback.history[-1]


def test_ddp_spawn_two_processes(tmp_path):
    """2 CPU processes (gloo): identical widths on both ranks after every step, and the consolidated model
    saved by rank 0 costs what the callback logged."""
    module = Regressor(trace_dir=str(tmp_path))
    callback = SoftWidthCallback(weight=0.5, dirpath=tmp_path / "small")
    trainer = _trainer(tmp_path, callback, strategy="ddp_spawn", devices=2)
    trainer.callbacks.append(L.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints"))  # saved under DDP
    trainer.fit(module, _loader(batch_size=16))
    traces = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(traces[0]) == 2 * 256 // 16 // 2  # each rank: half of the batches, 2 epochs
    assert traces[0] == traces[1]
    assert len({tuple(t) for t in traces[0]}) > 3  # the widths moved
    plain = export.load(tmp_path / "small")
    assert _stock_flops(plain) == pytest.approx(float(trainer.callback_metrics["flops"]), rel=1e-6)
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("*.ckpt")), weights_only=True)
    assert "net.0.out_width.value" in checkpoint["state_dict"]  # widths are ordinary parameters there
    assert [m.out_features for m in plain if isinstance(m, nn.Linear)][:2] == [int(w) for w in traces[0][-1]]


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True  # an interrupted run: the checkpoint of epoch 1 is what is left


def test_resume_from_a_lightning_checkpoint_restores_the_schedule(tmp_path):
    first = SoftWidthCallback(weight=0.5)
    options = {"enable_checkpointing": True, "logger": False, "enable_progress_bar": False,
               "enable_model_summary": False, "accelerator": "cpu", "max_epochs": 2, "default_root_dir": tmp_path}
    trainer = L.Trainer(callbacks=[first, _StopAfterFirstEpoch()], **options)
    trainer.fit(Regressor(), _loader())
    assert first.scheduler.steps == 8 and not first.scheduler.frozen and len(first.history) == 1
    second = SoftWidthCallback(weight=0.5)
    resumed = L.Trainer(callbacks=[second], **options)
    resumed.fit(Regressor(), _loader(), ckpt_path=trainer.checkpoint_callback.last_model_path
                or trainer.checkpoint_callback.best_model_path)
    assert second.scheduler.steps == 16 and second.scheduler.frozen  # continued, not restarted
    assert len(second.history) == 2 and second.history[0] == first.history[0]
    assert [g.get("width") for g in resumed.optimizers[0].param_groups] == [None]  # no width groups added
    assert second.width_opt.param_groups[0]["t"] > first.width_opt.param_groups[0]["t"]  # its state came back
    a, b = sw.optim.width_modules(second.model)
    assert float(a.value) == a.rounded and float(b.value) == b.rounded


def test_penalty_needs_the_callback_and_options_are_checked(tmp_path):
    with pytest.raises(sw.SoftWidthError, match="not both"):
        SoftWidthCallback(weight=0.1, target=0.5)
    with pytest.raises(sw.SoftWidthError, match="width_travel"):
        SoftWidthCallback(width_travel=0)
    module = Regressor()
    trainer = _trainer(tmp_path, SoftWidthCallback(weight=0.1), max_steps=1)
    trainer.callbacks = []
    module.trainer = trainer
    with pytest.raises(sw.SoftWidthError, match="0 SoftWidthCallback"):
        penalty(module)


def test_unprofiled_model_is_refused(tmp_path):
    class Plain(Regressor):
        def __init__(self):
            super().__init__()
            del self.net.softwidth_profile

    with pytest.raises(sw.SoftWidthError, match="found 0 profiled modules"):
        _trainer(tmp_path, SoftWidthCallback(weight=0.1)).fit(Plain(), _loader())
