"""Every shell command of the docs runs, in a temporary folder, and makes what the docs say it makes.

The commands are the lines of the ```bash blocks of README.md and docs/*.md (``doc_blocks.bash_commands``), so
a command added to the docs is run here without a change to this file, or fails here until :data:`RUNS` says
how to run it. Each row of :data:`RUNS` (the table at the end of the file) names the commands it runs and how:
as written, or, for commands that take minutes to hours, fetch Debian packages or start Ray, the same argv with
a scale-down it states (a fixture corpus, a study config of a few steps). The scale-downs are monkeypatches
made while the command runs (forked workers inherit them), and they replace only what would fetch, start Ray or
train for long. ``apt-get`` (the only way softwidth reaches the network) and sockets to other hosts raise while
a command runs.

Each command runs once per module (fixture ``executed``); a command that needs another's output
(``--report-only`` after a study, ``data check`` after ``data build``) asks for that run and uses its files.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch._dynamo  # noqa: F401 - a process's first optimizer imports it (~4 s): the studies' workers fork from here
from doc_blocks import ROOT, bash_commands, saved_script

from softwidth_studies.cli import build_parser, main

TESTS = ROOT / "tests"
VENV_BIN = Path(sys.executable).parent


def _unique(commands: list[str]) -> list[str]:
    """Each command once, as first documented (the same argv with another comment is the same command)."""
    first: dict[str, str] = {}
    for command in commands:
        first.setdefault(shlex.join(shlex.split(command, comments=True)), command)
    return list(first.values())


COMMANDS = _unique(bash_commands())


def _test_module(path: str):
    """A module of this test suite by its path under tests/ (the folders are not packages), for its fixture
    builders."""
    spec = importlib.util.spec_from_file_location(f"doc_commands_{Path(path).stem}", TESTS / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VAD_FIXTURES = _test_module("vad/conftest.py")  # make_corpus: tone bursts over noise, labelled per 10 ms
VAD_SOURCES = _test_module("data/test_vad_corpus.py")  # VCTK / ESC-50 stand-ins, speech-like audio
AS_SOURCES = _test_module("data/test_antispoof_corpus.py")  # fixture speakers and stand-in TTS systems

# The scale-downs. Study configs are replaced field by field (dataclasses.replace) where the CLI hands them to
# the study, so the command's own choices (corpus, workers, output folder, resume) stay as the argv says.
SYNTHETIC = {"train_size": 256, "test_size": 128, "batch_size": 64, "epochs": 2, "weights": (1.0,),
             "moderate_weight": 1.0, "targets": (0.5,), "seeds": (0,), "sweep_bottleneck": (8,),
             "sweep_hidden": (16,), "prune_finetune_epochs": 1}  # every field quick() sets: quick == full here
SWEEP_POINT = {"train_size": 128, "test_size": 64, "batch_size": 64, "epochs": 1}
VAD_STUDY = {"models": ("crnn",), "sizes": {"crnn": {"conv1": 8, "conv2": 8, "hidden": 8, "bands": 24}},
             "seeds": (0,), "targets": (0.5,), "band_targets": {}, "absolute_targets": {}, "steps": {"crnn": 2},
             "epochs": 1, "batch_size": 4, "crop_frames": 100, "finetune_steps": 1}
VAD_CORPUS = {"counts": (("train", 4), ("val", 2), ("test", 2)), "seconds": 2.0}  # make_corpus arguments
VAD_BUILD = (6, 2, 6)  # canvases per split of a scaled `data build vad`, for every --size
AS_STUDY = {"models": ("resnet",), "sizes": {"resnet": {"B0": 8, "B1": 8, "B2": 16, "B3": 16}}, "seeds": (0,),
            "targets": (0.5,), "stage_models": (), "absolute_targets": {}, "steps": {"resnet": 2}, "batch_size": 4,
            "finetune_steps": 1}
AS_BUILD = {"train": 2, "val": 1, "test": 1}  # clips per spoof system and split of a scaled `data build antispoof`


# -- running a command ---------------------------------------------------------------------------------------
@dataclass
class Workspace:
    """The folder a command runs in (its cwd), the monkeypatch of its run and the session's other runs."""

    path: Path
    patch: pytest.MonkeyPatch
    runs: Runs

    def softwidth(self, argv: list[str]) -> tuple[str, str]:
        """``softwidth argv`` through the real entry point; asserts exit status 0; returns (stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        assert code == 0, f"softwidth {shlex.join(argv)} exited {code}: {err.getvalue()[-3000:]}"
        return out.getvalue(), err.getvalue()

    def shell(self, argv: list[str], *, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        """A subprocess; asserts exit status 0."""
        proc = subprocess.run(argv, cwd=cwd or self.path, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr[-3000:]}"
        return proc


class Runs:
    """Each documented command run once per session, each in its own folder under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, Path] = {}

    def folder(self, command: str) -> Path:
        """The folder ``command`` ran in (running it now if it has not run yet)."""
        if command not in self.done:
            path = Path(tempfile.mkdtemp(prefix="run", dir=self.root))  # unique, also for a run inside a run
            with pytest.MonkeyPatch.context() as patch:
                run_in(command, Workspace(path, patch, self))
            self.done[command] = path
        return self.done[command]

    def fixture(self, name: str, make: Callable[[Path], Path]) -> Path:
        """``make(root / name)`` once per session: a fixture several commands read (caches they write are shared)."""
        path = self.root / name
        if not path.exists():
            make(path)
        return path

    def documented(self, pattern: str) -> list[str]:
        """The documented commands that match ``pattern`` (a regular expression searched in each)."""
        found = [c for c in COMMANDS if re.search(pattern, c)]
        assert found, f"no documented command matches {pattern!r}"
        return found


def _argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def row_for(command: str) -> Row:
    """The one row of :data:`RUNS` whose pattern matches the whole command (its comment left out)."""
    text = shlex.join(_argv(command))
    rows = [r for r in RUNS if re.fullmatch(r.pattern, text)]
    if not rows:
        raise LookupError(f"no row of RUNS (tests/test_doc_commands.py) matches the documented command `{text}`; "
                          f"add one that says how to run it")
    if len(rows) > 1:
        raise LookupError(f"rows {[r.pattern for r in rows]} all match `{text}`; make them disjoint")
    return rows[0]


def run_in(command: str, ws: Workspace) -> None:
    """Run ``command`` in ``ws`` by its row, with the network refused and the cache inside ``ws``."""
    row = row_for(command)
    ws.patch.chdir(ws.path)
    ws.patch.setenv("SOFTWIDTH_CACHE", str(ws.path / "cache"))
    _refuse_network(ws.patch)
    row.run(ws, _argv(command))


def _refuse_network(patch: pytest.MonkeyPatch) -> None:
    """apt-get (softwidth_studies.data.packages runs it to fetch Debian packages) and sockets to other hosts raise."""
    from softwidth_studies.data import packages

    def no_apt(cmd, cwd=None):
        raise AssertionError(f"a documented command ran {cmd[:3]}: its row must give it a fixture instead")

    real_connect = socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family != socket.AF_UNIX and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a documented command connected to {address}")
        return real_connect(sock, address)

    patch.setattr(packages, "_run", no_apt)
    patch.setattr(socket.socket, "connect", local_only)


def _args(argv: list[str]):
    """The CLI's own reading of a softwidth argv (defaults filled in)."""
    return build_parser().parse_args(argv[1:])


def _written(out: str) -> Path:
    """Check the CLI's closing line ``results written to DIR/ (a, b, *.png, d/)``: every file it lists exists
    and is not empty; returns DIR."""
    match = re.search(r"^results written to (.+?)/ \((.*)\)$", out, flags=re.M)
    assert match, f"no 'results written to' line in:\n{out[-2000:]}"
    folder = Path(match.group(1))
    for name in match.group(2).split(", "):
        found = list(folder.glob(name.rstrip("/")))
        assert found, f"{folder / name} listed as written but missing"
        for path in found:
            assert any(path.iterdir()) if name.endswith("/") else path.stat().st_size > 0, f"{path} is empty"
    return folder


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _scaled(patch: pytest.MonkeyPatch, module, name: str, fields: dict, **forced) -> None:
    """Replace ``module.name(config, out, **options)`` by a call with ``fields`` replaced in the config."""
    real = getattr(module, name)
    patch.setattr(module, name, lambda config, out, **options: real(replace(config, **fields), out,
                                                                     **{**options, **forced}))


# -- audio made here -------------------------------------------------------------------------------------------
def _speech_file(path: Path, *, seed: int = 0) -> list[tuple[float, float]]:
    """Write silence - speech-like sound (harmonics under a syllable envelope) - silence - speech - silence to
    ``path`` (16 kHz mono for .wav, else 44.1 kHz stereo); returns the voiced intervals in seconds."""
    rate = 16000 if path.suffix == ".wav" else 44100
    rng = np.random.default_rng(seed)
    parts, voiced, t = [], [], 0.0
    for seconds in (1.0, 2.0, 1.0, 1.5, 1.0):
        if len(parts) % 2:
            clip = VAD_SOURCES._speechlike(rng, seconds, rate)  # 0.3 s of faint noise either side
            voiced.append((t + 0.3, t + 0.3 + seconds))
        else:
            clip = 1e-3 * rng.standard_normal(int(seconds * rate))
        parts.append(clip)
        t += clip.size / rate
    audio = np.concatenate(parts).astype(np.float32)
    sf.write(path, audio if rate == 16000 else np.stack([audio, 0.8 * audio], axis=1), rate)
    return voiced


def _overlaps(a: tuple[float, float], b: tuple[float, float], slack: float = 0.25) -> bool:
    return min(a[1], b[1]) + slack > max(a[0], b[0])


# -- the rows' runners ------------------------------------------------------------------------------------------
def _run_sh(ws: Workspace, argv: list[str]) -> None:
    """A copy of the script in a stand-in checkout: setup.sh and .venv/bin/softwidth record their calls; the
    softwidth call must be a documented command, and runs as that one."""
    root = _stand_in_checkout(ws, argv[1], {"softwidth": 'printf "%s\\n" "$@" > "$(dirname "$0")/argv"'})
    ws.shell(argv, cwd=root)
    assert (root / "setup.log").read_text().split() == ["setup.sh"]  # no extras: the plain package
    called = ["softwidth", *(root / ".venv/bin/argv").read_text().split()]
    (command,) = [c for c in COMMANDS if _argv(c) == called]  # a documented command, so run by its row (once)
    ws.runs.folder(command)


def _test_sh(ws: Workspace, argv: list[str]) -> None:
    """A copy of the script in a stand-in checkout whose suite is one passing test (this module runs inside the
    real suite); setup.sh records its call; .venv/bin/python is this interpreter."""
    root = _stand_in_checkout(ws, argv[1], {"python": f'exec "{sys.executable}" "$@"'})
    (root / "tests").mkdir()
    (root / "tests" / "test_stand_in.py").write_text("def test_stand_in():\n    assert 1 + 1 == 2\n")
    # this run's PYTEST_ADDOPTS (-k, say) would deselect the stand-in; its plugins would take 2 s to load, unused
    proc = ws.shell(argv, cwd=root, PYTEST_ADDOPTS="", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    assert (root / "setup.log").read_text().split() == ["setup.sh", "test"]  # the test extras
    assert re.search(r"\b1 passed\b", proc.stdout), proc.stdout
    assert not (root / ".pytest_cache").exists()  # -p no:cacheprovider: the checkout stays clean


def _stand_in_checkout(ws: Workspace, script: str, tools: dict[str, str]) -> Path:
    """``ws/checkout`` with a copy of ``script``, a setup.sh that logs its arguments (the real one pip-installs
    from the network) and ``.venv/bin`` tools given as bash bodies."""
    root = ws.path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / script, root / script)
    (root / "scripts" / "setup.sh").write_text('echo "setup.sh $*" >> "$(dirname "$0")/../setup.log"\n')
    (root / ".venv" / "bin").mkdir(parents=True)
    for name, body in tools.items():
        tool = root / ".venv" / "bin" / name
        tool.write_text(f"#!/usr/bin/env bash\n{body}\n")
        tool.chmod(0o755)
    return root


def _demo(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    out, err = ws.softwidth(argv[1:])
    full = float(re.search(r"^full model: ([\d.]+) MFLOP/s", out, flags=re.M).group(1))
    small = float(re.search(r"^consolidated: ([\d.]+) MFLOP/s", out, flags=re.M).group(1))
    assert 0 < small <= full and "Sequential(" in out
    assert f"{args.steps}/{args.steps}" in err  # the progress bar ran the requested steps


def _synthetic(ws: Workspace, argv: list[str]) -> None:
    from softwidth_studies.experiments import synthetic

    args = _args(argv)
    out_dir = args.out or Path("results/synthetic_quick" if args.quick else "results/synthetic")
    before = {}
    if args.report_only or args.resume:  # the stored runs of the scaled quick study, copied in
        study = ws.runs.folder("softwidth synthetic --quick") / "results" / "synthetic_quick"
        if args.report_only:
            _copy(study, out_dir)
            for name in ("summary.md", "metrics.json", "pareto.png", "trajectories.png"):
                (out_dir / name).unlink()
        else:  # an interrupted study: one run missing
            _copy(study / "runs", out_dir / "runs")
            sorted((out_dir / "runs").glob("*.json"))[0].unlink()
        before = {p.name: p.stat().st_mtime_ns for p in (out_dir / "runs").glob("*.json")}
    _scaled(ws.patch, synthetic, "run_synthetic", SYNTHETIC)
    out, _ = ws.softwidth(argv[1:])
    assert _written(out) == out_dir
    summary = (out_dir / "summary.md").read_text()
    assert summary in out  # the command prints the summary it wrote
    runs = {p.name: p.stat().st_mtime_ns for p in (out_dir / "runs").glob("*.json")}
    config = json.loads((out_dir / "config.json").read_text())["config"]
    assert config["workers"] == args.workers
    if args.report_only:  # no training: the same runs give the same report
        assert runs == before and summary == (study / "summary.md").read_text()
    if args.resume:  # the finished runs are kept, the missing one trained
        assert len(runs) == len(before) + 1 and all(runs[k] == v for k, v in before.items())


def _sweep(ws: Workspace, argv: list[str]) -> None:
    import softwidth_studies.sweep as sweep_module

    args = _args(argv)
    real = sweep_module._CASE_STUDIES[args.case_study]
    ws.patch.setitem(sweep_module._CASE_STUDIES, args.case_study,
                     lambda point, folder: real({**point, **SWEEP_POINT}, folder))
    ws.patch.setattr(sweep_module, "_run_ray", sweep_module._run_local)
    out, _ = ws.softwidth(argv[1:])
    folder = _written(out)
    assert folder == (args.out or Path(f"results/sweep_{args.case_study}"))
    n = (len(args.weights) + len(args.targets)) * max(1, len(args.kappa_min)) * len(args.seeds)
    with open(folder / "pareto.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and not any(r["error"] for r in rows) and any(r["pareto"] == "1" for r in rows)
    assert {r["kappa_min"] for r in rows} == ({str(k) for k in args.kappa_min} or {""})
    assert len(re.findall(r"^\s+\S+\s+\S+\s+\S+\s+\d+\s+[\d.e+-]+\s+[\d.e+-]+", out, flags=re.M)) == n  # the table
    options = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    if args.epochs:
        options["epochs"] = args.epochs
    points = [json.loads(p.read_text())["point"] for p in (folder / "points").glob("*.json")]
    assert len(points) == n and all(p.items() >= options.items() for p in points)  # --set/--epochs reach points


def _data_build(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    if args.corpus == "vad":
        _vad_build_scaled(ws, args)
        argv = _substituted(ws, argv)
    else:
        _antispoof_build_scaled(ws, args)
    out, _ = ws.softwidth(argv[1:])
    match = re.fullmatch(rf"{args.corpus} corpus \({args.size}\) in (.+); summary: (.+)/summary.md\n", out)
    path = Path(match[1])
    assert match[2] == match[1] and path == _built(args, ws.path)
    summary = json.loads((path / "summary.json").read_text())
    assert (path / "summary.md").stat().st_size > 0 and summary["seed"] == args.seed
    if args.corpus == "vad":
        for split, n in zip(("train", "val", "test"), VAD_BUILD):
            with open(path / split / "metadata.csv", newline="") as f:
                assert len(list(csv.DictReader(f))) == n
        assert summary["checks"]["voices_disjoint"] and summary["checks"]["noise_files_disjoint"]
    else:
        with open(path / "metadata.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        per = Counter((r["split"], r["system"]) for r in rows if r["label"] == "spoof")
        assert {s: n for (s, _), n in per.items()} == AS_BUILD  # clips per system and split
        assert {r["split"] for r in rows if r["label"] == "bonafide"} == {"train", "val", "test"}
        assert all((path / r["path"]).is_file() for r in rows)


def _built(args, cwd: Path) -> Path:
    """Where ``softwidth data build`` writes: --out, else the cache (SOFTWIDTH_CACHE is ``cwd/cache``)."""
    return args.out or cwd / "cache" / "corpora" / f"{args.corpus}-{args.size}"


def _vad_build_scaled(ws: Workspace, args) -> None:
    """Debian speech and noise (None) become the VCTK / ESC-50 stand-ins; every size has VAD_BUILD canvases."""
    from softwidth_studies.data import vad_corpus

    size = vad_corpus.SIZES[args.size]
    ws.patch.setitem(vad_corpus.SIZES, args.size, replace(size, train=VAD_BUILD[0], val=VAD_BUILD[1],
                                                          test=VAD_BUILD[2]))
    vctk, esc50 = _vctk_esc50(ws)
    real = vad_corpus.resolve_sources

    def stand_ins(speech, noise, package_set, cache_dir):
        assert package_set == size.sources  # the packages of the size asked for
        return real(speech or f"vctk:{vctk}", noise or f"esc50:{esc50}", package_set, cache_dir)

    ws.patch.setattr(vad_corpus, "resolve_sources", stand_ins)


def _antispoof_build_scaled(ws: Workspace, args) -> None:
    """The Debian speakers and TTS systems become tests/data/test_antispoof_corpus.py's fixtures; AS_BUILD clips."""
    from softwidth_studies.data import antispoof_corpus

    ws.patch.setitem(antispoof_corpus.SIZES, args.size, AS_BUILD)
    (ws.path / "sources").mkdir()
    groups = AS_SOURCES.make_sources(ws.path / "sources")
    ws.patch.setattr(antispoof_corpus, "_resolve", lambda sources, systems, cache, progress: (
        groups, list(AS_SOURCES.SYSTEMS), Counter()))


def _vctk_esc50(ws: Workspace) -> tuple[Path, Path]:
    if not (ws.path / "VCTK").exists():
        VAD_SOURCES.vctk_and_esc50(ws.path)
    return ws.path / "VCTK", ws.path / "ESC-50"


def _substituted(ws: Workspace, argv: list[str]) -> list[str]:
    """The docs' example paths replaced by fixtures made in ``ws``."""
    vctk, esc50 = _vctk_esc50(ws)
    return [a.replace("/data/VCTK-Corpus", str(vctk)).replace("/data/ESC-50", str(esc50)) for a in argv]


def _data_check(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    if str(args.dir) == "<CORPUS_DIR>":  # a corpus of the first documented build of this kind
        build = ws.runs.documented(rf"^softwidth data build {args.corpus} ")[0]
        folder = ws.runs.folder(build)
        corpus = _copy(folder / _built(_args(_argv(build)), folder), ws.path / "corpus")
        argv = [str(corpus) if a == "<CORPUS_DIR>" else a for a in argv]
    else:  # the corpus the documented build into the same folder wrote
        pattern = rf"^softwidth data build {args.corpus} .*--out {re.escape(str(args.dir))}( |$)"
        (build,) = ws.runs.documented(pattern)
        corpus = _copy(ws.runs.folder(build) / args.dir, ws.path / args.dir)
    out, _ = ws.softwidth(argv[1:])
    result = json.loads((corpus / "checks.json").read_text())
    assert json.loads(out) == result  # printed and written to DIR/checks.json
    if args.corpus == "vad":
        assert 0.0 <= result["label_agreement_with_silero"] <= 1.0 and result["required"] == 0.9
    else:
        assert 0.0 <= result["shortcut"]["eer_test"] <= 1.0 and result["required_test_eer"] == 0.4


def _vad_train(ws: Workspace, argv: list[str]) -> None:
    from softwidth_studies.data import vad_corpus
    from softwidth_studies.vad import store, study, timing

    args = _args(argv)
    corpus = ws.runs.fixture("vad-corpus", lambda path: VAD_FIXTURES.make_corpus(path, **VAD_CORPUS))
    asked = []  # the builder would fetch Debian packages; here it returns the session's fixture corpus
    ws.patch.setattr(vad_corpus, "build_vad_corpus", lambda out, *, size: asked.append(size) or corpus)
    if args.corpus:
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        args.corpus.symlink_to(corpus)
    _scaled(ws.patch, study, "run_study", VAD_STUDY, peers=False)
    ws.patch.setattr(timing, "_best", lambda fn, repeats: _seconds(fn))
    ws.patch.setattr(store, "DEFAULT_MODEL", ws.path / "installed")
    out, _ = ws.softwidth(argv[1:])
    folder = _written(out)
    assert folder == (args.out or Path("results/vad_quick" if args.quick else "results/vad"))
    config = json.loads((folder / "results.json").read_text())["config"]
    assert config["workers"] == args.workers
    if args.corpus:
        assert not asked and config["corpus"] == str(args.corpus)
    else:  # the cached corpus of the study's size
        assert asked == ["small" if args.quick else "full"] and config["corpus"] == str(corpus)
    installed = ws.path / "installed" / "model.json"
    assert installed.exists() != args.quick  # only the full study replaces the shipped model
    if installed.exists():
        assert installed.read_text() == (folder / "default_model" / "model.json").read_text()


def _seconds(fn: Callable[[], object]) -> float:
    """One timed call (the study's real-time factors time a warm-up and three; a 2-step model's mean nothing)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _vad_evaluate(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    folder = args.out or Path("results/vad_quick" if args.quick else "results/vad")
    folder.mkdir(parents=True)
    shutil.copy(ROOT / folder / "results.json", folder)  # the committed study: its results.json alone
    out, _ = ws.softwidth(argv[1:])
    summary = json.loads((folder / "summary.json").read_text())
    assert json.loads(out) == summary["checks"]
    for name in ("summary.md", "headline.md", "eer_vs_mflops.png", "eer_per_snr.png"):
        assert (folder / name).stat().st_size > 0


def _vad_detect(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    voiced = {str(path): _speech_file(path, seed=i) for i, path in enumerate(args.files)}
    out, _ = ws.softwidth(argv[1:])
    if args.json:  # one object, or a list of them for several files
        results = json.loads(out) if len(args.files) > 1 else [json.loads(out)]
        assert all(abs(r["seconds"] - sf.info(r["file"]).duration) < 0.01 for r in results)
        found = {r["file"]: [tuple(s) for s in r["segments"]] for r in results}
    else:
        found, name = {}, str(args.files[0])
        for line in out.splitlines():
            if line.startswith("# "):  # one header per file when there are several
                name = line[2:]
            else:
                found.setdefault(name, []).append(tuple(float(x) for x in line.split("\t")))
    assert found.keys() == voiced.keys()
    for name, segments in found.items():  # every stretch of speech found, nothing found in the silences
        assert all(any(_overlaps(v, s) for s in segments) for v in voiced[name]), (name, segments, voiced[name])
        assert all(any(_overlaps(v, s) for v in voiced[name]) for s in segments), (name, segments, voiced[name])
        assert all(a < b for a, b in segments)


def _antispoof_train(ws: Workspace, argv: list[str]) -> None:
    from softwidth_studies.antispoof import cli, study
    from softwidth_studies.data import antispoof_corpus

    args = _args(argv)
    build = ws.runs.documented(r"^softwidth data build antispoof ")[0]
    folder = ws.runs.folder(build)
    corpus = folder / _built(_args(_argv(build)), folder)
    asked = []  # the builder would fetch Debian packages; here it returns the documented build's corpus
    ws.patch.setattr(antispoof_corpus, "build_antispoof_corpus", lambda out, *, size: asked.append(size) or corpus)
    if args.corpus:
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        args.corpus.symlink_to(corpus)
    _scaled(ws.patch, study, "run_study", AS_STUDY)
    ws.patch.setattr(cli, "DEFAULT_MODEL", ws.path / "installed")
    out, _ = ws.softwidth(argv[1:])
    folder = _written(out)
    assert folder == (args.out or Path("results/antispoof_quick" if args.quick else "results/antispoof"))
    config = json.loads((folder / "results.json").read_text())["config"]
    assert config["workers"] == args.workers and config["corpus"] == str(args.corpus or corpus)
    assert asked == ([] if args.corpus else ["small" if args.quick else "full"])
    assert (folder / "model" / "model.safetensors").stat().st_size > 0
    installed = ws.path / "installed" / "model.json"
    assert installed.exists() != args.quick  # only the full study replaces the shipped model
    if installed.exists():
        assert installed.read_text() == (folder / "model" / "model.json").read_text()


def _antispoof_score(ws: Workspace, argv: list[str]) -> None:
    args = _args(argv)
    if args.model:  # a committed countermeasure; without --model, the shipped one
        _copy(ROOT / args.model, args.model)
    for i, path in enumerate(args.files):
        _speech_file(path, seed=i)
    out, _ = ws.softwidth(argv[1:])
    if args.json:
        scores = {r["file"]: r["bonafide"] for r in json.loads(out)}
    else:
        scores = {name: float(p) for p, name in (line.split("\t") for line in out.splitlines())}
    assert list(scores) == [str(p) for p in args.files] and all(0.0 <= p <= 1.0 for p in scores.values())


def _train_py(ws: Workspace, argv: list[str]) -> None:
    """The DDP script of docs/integrations.md, saved as the docs say, under ``python`` or ``torchrun``."""
    (ws.path / argv[-1]).write_text(saved_script((ROOT / "docs" / "integrations.md").read_text(), argv[-1]))
    if argv[0] == "python":  # in this process, as __main__ (a fresh interpreter would only add its start-up)
        ws.patch.setattr(sys, "argv", argv[1:])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runpy.run_path(argv[1], run_name="__main__")
        printed = out.getvalue()
    else:  # a free port (PET_STANDALONE is --standalone), not 29500, which another run may hold
        printed = ws.shell([str(VENV_BIN / argv[0]), *argv[1:]], PET_STANDALONE="1").stdout
    (line,) = [ln for ln in printed.splitlines() if ln.startswith("hidden units:")]  # rank 0 alone reports
    kept, _, of = line.removeprefix("hidden units: ").partition(" of ")
    assert 1 <= int(kept) <= int(of) == 32
    run = ws.path / "runs" / "ddp"
    assert (run / "log.csv").read_text().count("\n") == 7  # header + 6 epochs, written once
    assert (run / "consolidated" / "model.safetensors").stat().st_size > 0


def _pytest(ws: Workspace, argv: list[str]) -> None:
    """Collected, not run (the files run in this suite anyway), in this process: in a whole-suite run their
    modules are imported already."""
    files = [a for a in argv[1:] if not a.startswith("-")]
    ws.patch.chdir(ROOT)  # the paths are the checkout's
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = pytest.main([*argv[1:], "--collect-only", "-p", "no:cacheprovider", "--rootdir", str(ROOT)])
    # -q here and in pyproject's addopts: one "path: N" line per file
    collected = dict(re.findall(r"^(\S+\.py): (\d+)$", out.getvalue(), flags=re.M))
    assert code == 0 and collected.keys() == set(files), out.getvalue()
    assert all(int(n) > 0 for n in collected.values()), collected


@dataclass(frozen=True)
class Row:
    pattern: str  # a regular expression matching the whole command (shlex-joined, comment left out)
    how: str  # as written, or the scale-down and why
    run: Callable[[Workspace, list[str]], None]  # prepares the folder, runs the command, checks what it made


RUNS = (  # pattern of the whole command -> how it runs here (the scale-down and why) -> the runner
    Row(r"bash scripts/run\.sh", "in a stand-in checkout: setup.sh only logs (it pip-installs from the network); "
        "the softwidth call the script makes is recorded, then run by its own row", _run_sh),
    Row(r"bash scripts/test\.sh", "in a stand-in checkout: setup.sh only logs; the suite is one stand-in test "
        "(the real suite is what runs this module)", _test_sh),
    Row(r"softwidth demo( .*)?", "as written", _demo),
    Row(r"softwidth synthetic( .*)?", "config scaled to SYNTHETIC (about a minute, or an hour, as written); "
        "--report-only and --resume get the runs of the scaled --quick study (results/ keeps no runs/)",
        _synthetic),
    Row(r"softwidth sweep .*", "each point scaled to SWEEP_POINT, the grid as written; --backend ray runs on the "
        "local pool (Ray takes ~50 s to start on 2 cores; tests/test_sweep.py checks both backends agree)", _sweep),
    Row(r"softwidth data build .*", "vad: the Debian packages (network) and /data/... paths become VCTK/ESC-50 "
        "stand-ins, VAD_BUILD canvases; antispoof: the fixture speakers and TTS systems of "
        "tests/data/test_antispoof_corpus.py, AS_BUILD clips", _data_build),
    Row(r"softwidth data check .*", "as written, on a copy of the corpus the documented build wrote (into DIR, "
        "or any, for <CORPUS_DIR>)", _data_check),
    Row(r"softwidth vad train( .*)?", "corpus: one make_corpus(VAD_CORPUS) (the builder would fetch Debian "
        "packages; --corpus links to it); config scaled to VAD_STUDY; no peers (TEN VAD fetches libc++; "
        "tests/vad/test_peers.py scores them); one timing pass; DEFAULT_MODEL in the temporary folder", _vad_train),
    Row(r"softwidth vad evaluate( .*)?", "as written, on the committed results.json", _vad_evaluate),
    Row(r"softwidth vad detect .*", "as written (shipped model), on speech-like audio made here", _vad_detect),
    Row(r"softwidth antispoof train( .*)?", "corpus: the documented antispoof build's (the builder would fetch "
        "Debian packages; --corpus links to it); config scaled to AS_STUDY; DEFAULT_MODEL in the temporary folder",
        _antispoof_train),
    Row(r"softwidth antispoof score .*", "as written (shipped model, or the committed one --model names), on audio "
        "made here",
        _antispoof_score),
    Row(r"(python|torchrun --nproc_per_node=2) train\.py", "as written, train.py the DDP block of "
        "docs/integrations.md; python in this process (runpy); torchrun with PET_STANDALONE=1 (a free port, not "
        "29500)", _train_py),
    Row(r"pytest -q( tests/\S+\.py)+", "--collect-only, in this process: these files run in this suite anyway",
        _pytest),
)


# -- tests -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("doc_commands"))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("command", COMMANDS, ids=[shlex.join(_argv(c)) for c in COMMANDS])
def test_documented_command_runs(command, executed):
    executed.folder(command)


def test_the_docs_have_commands_and_every_row_is_used():
    assert len(COMMANDS) >= 20 and any(c.startswith("bash ") for c in COMMANDS)
    unused = [r.pattern for r in RUNS if not any(row_for(c) is r for c in COMMANDS)]
    assert not unused, f"rows of RUNS no documented command uses: {unused}"


def test_a_command_without_a_row_fails():
    with pytest.raises(LookupError, match="add one that says how to run it"):
        row_for("softwidth frobnicate --now")
    with pytest.raises(LookupError):
        row_for("make install")
