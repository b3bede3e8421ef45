"""Tests of softwidth.distributed and of fit under torchrun: 2 CPU processes (gloo) against one process.

The 2-process runs set torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) in
processes started by torch.multiprocessing and call ``sw.fit`` exactly as a single process does.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import softwidth as sw
from softwidth import distributed
from softwidth.layers import Linear

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

EPOCHS, BATCHES, BATCH = 6, 4, 64
WEIGHT = 0.3
# the quiet runs take the only per-rank randomness out (injected noise: randn_like -> 0; nested dropout:
# ordering 0, no warm-up), so a 2-rank run must equal the single-process run up to float rounding
QUIET = sw.Schedule(warmup=0.0, ordering=0.0)


def _model():
    torch.manual_seed(0)
    a, b = sw.Width(16, name="a"), sw.Width(12, name="b")
    model = nn.Sequential(Linear(nn.Linear(8, 16), out_width=a), nn.ReLU(),
                          Linear(nn.Linear(16, 12), in_width=a, out_width=b), nn.ReLU(),
                          Linear(nn.Linear(12, 1), in_width=b))
    sw.profile(model, torch.zeros(1, 8), seconds=0.01)
    return model, (a, b)


def _batches():
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(BATCHES):
        x = torch.randn(BATCH, 8, generator=g)
        out.append((x, x[:, :1] - 0.5 * x[:, 1:2] + torch.tanh(2 * x[:, 2:3])))
    return out


def _train(out_dir, schedule=sw.Schedule()):
    """The user's script: identical in one process and under torchrun. Returns the widths seen at every
    step (before it, and after the last), the first noise draw, the result and the model."""
    model, widths = _model()
    trace, noise, sizes = [], [], set()

    def loss_fn(m, batch):
        if m.training:
            sizes.add(len(batch[0]))
            trace.append([float(w.value.detach()) for w in widths])
            if not noise:  # the first draw of this rank's generator, without consuming it
                state = torch.get_rng_state()
                noise.append(float(torch.randn(())))
                torch.set_rng_state(state)
        x, y = batch
        return nn.functional.mse_loss(m(x), y)

    term = sw.CostPenalty(model, weight=WEIGHT)
    result = sw.fit(model, distributed.shard(_batches()), loss_fn=loss_fn, cost_term=term, out_dir=out_dir,
                    val_data=distributed.shard(_batches()[:1]),
                    config=sw.FitConfig(epochs=EPOCHS, lr=1e-2, progress=False, schedule=schedule))
    trace.append([float(w.value.detach()) for w in widths])
    return trace, noise, result, model, sorted(sizes)


def _record(trace, noise, result, model, sizes) -> dict:
    return {"rank": distributed.rank(), "world": distributed.world_size(), "trace": trace, "noise": noise,
            "sizes": sizes,
            "history": result.history, "weights": [p.detach().flatten().tolist() for p in model.parameters()]}


def _worker(rank, port, folder):
    """One rank: torchrun's environment, then the user's script (a quiet run, then the default one); the
    file writers are counted to show that rank 0 alone writes."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import softwidth.train as train

    calls = {"csv": 0, "checkpoint": 0, "consolidated": 0}
    for name, key in (("write_log", "csv"), ("save_checkpoint", "checkpoint"), ("save_consolidated", "consolidated")):
        real = getattr(train, name)

        def counted(*args, _real=real, _key=key, **kwargs):
            calls[_key] += 1
            return _real(*args, **kwargs)
        setattr(train, name, counted)
    randn_like = torch.randn_like
    torch.randn_like = torch.zeros_like
    quiet = _record(*_train(None, QUIET))
    torch.randn_like = randn_like
    noisy = _record(*_train(Path(folder) / "run"))
    Path(folder, f"rank{rank}.json").write_text(json.dumps({"quiet": quiet, "noisy": noisy, "calls": calls}))
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=2, join=True)
    return folder, [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("run", ["noisy", "quiet"])
def test_widths_identical_on_every_rank_after_every_step(two_ranks, run):
    _, (r0, r1) = (two_ranks[0], [r[run] for r in two_ranks[1]])
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    assert r0["sizes"] == r1["sizes"] == [BATCH // 2]  # each rank trains on its half of every batch
    assert len(r0["trace"]) == EPOCHS * BATCHES + 1  # before each step, and after the last
    assert r0["trace"] == r1["trace"]  # bit for bit, every step
    assert r0["weights"] == r1["weights"]
    assert r0["history"] == r1["history"]  # losses in the log are means over the ranks
    assert len({tuple(t) for t in r0["trace"]}) > EPOCHS  # the widths did move: identical is not trivial


def test_noise_is_seeded_per_rank(two_ranks):
    r0, r1 = (r["noisy"] for r in two_ranks[1])
    assert r0["noise"] != r1["noise"]


def test_only_rank_zero_writes(two_ranks):
    folder, (r0, r1) = two_ranks
    assert r0["calls"] == {"csv": EPOCHS, "checkpoint": EPOCHS, "consolidated": 1}
    assert r1["calls"] == {"csv": 0, "checkpoint": 0, "consolidated": 0}
    run = folder / "run"
    assert {p.name for p in run.iterdir()} >= {"log.csv", "checkpoint.pt", "consolidated"}
    plain = sw.export.load(run / "consolidated")
    final = r0["noisy"]["trace"][-1]
    assert [m.out_features for m in plain if isinstance(m, nn.Linear)][:2] == [int(w) for w in final]


def test_matches_a_single_process_run_with_the_same_global_batch_and_seed(two_ranks, monkeypatch):
    """Quiet runs (no per-rank randomness): each rank's half-batch gradients averaged are the full-batch
    gradient, so the 2-rank run is the single-process run up to float rounding: every width within 1e-3
    features at every step, every logged loss within 1e-4 relative, the final weights within 1e-4."""
    ddp = two_ranks[1][0]["quiet"]
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    trace, _, result, model, sizes = _train(None, QUIET)
    assert sizes == [BATCH]
    assert len(trace) == len(ddp["trace"])
    for single, both in zip(trace, ddp["trace"]):
        assert single == pytest.approx(both, abs=1e-3)
    assert trace[-1] != trace[0]
    for single, both in zip(result.history, ddp["history"]):
        assert single == pytest.approx(both, rel=1e-4)
    for p, q in zip(model.parameters(), ddp["weights"]):
        assert p.detach().flatten().tolist() == pytest.approx(q, abs=1e-4)


def test_shard_splits_batches_in_contiguous_parts():
    x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    parts = [list(distributed.shard([(x, y), {"x": x, "n": 3}], rank=r, world_size=2)) for r in (0, 1)]
    assert torch.equal(torch.cat([parts[0][0][0], parts[1][0][0]]), x)
    assert torch.equal(parts[0][0][1], y[:3]) and torch.equal(parts[1][0][1], y[3:])
    assert parts[1][1]["n"] == 3 and torch.equal(parts[1][1]["x"], x[3:])
    assert len(distributed.shard([1, 2, 3], rank=0, world_size=2)) == 3
    single = [(x, y)]
    assert list(distributed.shard(single))[0] is single[0]  # one process: unchanged
    with pytest.raises(sw.SoftWidthError, match="cannot be split over 8 ranks"):
        list(distributed.shard([x], rank=0, world_size=8))
    with pytest.raises(sw.SoftWidthError, match="outside"):
        distributed.shard([x], rank=2, world_size=2)


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup() is False
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    model, _ = _model()
    model(torch.randn(4, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    distributed.average_gradients(model)
    distributed.broadcast_module(model)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_setup_names_missing_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(sw.SoftWidthError, match="RANK, MASTER_ADDR, MASTER_PORT not set; start the script with torchrun"):
        distributed.setup()
