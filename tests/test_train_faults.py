"""Fault tests of softwidth.fit: SIGKILL at random points and mid-checkpoint-write, corrupt checkpoints
(fallback to checkpoint.prev.pt), and checkpoints carrying a pickle payload (refused, never executed)."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from torch import nn

import softwidth as sw
from softwidth import FitConfig, SoftWidthError, Width
from softwidth.layers import Linear

pytestmark = [pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol"),
              pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]

EPOCHS = 6
BATCHES = 4
SLOW = 0.025  # seconds slept per batch in the runs that are killed by timer: 6 x 4 x 25 ms = 0.6 s of fit

# The training run, as a script: same seed, same model, same data in every process. SW_SLOW sleeps in the
# loss (no effect on the numbers); SW_KILL="write:E" writes half of epoch E's checkpoint then SIGKILLs
# itself, "rename:E" SIGKILLs between the two renames of epoch E (checkpoint.pt already moved to prev).
SCRIPT = r'''
import os, signal, sys, time
import torch
from torch import nn
import softwidth as sw
from softwidth import BudgetController, FitConfig, Width
from softwidth.layers import Linear

torch.set_num_threads(1)
out, result = sys.argv[1], sys.argv[2]
slow = float(os.environ.get("SW_SLOW", "0"))
kill = os.environ.get("SW_KILL", "")
mode, _, at = kill.partition(":")
saves = [0]
if mode == "write":
    real_save = torch.save
    def half_save(obj, f, *args, **kwargs):
        saves[0] += 1
        if saves[0] < int(at):
            return real_save(obj, f, *args, **kwargs)
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = half_save
elif mode == "rename":
    real_replace = os.replace
    def replace(src, dst):
        if os.path.basename(src) == "checkpoint.tmp":
            saves[0] += 1
            if saves[0] == int(at):
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace

torch.manual_seed(3)
a, b = Width(16), Width(12)
model = nn.Sequential(Linear(nn.Linear(8, 16), out_width=a), nn.ReLU(),
                      Linear(nn.Linear(16, 12), in_width=a, out_width=b), nn.ReLU(),
                      Linear(nn.Linear(12, 1), in_width=b))
sw.profile(model, torch.zeros(1, 8), seconds=0.01)
g = torch.Generator().manual_seed(1)
data = []
for _ in range(%(batches)d + 1):
    x = torch.randn(16, 8, generator=g)
    data.append((x, x[:, :1] - 0.5 * x[:, 1:2] + torch.tanh(2 * x[:, 2:3])))
train, val = data[:-1], data[-1:]

calls = [0]

def loss_fn(model, batch):
    calls[0] += 1
    if calls[0] == 1:  # the timers start here: fit's one-off set-up (imports, Adam) takes ~1 s
        print("ready", flush=True)
    if slow and model.training:
        time.sleep(slow)
    x, y = batch
    return nn.functional.mse_loss(model(x), y)

controller = BudgetController(model, target=0.4)
fit = sw.fit(model, train, loss_fn=loss_fn, cost_term=controller, val_data=val, out_dir=out, resume=True,
             config=FitConfig(epochs=%(epochs)d, lr=1e-2, progress=False))
torch.save({"model": model.state_dict(), "consolidated": fit.consolidated.state_dict(),
            "history": fit.history, "widths": fit.widths, "multiplier": controller.multiplier}, result)
''' % {"batches": BATCHES, "epochs": EPOCHS}


def _start(script, out, result, **env):
    return subprocess.Popen([sys.executable, str(script), str(out), str(result)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def _finish(proc):
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def _epoch_on_disk(out):
    """The epoch of the checkpoint a resume would use (0 = none yet): what the kill left behind."""
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        try:
            return int(torch.load(out / name, weights_only=True)["epoch"])
        except (OSError, RuntimeError, pickle.UnpicklingError):  # missing, truncated, garbage
            continue
    return 0


def _assert_same_run(result, reference):
    got, expected = (torch.load(p, weights_only=True) for p in (result, reference))
    assert got["widths"] == expected["widths"]
    assert got["history"] == expected["history"] and len(got["history"]) == EPOCHS
    assert got["multiplier"] == expected["multiplier"]
    for part in ("model", "consolidated"):
        assert got[part].keys() == expected[part].keys()
        for key in expected[part]:
            assert torch.equal(got[part][key], expected[part][key]), (part, key)
    assert (result.parent / "run" / "log.csv").read_text() == (reference.parent / "run" / "log.csv").read_text()
    assert not (result.parent / "run" / "checkpoint.tmp").exists()


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    path = root / "train_run.py"
    path.write_text(SCRIPT)
    reference = root / "reference"
    reference.mkdir()
    code, err = _finish(_start(path, reference / "run", reference / "result.pt"))
    assert code == 0, err
    return path, reference / "result.pt"


def test_sigkill_at_random_points_then_resume_is_the_uninterrupted_run(script, tmp_path):
    """Five kills by timer during the 0.6 s of training (sleeps in the loss make its length a lower bound,
    so every kill lands before the end); each killed run is resumed to completion and must be bit-identical."""
    path, reference = script
    delays = (0.05, 0.15, 0.25, 0.35, 0.45)
    left = []
    for i, delay in enumerate(delays):
        case = tmp_path / f"kill{i}"
        case.mkdir()
        proc = _start(path, case / "run", case / "result.pt", SW_SLOW=str(SLOW))
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        code, err = _finish(proc)
        assert code == -signal.SIGKILL, err
        assert not (case / "result.pt").exists()
        left.append(_epoch_on_disk(case / "run"))
    assert all(0 <= e < EPOCHS for e in left) and len(set(left)) >= 2, left  # kills at different epochs
    resumes = [_start(path, tmp_path / f"kill{i}" / "run", tmp_path / f"kill{i}" / "result.pt")
               for i in range(len(delays))]  # in parallel: the numbers do not depend on timing
    for proc in resumes:
        code, err = _finish(proc)
        assert code == 0, err
    for i in range(len(delays)):
        _assert_same_run(tmp_path / f"kill{i}" / "result.pt", reference)


@pytest.mark.parametrize("kill, resumed_from", [("write:1", 0), ("write:4", 3), ("rename:3", 2)])
def test_sigkill_during_a_checkpoint_write_then_resume(script, tmp_path, kill, resumed_from):
    """Killed with half a checkpoint written (first or a later one), or between the two renames (no
    checkpoint.pt on disk): the resume warns where needed, falls back, and ends bit-identical."""
    path, reference = script
    code, err = _finish(_start(path, tmp_path / "run", tmp_path / "result.pt", SW_KILL=kill))
    assert code == -signal.SIGKILL, err
    run = tmp_path / "run"
    assert _epoch_on_disk(run) == resumed_from
    if kill.startswith("write"):
        assert (run / "checkpoint.tmp").exists()  # the half-written file, which resume must ignore
        with open(run / "log.csv") as f:
            assert len(list(csv.DictReader(f))) == resumed_from + 1  # the log got ahead of the checkpoint
    else:
        assert not (run / "checkpoint.pt").exists() and (run / "checkpoint.prev.pt").exists()
    code, err = _finish(_start(path, run, tmp_path / "result.pt"))
    assert code == 0, err
    if kill.startswith("rename"):
        assert "cannot resume from" in err and "using the previous checkpoint" in err
    _assert_same_run(tmp_path / "result.pt", reference)


# -- corrupt and untrusted checkpoints (in process) ---------------------------------------------------------

def _model():
    torch.manual_seed(0)
    a = Width(6)
    model = nn.Sequential(Linear(nn.Linear(8, 6), out_width=a), nn.ReLU(), Linear(nn.Linear(6, 1), in_width=a))
    sw.profile(model, torch.zeros(1, 8), seconds=0.01)
    return model


def _data():
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(8, 8, generator=g) for _ in range(2)]
    return [(x, x[:, :1] - x[:, 1:2]) for x in xs]


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _fail(model, batch):
    raise RuntimeError("stop")


def _fit(out, loss_fn=_mse, resume=True):
    return sw.fit(_model(), _data(), loss_fn=loss_fn, config=FitConfig(epochs=3, lr=1e-2, progress=False),
                  out_dir=out, resume=resume)


class Payload:
    """A pickle that runs code when unpickled: creates ``marker`` via exec."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _garbage(path, tmp_path):
    path.write_bytes(b"this is not a checkpoint")


def _truncated(path, tmp_path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _missing(path, tmp_path):
    path.unlink()


def _other_model(path, tmp_path):
    state = torch.load(path, weights_only=True)
    state["model"] = {k: torch.zeros(3) for k in state["model"]}
    torch.save(state, path)


def _payload(path, tmp_path):
    state = torch.load(path, weights_only=True)
    state["history"] = [Payload(tmp_path / "pwned")]
    torch.save(state, path)


def _plain_pickle(path, tmp_path, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({"epoch": 3, "model": Payload(tmp_path / "pwned")}, f, protocol=protocol)


def _plain_pickle_v5(path, tmp_path):
    _plain_pickle(path, tmp_path, protocol=5)


SPOILERS = [_garbage, _truncated, _missing, _other_model, _payload, _plain_pickle, _plain_pickle_v5]


@pytest.mark.parametrize("spoil", SPOILERS)
def test_bad_checkpoint_falls_back_to_the_previous_one(tmp_path, spoil):
    """checkpoint.pt spoiled after a 3-epoch run: resume warns (one line naming the file and the reason),
    redoes epoch 3 from checkpoint.prev.pt and gets the same result; no payload ever runs."""
    full = _fit(tmp_path / "full", resume=False)
    run = tmp_path / "run"
    _fit(run, resume=False)
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["epoch"] == 2
    spoil(run / "checkpoint.pt", tmp_path)
    (run / "checkpoint.tmp").write_bytes(b"stale half write")

    with pytest.warns(UserWarning) as caught, pytest.raises(RuntimeError, match="stop"):
        _fit(run, loss_fn=_fail)  # a resume that dies at once: the log must already match prev
    ours = [str(w.message) for w in caught if "cannot resume" in str(w.message)]  # torch may add its own
    assert len(ours) == 1
    message = ours[0]
    assert "\n" not in message and "checkpoint.pt" in message and "checkpoint.prev.pt" in message
    assert not (run / "checkpoint.tmp").exists()
    with open(run / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    if spoil in (_payload, _plain_pickle, _plain_pickle_v5):
        assert "unsafe pickle refused" in message
    if spoil in (_payload, _plain_pickle):
        assert "GLOBAL exec" in message  # the reason names what was blocked

    with pytest.warns(UserWarning, match="using the previous checkpoint"):
        resumed = _fit(run)
    assert resumed.history == full.history and resumed.widths == full.widths
    for (key, p), q in zip(resumed.model.state_dict().items(), full.model.state_dict().values()):
        assert torch.equal(p, q), key
    assert (run / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("spoil", [_truncated, _payload, _plain_pickle, _plain_pickle_v5])
def test_both_checkpoints_bad_is_an_error_naming_both(tmp_path, spoil):
    _fit(tmp_path, resume=False)
    spoil(tmp_path / "checkpoint.pt", tmp_path)
    _garbage(tmp_path / "checkpoint.prev.pt", tmp_path)
    with warnings.catch_warnings(), pytest.raises(SoftWidthError) as info:
        warnings.simplefilter("ignore")
        _fit(tmp_path)
    message = str(info.value)
    assert f"cannot resume from {tmp_path / 'checkpoint.pt'}" in message
    assert f"cannot resume from {tmp_path / 'checkpoint.prev.pt'}" in message
    assert not (tmp_path / "pwned").exists()


def test_the_payload_is_live(tmp_path):
    """Guards the tests above: the same file loaded unsafely does run the payload."""
    _fit(tmp_path, resume=False)
    _plain_pickle(tmp_path / "checkpoint.pt", tmp_path)
    with pytest.raises(SoftWidthError, match="unsafe pickle refused"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shutil.copy(tmp_path / "checkpoint.pt", tmp_path / "copy.pt")
            (tmp_path / "checkpoint.prev.pt").unlink()
            _fit(tmp_path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(RuntimeError, match="magic number"):  # not a torch file, but the code already ran
        torch.load(tmp_path / "copy.pt", weights_only=False)
    assert (tmp_path / "pwned").exists()


def test_a_fresh_run_does_not_keep_an_older_runs_checkpoint_as_fallback(tmp_path):
    _fit(tmp_path, resume=False)
    assert (tmp_path / "checkpoint.prev.pt").exists()
    sw.fit(_model(), _data(), loss_fn=_mse, config=FitConfig(epochs=1, progress=False), out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.prev.pt").exists()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
