"""Is a consolidated model really faster? Wall-clock ratio full / consolidated, measured in one run.

A 1-D conv + GRU frame classifier (80 log-mel bands in, 100 frames = 1 s of audio at 10 ms) is made
dynamic; its widths are set by ``enforce_budget`` to the largest integers (one common scale) within 25 % of
the full FLOP/s; the consolidated and the full model are timed on
CPU with ``torch.utils.benchmark`` (warm-up, repeated blocked runs, median). Writes
``results/bench/consolidation_speed.json`` and prints a table.

    python benchmarks/consolidation_speed.py [--threads 1] [--batch 1 32]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

import softwidth as sw
from softwidth.objective import enforce_budget


class FrameClassifier(nn.Module):
    """(batch, 100, 80) features -> (batch, 100, 2) logits: conv stack, GRU, linear head."""

    def __init__(self, c1: sw.Width, c2: sw.Width, h: sw.Width) -> None:
        super().__init__()
        self.conv1 = sw.dynamic(nn.Conv1d(80, 256, 3, padding=1), out_width=c1)
        self.conv2 = sw.dynamic(nn.Conv1d(256, 256, 3, padding=1), in_width=c1, out_width=c2)
        self.act = nn.ReLU()
        self.gru = sw.dynamic(nn.GRU(256, 256, batch_first=True), in_width=c2, hidden_width=h)
        self.head = sw.dynamic(nn.Linear(256, 2), in_width=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv2(self.act(self.conv1(x.transpose(1, 2)))))
        y, _ = self.gru(y.transpose(1, 2))
        return self.head(y)


def median_seconds(model: nn.Module, x: torch.Tensor) -> float:
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
    with torch.no_grad():
        for _ in range(3):  # warm-up
            model(x)
        return timer.blocked_autorange(min_run_time=1.0).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, default=Path("results/bench/consolidation_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c1, c2, h = sw.Width(256), sw.Width(256), sw.Width(256)
    model = FrameClassifier(c1, c2, h).eval()
    sw.profile(model, torch.zeros(1, 100, 80), seconds=1.0)
    full_flops = sw.flops_per_second(model).item()
    enforce_budget(model, 0.25 * full_flops)  # the largest equal-ratio integer widths within 25 % of the FLOP/s
    small_flops = sw.flops_per_second(model).item()
    small = sw.consolidate(model)
    full = sw.consolidate(FrameClassifier(sw.Width(256), sw.Width(256), sw.Width(256)).eval())
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, 100, 80)
        t_full, t_small = median_seconds(full, x), median_seconds(small, x)
        rows.append({"batch": batch, "full_ms": 1e3 * t_full, "consolidated_ms": 1e3 * t_small,
                     "speedup": t_full / t_small})
    result = {
        "widths": {w.label: w.rounded for w in (c1, c2, h)},
        "full_mflops_per_s": full_flops / 1e6, "consolidated_mflops_per_s": small_flops / 1e6,
        "flops_ratio": small_flops / full_flops, "threads": args.threads, "rows": rows,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"FLOP/s: full {result['full_mflops_per_s']:.2f} M, consolidated {result['consolidated_mflops_per_s']:.2f} M "
          f"({result['flops_ratio']:.1%})")
    print("| batch | full (ms) | consolidated (ms) | speed-up |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['full_ms']:.2f} | {r['consolidated_ms']:.2f} | {r['speedup']:.2f}x |")


if __name__ == "__main__":
    main()
