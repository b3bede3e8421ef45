"""Tests of softwidth_studies.vad.study and report: a micro study on the hand-made corpus (no network, no peers)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from softwidth.errors import SoftWidthError
from softwidth_studies.vad.store import load_vad
from softwidth_studies.experiments.runs import plan_phase2, run_key
from softwidth_studies.vad.models import MODELS
from softwidth_studies.vad.study import (MEL_PRICE, TP_IMPORTANCES, TRAINING_FIELDS, VadStudyConfig, _key, config_from_results,
                                        model_cost, plan, plan_torch_pruning, run_study,
                                        torch_pruning_available)

SIZES = {"crnn": {"conv1": 8, "conv2": 8, "hidden": 8, "bands": 24},
         "transformer": {"bands": 16, "ff1": 16, "ff2": 16}}


def micro(corpus, **kwargs) -> VadStudyConfig:
    absolute = 0.4 * model_cost("crnn", SIZES["crnn"])["flops_per_s"]
    options = {"corpus": str(corpus), "sizes": SIZES, "seeds": (0,), "targets": (0.5,), "band_targets": {"crnn": (0.8,)},
                   "absolute_targets": {"crnn": absolute}, "steps": {"crnn": 4, "transformer": 3}, "epochs": 2,
                   "batch_size": 4, "crop_frames": 100, "finetune_steps": 2, "workers": 1}
    options.update(kwargs)
    return VadStudyConfig(**options)


def test_plan_lists_baselines_dynamic_band_and_budget_runs():
    config = VadStudyConfig(corpus="x", seeds=(0, 1))
    tasks = plan(config)
    kinds = [(t["model"], t["kind"]) for t in tasks if not t.get("steps_share") and t.get("of") != "uniform"]
    assert kinds.count(("crnn", "baseline")) == 2 and kinds.count(("crnn", "dynamic")) == 2 * 3 + 1
    assert kinds.count(("transformer", "dynamic")) == 2 * 3  # no absolute budget below its attention's cost
    assert kinds.count(("crnn", "bands")) == 2 * len(config.band_targets["crnn"])  # every seed
    bands = [(t, {"sizes": {"bands": 40, "conv1": 48}}) for t in tasks if t["kind"] == "bands"]
    second = plan_phase2(bands)  # no baselines here: fixed-size runs only, marked with the run they come from
    assert [t["kind"] for t in second] == ["fixed"] * len(bands) and all(t["of"] == "bands" for t in second)
    assert all(t["sizes"]["bands"] == 40 for t in second)


def test_plan_holds_the_uniform_shrink_of_every_budget_and_seed_on_the_budget():
    config = VadStudyConfig(corpus="x", seeds=(0, 1))
    uniform = [t for t in plan(config) if t.get("of") == "uniform"]
    assert len(uniform) == len(config.models) * len(config.targets) * 2 and {t["kind"] for t in uniform} == {"fixed"}
    for kind in config.models:
        full = model_cost(kind, {**MODELS[kind].defaults, **config.sizes[kind]})["flops_per_s"]
        for target in config.targets:
            runs = [t for t in uniform if t["model"] == kind and t["target"] == target]
            assert [t["seed"] for t in runs] == [0, 1] and runs[0]["sizes"] == runs[1]["sizes"]
            sizes = runs[0]["sizes"]
            cost = model_cost(kind, sizes)["flops_per_s"]
            assert cost <= target * full
            # the largest common shrink: one more step on every width is over the budget
            step = {"bands": 4} if kind == "transformer" else {}
            bigger = {n: min(v + step.get(n, 1), config.sizes[kind].get(n, MODELS[kind].defaults[n]))
                      for n, v in sizes.items()}
            assert model_cost(kind, bigger)["flops_per_s"] > target * full


def test_torch_pruning_tasks_start_from_the_half_trained_baseline_of_their_seed():
    records = [({"model": "crnn", "kind": "baseline", "seed": s, "steps_share": 0.5}, {"model": "crnn", "sizes": {"a": s}})
               for s in (0, 1)]
    records += [({"model": "crnn", "kind": "baseline", "seed": 0}, {"model": "crnn", "sizes": {}}),
                ({"model": "crnn", "kind": "dynamic", "seed": 1, "target": 0.25}, {}),
                ({"model": "crnn", "kind": "dynamic", "seed": 0, "target": 1e6, "absolute": True}, {})]
    tasks = plan_torch_pruning(records)
    assert [t["importance"] for t in tasks] == list(TP_IMPORTANCES)
    assert all(t["seed"] == 1 and t["target"] == 0.25 and t["base_task"]["steps_share"] == 0.5
               and t["base_record"]["sizes"] == {"a": 1} for t in tasks)


def test_lr_decay_keys_runs_and_old_results_read_as_constant_rate():
    config = VadStudyConfig(corpus="x")
    constant = replace(config, lr_decay="constant")
    task = plan(config)[0]
    # a constant-rate run's key is the one it had before the field existed (at today's mel price); a cosine run
    # gets its own
    stored = {**{name: asdict(constant)[name] for name in TRAINING_FIELDS}, "mel_price": MEL_PRICE}
    assert _key(task, constant) == run_key(task, stored)
    assert _key(task, config) != _key(task, constant)
    raw = json.loads(json.dumps(asdict(config)))
    assert config_from_results({"config": raw}) == config
    del raw["lr_decay"]  # results.json written before the field
    assert config_from_results({"config": raw}).lr_decay == "constant"


def test_mel_shape_grad_keys_only_width_learning_runs_and_old_results_read_as_on():
    config = VadStudyConfig(corpus="x")
    assert config.mel_shape_grad is False
    on = replace(config, mel_shape_grad=True)
    by_kind = {t["kind"]: t for t in plan(config)}
    assert _key(by_kind["baseline"], config) == _key(by_kind["baseline"], on)  # stored baselines stay valid
    assert _key(by_kind["dynamic"], config) != _key(by_kind["dynamic"], on)
    assert _key(by_kind["bands"], config) != _key(by_kind["bands"], on)
    raw = json.loads(json.dumps(asdict(config)))
    del raw["mel_shape_grad"]  # results.json written before the field
    assert config_from_results({"config": raw}).mel_shape_grad is True


def test_restart_keys_only_width_learning_runs_and_old_results_read_as_off():
    config = VadStudyConfig(corpus="x")
    assert config.restart is True
    off = replace(config, restart=False)
    by_kind = {t["kind"]: t for t in plan(config)}
    assert _key(by_kind["baseline"], config) == _key(by_kind["baseline"], off)
    assert _key(by_kind["dynamic"], config) != _key(by_kind["dynamic"], off)
    assert _key(by_kind["bands"], config) != _key(by_kind["bands"], off)
    raw = json.loads(json.dumps(asdict(config)))
    del raw["restart"], raw["width_optimizer"]  # results.json written before the fields
    old = config_from_results({"config": raw})
    assert (old.restart, old.width_optimizer) == (False, "adam")


def test_every_run_is_keyed_by_the_mel_price():
    config = VadStudyConfig(corpus="x")
    for task in plan(config):
        settings = {name: asdict(config)[name] for name in TRAINING_FIELDS}
        assert _key(task, config) != run_key(task, settings)  # the key of the same run at the dense price


def test_micro_study_writes_results_tables_plots_and_resumes(tmp_path, corpus):
    out = tmp_path / "study"
    results = run_study(micro(corpus), out, progress=False, peers=False)
    runs = results["runs"]
    by_kind = {}
    for r in runs:
        by_kind.setdefault((r["model"], r["kind"] + (f" ({r['of']})" if "of" in r else "")), []).append(r)
    tp = {("crnn", "torch_pruning"), ("transformer", "torch_pruning")} if torch_pruning_available() else set()
    assert {k for k in by_kind} == {(m, k) for m in ("crnn", "transformer") for k in ("baseline", "dynamic", "fixed",
                                                                                      "prune", "fixed (uniform)")} | {
        ("crnn", "bands"), ("crnn", "fixed (bands)"), ("crnn", "prune (bands)")} | tp
    (bands,) = by_kind[("crnn", "bands")]
    at_band_sizes = by_kind[("crnn", "fixed (bands)")] + by_kind[("crnn", "prune (bands)")]
    assert all(r["sizes"] == bands["sizes"] for r in at_band_sizes)
    dynamic = {r["model"]: r for r in runs if r["kind"] == "dynamic" and not r.get("absolute")}
    for kind in ("crnn", "transformer"):
        for variant in ("fixed", "prune"):
            (r,) = by_kind[(kind, variant)]
            assert r["sizes"] == dynamic[kind]["sizes"]
            assert r["flops_per_s"] == dynamic[kind]["flops_per_s"]
        full = model_cost(kind, SIZES[kind])["flops_per_s"]
        assert dynamic[kind]["flops_per_s"] <= 0.5 * full  # the budget controller's integer enforcement
    (absolute,) = [r for r in runs if r.get("absolute")]
    assert 0.97 <= absolute["flops_per_s"] / absolute["target"] <= 1.0
    for r in runs:
        m = r["metrics"]
        assert 0 <= m["pooled"]["eer"] <= 1 and 0 <= m["pooled"]["auroc"] <= 1 and "threshold" in m
        assert set(m["snr"]) == {"<5", "5-15", "15-25", ">=25", "clean"}
    for name in ("results.json", "summary.json", "summary.md", "eer_vs_mflops.png", "eer_per_snr.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["checks"]["crnn"]) >= {"met", "beats_fixed", "absolute_within_3pct"}
    assert summary["checks"]["crnn"]["absolute_within_3pct"] == [True]
    assert set(summary["checks"]["crnn"]["beats_fixed"]) == {"dynamic 0.5", "bands 0.8"}
    for label, pair in summary["checks"]["crnn"]["vs_fixed"].items():  # paired by seed with the from-scratch run
        (scratch,) = by_kind[("crnn", "fixed" if label.startswith("dynamic") else "fixed (bands)")]
        (learned,) = by_kind[("crnn", label.split()[0])] if label.startswith("bands") else [dynamic["crnn"]]
        assert pair["mean"] == pytest.approx(100 * (learned["metrics"]["pooled"]["eer"]
                                                    - scratch["metrics"]["pooled"]["eer"]))
    assert set(summary["checks"]["crnn"]["vs_fixed"]) == {"dynamic 0.5", "bands 0.8"}
    assert "paired by seed" in (out / "summary.md").read_text()
    assert {row["variant"] for row in summary["models"]["crnn"]["rows"]} == {
        "dynamic", "fixed", "prune", "fixed (uniform)", "bands", "fixed (bands)", "prune (bands)"} | (
        {"torch_pruning (taylor)", "torch_pruning (group_norm)"} if tp else set())
    (uniform,) = by_kind[("crnn", "fixed (uniform)")]  # the standing baseline, paired by seed with the dynamic run
    vs = summary["checks"]["crnn"]
    assert vs["vs_uniform"]["0.5"]["mean"] == pytest.approx(100 * (dynamic["crnn"]["metrics"]["pooled"]["eer"]
                                                                   - uniform["metrics"]["pooled"]["eer"]))
    assert vs["vs_uniform_pooled"]["mean"] == pytest.approx(vs["vs_uniform"]["0.5"]["mean"])
    assert "vs_torch_pruning_pooled" in vs and "uniform shrink" in (out / "summary.md").read_text()
    assert vs["vs_uniform_val"]["0.5"]["mean"] == pytest.approx(100 * (dynamic["crnn"]["metrics"]["val"]["eer"]
                                                                       - uniform["metrics"]["val"]["eer"]))
    # every ranked run is kept as safetensors + JSON beside the report, and loads back as it scored
    saved = sorted((out / "models").iterdir())
    assert len(saved) == len(runs) and all((d / "model.safetensors").exists() for d in saved)
    (kept,) = [d for d in saved if json.loads((d / "model.json").read_text())["task"].get("of") == "uniform"
               and json.loads((d / "model.json").read_text())["model"] == "crnn"]
    model, meta = load_vad(kept)
    assert meta["sizes"] == uniform["sizes"] and meta["test_eer"] == pytest.approx(100 * uniform["metrics"]["pooled"]["eer"])
    assert sum(p.numel() for p in model.parameters()) == uniform["params"]
    assert results["rtf"]["ours"] and all(r["batch_rtf"] > 0 for r in results["rtf"]["ours"])
    # resuming reuses every stored run (same records, no retraining)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    again = run_study(micro(corpus), out, progress=False, peers=False)
    assert again["runs"] == runs
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    # without the run store (a fresh checkout keeps only the report and its ranked models) nothing is retrained
    import shutil

    shutil.rmtree(out / "runs")
    fresh = run_study(micro(corpus), out, progress=False, peers=False)
    assert fresh["runs"] == runs and not any((out / "runs").iterdir())


def test_default_model_of_a_study_saves_and_reloads_without_pickle(tmp_path, corpus):
    from softwidth_studies.vad.cli import _store_default

    out = tmp_path / "study"
    results = run_study(micro(corpus, models=("crnn",), band_targets={}), out, progress=False, peers=False)
    _store_default(results, out, install=False)
    model, meta = load_vad(out / "default_model")
    assert meta["model"] == "crnn" and meta["sizes"]["bands"] == model.mel.bank.shape[1]
    assert 0 < meta["threshold"] < 1 and meta["flops_per_s"] <= 0.4 * model_cost("crnn", SIZES["crnn"])[
        "flops_per_s"]
    assert meta["corpus"]["corpus"] == "vad" and str(tmp_path) not in json.dumps(meta)  # no machine path


def test_study_without_a_corpus_or_with_unknown_models_raises(tmp_path):
    with pytest.raises(SoftWidthError, match="build a corpus"):
        run_study(VadStudyConfig(), tmp_path)
    with pytest.raises(SoftWidthError, match="unknown VAD models"):
        run_study(VadStudyConfig(corpus="x", models=("rnn",)), tmp_path)


def test_validation_eer_trains_one_run_and_never_reads_the_test_split(corpus, monkeypatch):
    import softwidth_studies.vad.study as study
    from softwidth_studies.vad.data import load_split

    read = []
    monkeypatch.setattr(study, "load_split", lambda c, s, **kw: read.append(s) or load_split(c, s, **kw))
    sizes, value = study.validation_eer({"model": "crnn", "kind": "dynamic", "seed": 0, "target": 0.5}, micro(corpus))
    assert sorted(read) == ["train", "val"]
    assert set(sizes) == {"conv1", "conv2", "hidden", "bands"} and 0.0 <= value <= 100.0


def test_a_budget_no_run_can_meet_is_refused_before_any_training(tmp_path, corpus, monkeypatch):
    import softwidth_studies.vad.study as study

    monkeypatch.setattr(study, "run_all", lambda *a, **k: pytest.fail("trained before checking the budgets"))
    config = micro(corpus, band_targets={"crnn": (0.1,)})  # band count alone cannot cut the convs' and GRU's cost
    with pytest.raises(SoftWidthError, match="crnn bands run at target 0.1: BudgetController"):
        run_study(config, tmp_path / "out", progress=False, peers=False)
