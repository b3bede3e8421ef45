"""The anti-spoofing data, scoring, study runner and CLI on a tiny hand-written corpus (seconds, not minutes)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import soundfile as sf

from softwidth_studies.antispoof.cli import load_countermeasure
from softwidth_studies.antispoof.data import ClipBatches, load_split
from softwidth_studies.antispoof.evaluate import breakdown
from softwidth_studies.antispoof.study import (
    TRAINING_FIELDS,
    AntispoofStudyConfig,
    _key,
    config_from_results,
    plan,
    plan_phase2,
    run_study,
)
from softwidth_studies.cli import main
from softwidth.errors import SoftWidthError
from softwidth_studies.experiments.runs import run_key

SR, SECONDS = 16000, 1.0
SYSTEMS = {"train": [("a", False), ("b", False)], "val": [("a", False), ("b", False)],
           "test": [("a", False), ("b", False), ("c", True)]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 bona fide + 4 clips per spoof system per split; spoofs have a tone, bona fide speech-like noise."""
    root = tmp_path_factory.mktemp("as_tiny")
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(int(SR * SECONDS)) / SR
    for split, systems in SYSTEMS.items():
        (root / split).mkdir()
        clips = [("bonafide", False)] * 8 + [s for s in systems for _ in range(4)]
        for i, (system, unseen) in enumerate(clips):
            audio = 0.05 * rng.standard_normal(t.size)
            if system != "bonafide":
                audio += 0.1 * np.sin(2 * np.pi * {"a": 300, "b": 1200, "c": 2500}[system] * t)
            cid = f"{split}_{i:03d}"
            sf.write(root / split / f"{cid}.wav", audio.astype(np.float32), SR, subtype="PCM_16")
            rows.append({"id": cid, "path": f"{split}/{cid}.wav", "split": split,
                         "label": "bonafide" if system == "bonafide" else "spoof", "system": system,
                         "unseen": str(unseen)})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_load_split_shapes_labels_and_cache(corpus):
    split = load_split(corpus, "test")
    assert split.features.shape == (20, 51, 60) and split.features.dtype == np.float16
    assert split.labels.tolist() == [1] * 8 + [0] * 12
    assert split.systems == ["a", "b", "c"]
    cached = sorted((corpus / "features").glob("lfcc-*-test.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(load_split(corpus, "test").features, split.features)
    with pytest.raises(SoftWidthError, match="no clips in split"):
        load_split(corpus, "dev")


def test_clip_batches_are_seeded_and_cover_the_split(corpus):
    split = load_split(corpus, "train")
    first = [y.tolist() for _, y in ClipBatches(split, batch_size=4, seed=3)]
    again = [y.tolist() for _, y in ClipBatches(split, batch_size=4, seed=3)]
    assert first == again and len(first) == 4
    assert sum(sum(y) for y in first) == 8  # every bona fide clip once per epoch
    with pytest.raises(SoftWidthError, match="fewer than batch_size"):
        ClipBatches(split, batch_size=64)


def test_breakdown_separates_attacks_and_unseen(corpus):
    split = load_split(corpus, "test")
    systems = [r["system"] for r in split.rows]
    # bona fide 0.9; "a" spoofs perfectly rejected, "b" mixed, unseen "c" scored as bona fide
    scores = np.array([{"bonafide": 0.9, "a": 0.1, "b": 0.5, "c": 0.95}[s] for s in systems])
    scores[[i for i, s in enumerate(systems) if s == "b"][:2]] = 0.99
    result = breakdown(scores, split)
    assert result["attacks"]["a"] == 0.0
    assert result["attacks"]["b"] == pytest.approx(0.5)
    assert result["attacks"]["c"] == pytest.approx(1.0)
    assert result["seen"] < result["pooled"] < result["unseen"]


def test_plan_lists_baselines_budgets_and_stage_runs():
    tasks = plan(AntispoofStudyConfig(corpus="x", seeds=(0, 1)))
    kinds = [(t["model"], t["kind"], t.get("stage")) for t in tasks]
    assert kinds.count(("resnet", "baseline", None)) == 2 and kinds.count(("lcnn", "dynamic", None)) == 2
    assert [t["stage"] for t in tasks if t["kind"] == "stage"] == ["B0", "B1", "B2", "B3"]
    assert [t for t in tasks if t.get("absolute")] == [{"model": "resnet", "kind": "dynamic", "seed": 0,
                                                        "target": 3e6, "absolute": True}]


def test_phase2_pairs_each_relative_dynamic_run_with_fixed_and_pruned_runs():
    config = AntispoofStudyConfig(corpus="x", seeds=(0, 1))
    sizes = {"B0": 8, "B1": 9, "B2": 10, "B3": 11}
    first = [(t, {"model": t["model"], "sizes": dict(sizes) if t["kind"] == "dynamic" else {"B0": 16}})
             for t in plan(config)]
    tasks = plan_phase2(first)
    relative = [t for t, _ in first if t["kind"] == "dynamic" and not t.get("absolute")]
    assert [t["kind"] for t in tasks] == ["fixed", "prune"] * len(relative)
    for (fixed, pruned), dynamic in zip(zip(tasks[::2], tasks[1::2]), relative):
        assert fixed["sizes"] == pruned["sizes"] == sizes and pruned["target"] == dynamic["target"]
        assert pruned["base_task"] == {"model": dynamic["model"], "kind": "baseline", "seed": dynamic["seed"]}
        assert pruned["base_record"] == {"model": dynamic["model"], "sizes": {"B0": 16}}
    # finetune_steps changes the key of pruned runs only (stored runs of the other kinds stay valid)
    other = replace(config, finetune_steps=7)
    assert _key(tasks[1], config) != _key(tasks[1], other) and _key(tasks[0], config) == _key(tasks[0], other)


def test_lr_decay_keys_runs_and_old_results_read_as_constant_rate():
    config = AntispoofStudyConfig(corpus="x")
    constant = replace(config, lr_decay="constant")
    task = plan(config)[0]
    # a constant-rate run keeps the key it had before the field existed; a cosine run gets its own
    assert _key(task, constant) == run_key(task, {name: asdict(constant)[name] for name in TRAINING_FIELDS})
    assert _key(task, config) != _key(task, constant)
    raw = json.loads(json.dumps(asdict(config)))
    assert config_from_results({"config": raw}) == config
    del raw["lr_decay"]  # results.json written before the field
    assert config_from_results({"config": raw}).lr_decay == "constant"


def test_study_runs_reports_resumes_and_scores(corpus, tmp_path, capsys):
    config = replace(AntispoofStudyConfig.quick(str(corpus)), steps={"resnet": 3, "lcnn": 3}, batch_size=8,
                     targets=(0.5,), workers=1, finetune_steps=2)
    out = tmp_path / "study"
    results = run_study(config, out, progress=False)
    assert len(results["runs"]) == len(plan(config)) + 4  # + one fixed and one pruned run per dynamic run
    for model in ("resnet", "lcnn"):
        (dynamic,) = [r for r in results["runs"] if r["model"] == model and r["kind"] == "dynamic"
                      and not r.get("absolute")]
        for variant in ("fixed", "prune"):
            (r,) = [r for r in results["runs"] if r["model"] == model and r["kind"] == variant
                    and r.get("of") != "uniform"]
            assert r["sizes"] == dynamic["sizes"] and r["flops_per_s"] == dynamic["flops_per_s"]
            assert r["target"] == 0.5 and "base_task" not in r and "base_record" not in r
    for run in results["runs"]:
        test = run["metrics"]["test"]
        assert 0 <= test["pooled"] <= 1 and test["unseen"] is not None and set(test["attacks"]) == {"a", "b", "c"}
        assert run["flops_per_s"] <= results["full_cost"][run["model"]]["flops_per_s"] + 1e-6
    for run in results["runs"]:
        if run["kind"] == "dynamic":
            assert run["flops_per_s"] <= 0.5 * results["full_cost"][run["model"]]["flops_per_s"] * 1.0001
    summary = json.loads((out / "summary.json").read_text())
    assert any("within 3 %" in name for name in summary["checks"])
    assert any("per stage" in name for name in summary["checks"])
    assert "resnet dynamic 0.5: EER <= fixed and prune at the same sizes" in summary["checks"]
    assert {t["run"] for t in summary["table"] if t["model"] == "lcnn"} >= {"prune 0.5", "fixed 0.5"}
    assert (out / "eer_vs_cost.png").stat().st_size > 0 and "| resnet | stage B0 |" in (out / "summary.md").read_text()
    assert "| lcnn | prune 0.5 |" in (out / "summary.md").read_text()
    assert set(summary["paired"]["resnet"]["dynamic 0.5"]) == {"full", "fixed", "prune", "uniform"}
    for model in ("resnet", "lcnn"):  # the uniform shrink to the same budget: a standing baseline, paired by seed
        (uniform,) = [r for r in results["runs"] if r["model"] == model and r.get("of") == "uniform"]
        assert uniform["flops_per_s"] <= 0.5 * results["full_cost"][model]["flops_per_s"]
        versus = summary["baselines"][model]
        pair = summary["paired"][model]["dynamic 0.5"]["uniform"]
        assert versus["vs_uniform_pooled"]["mean"] == pytest.approx(pair["mean"])
        assert versus["vs_torch_pruning_pooled"] is None
    assert "minus uniform shrink (same budget)" in (out / "summary.md").read_text()
    assert "| resnet | dynamic 0.5 | " in (out / "summary.md").read_text().split("## Paired by seed")[1]
    head = (out / "headline.md").read_text()
    assert results["date"] in head and "- resnet: full model" in head and "- lcnn: full model" in head
    dynamic = next(t for t in summary["table"] if t["model"] == "resnet" and t["run"] == "dynamic 0.5")
    assert f"{dynamic['eer']['mean']:.2f}" in head.split("- resnet")[1] and "same sizes fixed" in head
    budgets = [c for n, c in summary["checks"].items() if n.endswith("of its budget")]
    assert f"{sum(c['passed'] for c in budgets)} of {len(budgets)} dynamic runs within 3 %" in head
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")}
    run_study(config, out, progress=False)  # resumes: nothing retrained
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")} == stamps

    from softwidth_studies.antispoof.cli import _store_model

    _store_model(results, out, install=False)
    model, features, meta = load_countermeasure(out / "model")
    assert meta["model"] == "resnet" and features.dim == 60
    capsys.readouterr()
    main(["antispoof", "score", str(corpus / "test" / "test_000.wav"), "--model", str(out / "model"), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 1 and 0.0 <= printed[0]["bonafide"] <= 1.0
    main(["antispoof", "evaluate", "--out", str(out)])
    assert "within 3 %" in capsys.readouterr().out


def test_score_and_evaluate_errors_name_the_fix(tmp_path, capsys):
    with pytest.raises(SoftWidthError, match="softwidth antispoof train"):
        load_countermeasure(tmp_path)
    assert main(["antispoof", "evaluate", "--out", str(tmp_path)]) == 2
    assert "results.json missing" in capsys.readouterr().err
    assert main(["antispoof", "score", str(tmp_path / "x.wav"), "--model", str(tmp_path)]) == 2
    assert "model.json is missing" in capsys.readouterr().err


def test_validation_eer_trains_one_run_and_never_reads_the_test_split(corpus, monkeypatch):
    import softwidth_studies.antispoof.study as study

    read = []
    monkeypatch.setattr(study, "load_split", lambda c, s, **kw: read.append(s) or load_split(c, s, **kw))
    config = replace(AntispoofStudyConfig.quick(str(corpus)), steps={"resnet": 3, "lcnn": 3}, batch_size=8)
    sizes, value = study.validation_eer({"model": "lcnn", "kind": "dynamic", "seed": 0, "target": 0.5}, config)
    assert sorted(read) == ["train", "val"]
    assert set(sizes) == {"B0", "B1", "B2", "B3"} and 0.0 <= value <= 100.0
