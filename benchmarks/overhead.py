"""1. Training overhead: one training step of a dynamic VAD model vs the same model built static.

A step is forward + BCE loss + backward + Adam step on the studies' batches (VAD: 32 crops of 200 frames of
power spectra, frame labels; ResNet countermeasure: 32 clips of 4 s of LFCC features, clip labels), random
inputs and labels, one thread. Variants per model kind (CRNN, Transformer, ResNet countermeasure):

- ``static``: ``build_model(kind, sizes)``, every width fixed at the study's maximum (the reference of the target);
- ``stock``: the same model consolidated into stock torch modules (what a user without softwidth trains);
- ``dynamic noisy``: ``build_model(kind, sizes, dynamic="all")``, profiled, widths learning: noise mix in the
  gates at the study's starting ramp temperature (2 features: the widest noise window; it narrows as the
  schedule anneals it), loss + :class:`~softwidth.BudgetController` penalty (target 0.5),
  widths in their own Adam group, projection and the controller's dual step after each step;
- ``noise draw alone``: ``torch.randn`` of as many numbers as one noisy step's gates draw (counted), the part
  of the noisy phase's overhead that is the method's i.i.d. Gaussian noise itself;
- ``dynamic frozen``: the same after ``Width.freeze_()`` on every width (hard truncation, no penalty), the
  phase after the study's freeze point;
- ``dynamic run (schedule mean)``: the mean step of a whole dynamic run as :func:`softwidth.fit` trains it: a
  fresh dynamic model trained for ``RUN_STEPS`` steps under the study's schedule
  (:class:`~softwidth.schedule.WidthScheduler`: temperature annealed, the budget enforced and every width frozen
  at ``VAD_SCHEDULE.freeze`` or, for the countermeasure, ``AS_SCHEDULE.freeze``), then
  :func:`softwidth.shrink.shrink` at the freeze (timed with the step it precedes) and the frozen
  phase on the consolidated model; each step timed; the median over repeated runs of their mean step time. What
  a training run costs per step, against the static model's;
- ``dynamic run, masked frozen phase``: the same without the shrink (``FitConfig(shrink=False)``): the frozen
  phase trains the masked full-size model.

Target (issue 9): dynamic / static <= 1.15, judged for each phase and for the whole run.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import softwidth as sw
from softwidth_studies.antispoof import models as cm
from softwidth_studies.antispoof.study import AS_SCHEDULE
from softwidth.optim import width_modules
from softwidth.schedule import WidthScheduler
from softwidth.shrink import shrink
from softwidth_studies.vad import models as vad
from softwidth_studies.vad.study import VAD_SCHEDULE

from ._common import Settings, time_calls

SIZES = {"crnn": {"conv1": 48, "conv2": 48, "hidden": 48}, "transformer": {"ff1": 128, "ff2": 128}, "resnet": {}}
TARGET = 1.15
RUN_STEPS = 40
CLIP_FRAMES = 201  # 4 s of LFCC frames at the countermeasure's 20 ms hop


def _builder(kind: str):
    """``(build(dynamic) -> model, probe input, probe seconds, schedule)`` of a model kind."""
    if kind == "resnet":
        return (lambda dynamic: cm.build_model(kind, SIZES[kind], dynamic=dynamic),
                torch.zeros(1, CLIP_FRAMES, 60), 4.0, AS_SCHEDULE)
    return (lambda dynamic: vad.build_model(kind, SIZES[kind], dynamic=dynamic),
            torch.zeros(1, 100, 201), 1.0, VAD_SCHEDULE)


def _batch(kind: str, quick: bool):
    g = torch.Generator().manual_seed(0)
    size = 4 if quick else 32
    if kind == "resnet":
        return torch.randn(size, 50 if quick else CLIP_FRAMES, 60, generator=g), (torch.rand(size, generator=g) > 0.5).float()
    frames = 50 if quick else 200
    return (torch.rand(size, frames, 201, generator=g) * 10,
            (torch.rand(size, frames, generator=g) > 0.6).float())


def _optimizer(model: nn.Module, width_lr: float = 0.05) -> torch.optim.Adam:
    """Adam at lr 3e-3, widths (if any) in their own groups."""
    groups = sw.param_groups(model, width_lr=width_lr) if width_modules(model) else model.parameters()
    return torch.optim.Adam(groups, lr=3e-3)


def _step_fn(model: nn.Module, batch, *, optimizer=None, controller=None, learning=lambda: True):
    """A closure running one training step of ``model`` (``optimizer`` default: :func:`_optimizer`); the
    controller's penalty and dual step only while ``learning()`` (as :func:`softwidth.fit`)."""
    model.train()
    optimizer = optimizer if optimizer is not None else _optimizer(model)
    power, labels = batch

    def step():
        loss = F.binary_cross_entropy_with_logits(model(power), labels)
        active = controller is not None and learning()
        if active:
            loss = loss + controller.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if active:
            sw.project_(model)
            controller.step()

    return step


def _run_mean(kind: str, batch, settings: Settings, *, shrinking: bool = True) -> dict:
    """Median over repeated whole dynamic runs (``RUN_STEPS`` steps, the study's schedule) of their mean step;
    ``shrinking``: train the consolidated model from the freeze on, as :func:`softwidth.fit` does."""
    build, probe, seconds, schedule = _builder(kind)
    steps = 6 if settings.quick else RUN_STEPS
    means = []
    for repeat in range(2 if settings.quick else 5):
        torch.manual_seed(repeat)
        model = build("all")
        sw.profile(model, probe, seconds=seconds)
        controller = sw.BudgetController(model, target=0.5)
        scheduler = WidthScheduler(model, schedule, total_steps=steps, controller=controller)
        optimizer = _optimizer(model)
        step = _step_fn(model, batch, optimizer=optimizer, controller=controller,
                        learning=lambda s=scheduler: s.widths_learning)
        shrunk = None
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            if shrinking and shrunk is None and scheduler.frozen:
                shrunk = shrink(model, optimizer)
                step = _step_fn(shrunk.model, batch, optimizer=shrunk.optimizer)
            step()
            scheduler.step()
            times.append(time.perf_counter() - start)
        means.append(statistics.fmean(times))
    return {"min_s": min(means), "median_s": statistics.median(means), "calls": len(means) * steps}


def _variants(kind: str, batch) -> dict:
    torch.manual_seed(0)
    build, probe, seconds, schedule = _builder(kind)
    static = build(())
    stock = sw.consolidate(build(()).eval())
    noisy = build("all")
    sw.profile(noisy, probe, seconds=seconds)
    controller = sw.BudgetController(noisy, target=0.5)
    for w in width_modules(noisy):  # the study's ramp at the start of width learning: the widest noise window
        w.set_temperature(schedule.temperature(0.0))
    frozen = build("all")
    sw.profile(frozen, probe, seconds=seconds)
    for w in width_modules(frozen):
        w.freeze_()
    return {"static": _step_fn(static, batch), "stock": _step_fn(stock, batch),
            "dynamic noisy": _step_fn(noisy, batch, controller=controller),
            "dynamic frozen": _step_fn(frozen, batch)}


def _noise_numbers(step) -> int:
    """How many Gaussian numbers one call of ``step`` draws in the gates (counted on ``torch.randn_like``)."""
    drawn, real = [0], torch.randn_like

    def counting(x, *args, **kwargs):
        drawn[0] += x.numel()
        return real(x, *args, **kwargs)

    torch.randn_like = counting
    try:
        step()
    finally:
        torch.randn_like = real
    return drawn[0]


def run(settings: Settings) -> dict:
    rows, checks, noise_notes = [], [], []
    for kind in ("crnn", "transformer", "resnet"):
        batch = _batch(kind, settings.quick)
        variants = _variants(kind, batch)
        numbers = _noise_numbers(variants["dynamic noisy"])
        variants["noise draw alone"] = lambda n=numbers: torch.randn(n)
        times = time_calls(variants, settings)
        times["dynamic run (schedule mean)"] = _run_mean(kind, batch, settings)
        times["dynamic run, masked frozen phase"] = _run_mean(kind, batch, settings, shrinking=False)
        base = times["static"]["median_s"]
        excess = times["dynamic noisy"]["median_s"] - base
        noise_notes.append(f"{kind}: {numbers:,} Gaussian numbers per noisy step, "
                           f"{1e3 * times['noise draw alone']['median_s']:.3g} ms of the noisy step's "
                           f"{1e3 * excess:.3g} ms excess over static")
        for name, t in times.items():
            rows.append({"model": kind, "variant": name, "min_ms": 1e3 * t["min_s"], "median_ms": 1e3 * t["median_s"],
                         "vs_static": t["median_s"] / base, "vs_stock": t["median_s"] / times["stock"]["median_s"],
                         "calls": t["calls"]})
        for name in ("dynamic noisy", "dynamic frozen", "dynamic run (schedule mean)"):
            ratio = times[name]["median_s"] / base
            checks.append({"what": f"{kind} {name} / static step time (median)", "value": ratio,
                           "target": f"<= {TARGET}", "pass": ratio <= TARGET})
    return {
        "title": "Training overhead (train step: forward + BCE + backward + Adam)",
        "setup": ("batch 4 x 50 frames (quick)" if settings.quick else
                  f"VAD: batch 32 x 200 frames of power spectra (B, T, 201); countermeasure: batch 32 x {CLIP_FRAMES} "
                  "frames of LFCC (B, T, 60)") + f"; sizes {SIZES}; "
                 "dynamic = every width trainable (bands too); noisy phase: ramp temperature 2 (the studies' start), "
                 "BudgetController target 0.5",
        "columns": [["model", "model"], ["variant", "variant"], ["min_ms", "min (ms)"],
                    ["median_ms", "median (ms)"], ["vs_static", "median / static"],
                    ["vs_stock", "median / stock"], ["calls", "timed calls"]],
        "rows": rows, "checks": checks,
        "notes": [("static = build_model(kind) with fixed widths (softwidth wrappers, no gates); stock = its "
                   "consolidation into plain torch modules (for information; the target compares with static)."),
                  (f"The whole run (budget 0.5, widths frozen at {VAD_SCHEDULE.freeze:.0%} of its steps for the VAD "
                   f"models and {AS_SCHEDULE.freeze:.0%} for the countermeasure, as in their studies) trains the "
                   "consolidated model after the freeze, as fit does by default; the masked row is "
                   "FitConfig(shrink=False), for information."),
                  ("noise draw alone = torch.randn of as many numbers as one noisy step's gates draw (one per "
                   "element of every gated tensor within the noise ramp, i.i.d. as the method needs); static + "
                   "this is a floor the noisy step cannot go below with torch's CPU generator; "
                   + "; ".join(noise_notes) + ".")],
    }
