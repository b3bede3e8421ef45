"""Training memory does not grow with the length of the run (issue: robustness, load)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import resource, sys, torch, torch.nn as nn, softwidth as sw
    torch.manual_seed(0)
    h = sw.Width(64, name="hidden")
    model = nn.Sequential(sw.dynamic(nn.Linear(40, 64), out_width=h), nn.ReLU(), sw.dynamic(nn.Linear(64, 1), in_width=h))
    sw.profile(model, torch.zeros(1, 100, 40), seconds=1.0)
    batches = [(torch.randn(16, 100, 40), torch.randn(16, 100, 1)) for _ in range(20)]
    sw.fit(model, batches, loss_fn=lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
           cost_term=sw.BudgetController(model, target=0.5),
           config=sw.FitConfig(epochs=int(sys.argv[1]), progress=False), out_dir=sys.argv[2], tensorboard=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
""")


def peak_rss_mb(epochs: int, out) -> float:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(epochs), str(out)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def test_peak_memory_of_fit_does_not_grow_with_epochs(tmp_path):
    short = peak_rss_mb(3, tmp_path / "short")
    long = peak_rss_mb(60, tmp_path / "long")  # 20x the steps, checkpoints and log rows
    assert long - short < 15, (short, long)
