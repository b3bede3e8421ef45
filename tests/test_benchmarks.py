"""The benchmark suite runs end to end (``python -m benchmarks --quick``) and writes the promised JSON and table.

The corpus-needing part of ``vad_rtf`` is skipped by pointing ``--corpus`` at an empty folder: the test must not
need the built VAD corpus. Numbers of a quick run are not checked (tiny sizes on a shared machine), only that
every ratio is finite and positive, every target has a verdict and the table states it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("overhead", "speedup", "fidelity", "search", "vad_rtf")
VAD_MODELS = json.loads((ROOT / "results" / "vad" / "results.json").read_text())["config"]["models"]
"""The models of the committed VAD study, whose sizes and run times speedup and search read."""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    docs = out / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--docs", str(docs),
                           "--corpus", str(out / "no-corpus")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, docs, done.stdout


def _load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_every_benchmark_writes_json_with_the_common_schema(quick_run):
    out, _, stdout = quick_run
    for name in NAMES:
        r = _load(out, name)
        assert r["schema"] == 1 and r["name"] == name
        env = r["environment"]
        assert env["threads"] == 1 and env["quick"] is True and env["torch"] and env["date"] and env["machine"]
        assert isinstance(r["title"], str) and isinstance(r["setup"], str) and isinstance(r["notes"], list)
        keys = [k for k, _ in r["columns"]]
        assert r["rows"] and all(set(keys) <= set(row) for row in r["rows"]), name
        for check in r["checks"]:
            assert set(check) == {"what", "value", "target", "pass"} and isinstance(check["pass"], bool)
        assert f"{name}:" in stdout


def test_overhead_times_every_variant_and_judges_both_phases(quick_run):
    r = _load(quick_run[0], "overhead")
    variants = {(row["model"], row["variant"]) for row in r["rows"]}
    assert variants == {(m, v) for m in ("crnn", "transformer", "resnet")
                        for v in ("static", "stock", "dynamic noisy", "dynamic frozen", "dynamic run (schedule mean)",
                                  "dynamic run, masked frozen phase", "noise draw alone")}
    for row in r["rows"]:
        assert 0 < row["min_ms"] <= row["median_ms"] and math.isfinite(row["vs_static"])
        if row["variant"] == "static":
            assert row["vs_static"] == 1.0
    assert len(r["checks"]) == 9  # the masked run is for information
    for c in r["checks"]:
        assert c["pass"] == (c["value"] <= 1.15)


def test_noise_count_is_the_noisy_gates_draws_and_none_once_frozen():
    from benchmarks import overhead

    batch = overhead._batch("crnn", quick=True)
    variants = overhead._variants("crnn", batch)
    drawn = overhead._noise_numbers(variants["dynamic noisy"])
    assert 0 < drawn <= 20 * batch[0].numel() * 48  # some gated elements, at most every one of them
    assert overhead._noise_numbers(variants["dynamic frozen"]) == 0
    assert overhead._noise_numbers(variants["static"]) == 0
    assert torch.randn_like is overhead.torch.randn_like and torch.randn_like.__module__ != "benchmarks.overhead"


def test_speedup_compares_with_the_flops_ratio_of_the_study_sizes(quick_run):
    r = _load(quick_run[0], "speedup")
    settings = {(row["model"], row["setting"]) for row in r["rows"]}
    assert ("crnn", "stream 10 ms pushes") in settings and ("crnn", "stream 1 s pushes") in settings
    if "transformer" in VAD_MODELS:
        assert ("transformer", "batch 1 x 1 s") in settings
    else:  # a study of the CRNN alone: the Transformer is named as not timed, not silently dropped
        assert not any(m == "transformer" for m, _ in settings)
        assert any("not timed: transformer" in note for note in r["notes"])
    assert ("resnet", "batch 1 x 4 s") in settings and ("resnet", "batch 4 x 4 s") in settings
    runtimes = {(row["model"], row["setting"], row["runtime"]) for row in r["rows"]}
    # a quick run exports the CRNN only (the test extras have onnxruntime); streaming is StreamingVAD's NumPy step
    assert {runtime for _, _, runtime in runtimes} == {"torch", "numpy", "onnxruntime"}
    assert {(m, s) for m, s, runtime in runtimes if runtime == "onnxruntime"} == {("crnn", "batch 4 x 1 s")}
    assert {s for _, s, runtime in runtimes if runtime == "numpy"} == {"stream 10 ms pushes", "stream 1 s pushes"}
    for row, check in zip(r["rows"], r["checks"]):
        assert row["setting"] in check["what"] and (row["runtime"] == "onnxruntime") == ("onnxruntime" in check["what"])
        assert row["flops_ratio"] > 1.5  # budget 0.5 of the full model's FLOP/s
        assert row["fraction"] == pytest.approx(row["speedup"] / row["flops_ratio"])
        assert check["pass"] == (row["speedup"] >= 0.6 * row["flops_ratio"])


def test_fidelity_counts_are_exact_and_correlations_reported(quick_run):
    r = _load(quick_run[0], "fidelity")
    families = {row["family"] for row in r["rows"]}
    assert families == {"synthetic student", "crnn vad", "transformer vad", "frame classifier"}
    for row in r["rows"]:
        assert row["params"] == row["numel"] and row["macs_x2"] == row["flop_counter"]
        assert row["mp_flops"] == row["mp_covered_flops"] and 0 < row["coverage"] <= 1
    assert all(c["pass"] for c in r["checks"])  # the cost model is exact: a miss here is a bug
    corr = r["correlation"]["all"]
    assert corr["n"] == len(r["rows"]) and -1 <= corr["pearson"] <= 1 and -1 <= corr["spearman"] <= 1


def test_search_reads_both_studies_and_labels_estimates(quick_run):
    r = _load(quick_run[0], "search")
    studies = {row["study"] for row in r["rows"]}
    assert {"synthetic"} | {f"vad {m}" for m in VAD_MODELS} <= studies
    estimates = [row for row in r["rows"] if row["kind"] == "estimate"]
    assert estimates and all(row["what"].startswith("ESTIMATE") for row in estimates)
    for row in r["rows"]:
        assert row["ratio"] == pytest.approx(row["dynamic"] / row["fixed"])


def test_vad_rtf_without_corpus_presents_the_study_and_says_it_skipped(quick_run):
    r = _load(quick_run[0], "vad_rtf")
    assert "no built VAD corpus" in r["skipped"]
    assert {row["part"] for row in r["rows"]} == {"study"}
    assert any(row["model"] == "silero" for row in r["rows"])


def test_markdown_has_a_section_per_benchmark_and_states_verdicts(quick_run):
    out, docs, _ = quick_run
    text = docs.read_text()
    for name in NAMES:
        assert f"## {name}:" in text
    verdicts = sum(len(_load(out, n)["checks"]) for n in NAMES)
    assert text.count("| PASS |") + text.count("| **MISS** |") == verdicts
    assert "QUICK smoke run" in text and "no built VAD corpus" in text


def test_only_runs_the_named_benchmark(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "search", "--out",
                           str(tmp_path), "--docs", str(tmp_path / "b.md")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["search.json"]
    assert "Not run yet: `python -m benchmarks --only overhead`" in (tmp_path / "b.md").read_text()


def test_headline_gives_every_benchmark_its_machine_and_counts_each_kind_of_check(quick_run):
    out, _, _ = quick_run
    text = (out / "headline.md").read_text()
    lines = text.splitlines()
    assert [line.split("**")[1] for line in lines] == list(NAMES)
    for name, line in zip(NAMES, lines):
        env = _load(out, name)["environment"]
        assert env["date"] in line and env["machine"] in line and "QUICK smoke run" in line
    overhead = _load(out, "overhead")["checks"]
    met = sum(c["pass"] for c in overhead if c["what"].split(" ", 1)[1].startswith("dynamic noisy"))
    assert "dynamic noisy / static step time (median): " in lines[0]
    assert f"(target <= 1.15: {met} of 3 met)" in lines[0].split("dynamic frozen")[0]
    speedup = _load(out, "speedup")["checks"]
    streams = [c for c in speedup if "stream 10 ms pushes" in c["what"]]
    assert "stream 10 ms pushes: speed-up / FLOP/s ratio" in lines[1]
    assert f"{sum(c['pass'] for c in streams)} of {len(streams)} met" in lines[1].split("stream 10 ms pushes")[1]
