"""3. Cost-model fidelity: analytic FLOPs and parameters vs independent counts, and FLOP/s vs latency.

The zoo: the synthetic study's student (:func:`softwidth.experiments.synthetic.build_student`), the CRNN and
Transformer VADs (every width dynamic) and the ``FrameClassifier`` of ``benchmarks/consolidation_speed.py``, each
at random integer widths (seeded) plus the full size. Per member, on one example (batch 1; VAD: 1 s = 100 frames):

- ``params``: ``softwidth.params(model)`` vs ``sum(p.numel())`` of the consolidated model (must be equal);
- ``macs``: ``2 x softwidth.macs(model)`` vs ``torch.utils.flop_counter.FlopCounterMode`` on the consolidated
  model, less the mel bank's MACs. FlopCounterMode counts matrix products and convolutions only (2 FLOPs per
  MAC); the consolidated mel bank is a gather and an ``index_add`` of its nonzero weights, which it does not see
  (that count is checked against what runs in tests/layers/test_frontend.py). It sees the convs,
  GRU gates (addmm on CPU), attention projections, scores and attention x values (run with the math SDPA
  backend and grad mode on, so the stock encoder layer leaves its fused fast path, which it cannot see), the
  feed-forward and head layers. It does not count activations, norms, bias adds or softmax (must be equal);
- ``flops``: the per-layer analytic FLOPs vs ``moduleprofiler`` (the paper's author's counter, the convention
  of softwidth.cost) for every layer moduleprofiler prices: Linear, Conv1d, GRU, BatchNorm1d, ReLU. It has no
  formula for LogMel (softwidth's own module) or MultiheadAttention, so those layers (``mel`` and the
  Transformer encoder layers) are listed as not covered and their FLOPs are checked through the MACs above only
  (their element-wise terms are checked in tests/layers/test_attention.py and test_frontend.py). ``coverage``
  is the share of the analytic FLOPs moduleprofiler confirmed (must be equal where covered).

Then the latency of every consolidated member at batch 32 (VAD and FrameClassifier: 32 x 1 s; student: 32
examples = 0.32 s at its 100 examples per second) against its FLOP/s: Pearson and Spearman correlation over the
whole zoo and per family (reported, no target).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from moduleprofiler import ModuleProfiler
from scipy import stats
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import softwidth as sw
from softwidth.experiments.synthetic import SyntheticConfig, build_student
from softwidth.optim import width_modules
from softwidth.vad.models import build_model

from ._common import Settings, time_call
from .consolidation_speed import FrameClassifier


def _set_widths(model, rng: np.random.Generator | None) -> dict:
    """Set every width to a random integer in its range (``rng`` None: the maximum); returns the sizes."""
    sizes = {}
    for i, w in enumerate(width_modules(model)):
        q = w.multiple_of
        low, high = q * math.ceil(w.min_size / q), w.max_size
        value = high if rng is None else q * int(rng.integers(low // q, high // q + 1))
        with torch.no_grad():
            w.value.fill_(float(value))
        sizes[w.name or f"w{i}"] = w.rounded
    return sizes


def _zoo(count: int):
    """Yield ``(family, model, example, seconds, batch_seconds)``: members with widths set, not yet profiled."""
    rng = np.random.default_rng(0)
    for i in range(count + 1):
        pick = None if i == 0 else rng
        torch.manual_seed(i)
        student = build_student(SyntheticConfig())
        yield "synthetic student", student, _set_widths(student, pick), torch.randn(1, 32), 0.01
        crnn = build_model("crnn", dynamic="all")
        yield "crnn vad", crnn, _set_widths(crnn, pick), torch.rand(1, 100, 201), 1.0
        tr = build_model("transformer", dynamic="all")
        yield "transformer vad", tr, _set_widths(tr, pick), torch.rand(1, 100, 201), 1.0
        widths = [sw.Width(256, name=n) for n in ("c1", "c2", "h")]
        fc = FrameClassifier(*widths)
        yield "frame classifier", fc, _set_widths(fc, pick), torch.randn(1, 100, 80), 1.0


def _check(model, x, seconds: float) -> dict:
    model.eval()
    sw.profile(model, x, seconds=seconds)
    totals = {k: float(v.detach()) for k, v in sw.cost(model).items()}
    layers = sw.cost(model, per_layer=True)
    per_layer = {n: float(r["flops"].detach()) for n, r in layers.items()}
    mels = {n for n, m in model.named_modules() if isinstance(m, sw.LogMel)}
    mel_macs = sum(float(r["macs"].detach()) for n, r in layers.items() if n in mels)  # sparse: not a matmul
    plain = sw.consolidate(model).eval()
    numel = sum(p.numel() for p in plain.parameters())
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        plain(x)
    ops = ModuleProfiler().estimate_ops(plain, x)
    covered = {n: f for n, f in per_layer.items() if ops.get(n, {}).get("ops") is not None}
    mismatched = [n for n, f in covered.items() if ops[n]["ops"] != f]
    return {"flops_per_s": totals["flops"] / seconds, "params": totals["params"], "numel": numel,
            "params_equal": totals["params"] == numel,
            "macs_x2": 2 * (totals["macs"] - mel_macs), "mel_macs_x2": 2 * mel_macs,
            "flop_counter": float(counter.get_total_flops()),
            "macs_equal": 2 * (totals["macs"] - mel_macs) == counter.get_total_flops(),
            "mp_covered_flops": sum(covered.values()), "mp_flops": float(sum(ops[n]["ops"] for n in covered)),
            "coverage": sum(covered.values()) / totals["flops"], "flops_equal": not mismatched,
            "not_covered": ", ".join(sorted(set(per_layer) - set(covered))), "mismatched": ", ".join(mismatched),
            "plain": plain}


def _latency(plain, x, batch_seconds: float, settings: Settings) -> float:
    batch = x.expand(32, *x.shape[1:]).contiguous()

    def call():
        with torch.no_grad():
            plain(batch)

    return time_call(call, settings)["median_s"] / (32 * batch_seconds)


def _correlation(xs, ys) -> dict:
    if len(xs) < 3:
        return {"n": len(xs), "pearson": None, "spearman": None}
    return {"n": len(xs), "pearson": float(stats.pearsonr(xs, ys)[0]), "spearman": float(stats.spearmanr(xs, ys)[0])}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run(settings: Settings) -> dict:
    rows = []
    for family, model, sizes, x, seconds in _zoo(1 if settings.quick else 4):
        r = _check(model, x, seconds)
        plain = r.pop("plain")
        r["latency_s_per_s"] = _latency(plain, x, seconds, settings)
        rows.append({"family": family, "sizes": ", ".join(f"{k}={v}" for k, v in sizes.items()), **r})
    checks = [
        {"what": "params: analytic == numel of the consolidated model (all members)",
         "value": sum(r["params_equal"] for r in rows) / len(rows), "target": "== 1 (share equal)",
         "pass": all(r["params_equal"] for r in rows)},
        {"what": "MACs: 2 x analytic (less the sparse mel bank) == FlopCounterMode (matmul/conv/bmm; all members)",
         "value": sum(r["macs_equal"] for r in rows) / len(rows), "target": "== 1 (share equal)",
         "pass": all(r["macs_equal"] for r in rows)},
        {"what": "FLOPs: analytic == moduleprofiler on every layer it prices (all members)",
         "value": sum(r["flops_equal"] for r in rows) / len(rows), "target": "== 1 (share equal)",
         "pass": all(r["flops_equal"] for r in rows)},
    ]
    correlation = {"all": _correlation([r["flops_per_s"] for r in rows], [r["latency_s_per_s"] for r in rows])}
    for family in dict.fromkeys(r["family"] for r in rows):
        sub = [r for r in rows if r["family"] == family]
        correlation[family] = _correlation([r["flops_per_s"] for r in sub], [r["latency_s_per_s"] for r in sub])
    notes = [f"FLOP/s vs latency (batch 32), {k}: n={v['n']}, Pearson {_fmt(v['pearson'])}, "
             f"Spearman {_fmt(v['spearman'])}" for k, v in correlation.items()]
    notes.append("coverage = share of the analytic FLOPs on layers moduleprofiler prices; the rest (LogMel, "
                 "attention) is checked through FlopCounterMode's matmul count only.")
    return {
        "title": "Cost-model fidelity (analytic vs independent counts; FLOP/s vs latency)",
        "setup": "one example per member (VAD, FrameClassifier: 1 s; student: one example at 100 examples/s); "
                 "widths random integers (seeded) or the maximum; latency: consolidated model, batch 32, median",
        "columns": [["family", "model"], ["sizes", "widths"], ["flops_per_s", "FLOP/s"], ["params", "params"],
                    ["params_equal", "params = numel"], ["macs_equal", "2 MACs = FlopCounterMode"],
                    ["coverage", "moduleprofiler coverage"], ["flops_equal", "FLOPs = moduleprofiler"],
                    ["not_covered", "not covered"], ["latency_s_per_s", "latency (s per s of input)"]],
        "rows": rows, "checks": checks, "correlation": correlation, "notes": notes,
    }
