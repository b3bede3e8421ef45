"""Fuzzing the command line in process (``softwidth_studies.cli.main``) with hypothesis: random argv, from token soup
to valid commands with one value spoiled. Every run exits 0, 1 (the system refused: OSError) or 2 (a user
error), never with a traceback; a failure prints exactly one ``error:`` line (argparse may print its usage
lines before it). A command with nothing spoiled exits 0 and reaches the work function with valid values.

The work functions (the demo's training, the synthetic study, the corpus builders) are replaced by stubs
that check the values the CLI hands them and create the output folder as the real ones do, so the fuzz runs
offline in seconds; ``data check`` and ``synthetic --report-only`` run for real (they fail fast here).
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softwidth_studies import cli
from softwidth_studies.cli import main

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ROOT = "{tmp}"  # replaced by the test's folder
PATHS = [f"{ROOT}/out", f"{ROOT}/afile", f"{ROOT}/afile/sub", f"{ROOT}/missing/deep", f"{ROOT}", "", "-"]
VALUES = ["0", "1", "2", "3", "-1", "0.5", "1e3", "nan", "inf", "-inf", "x", "", "99999999999999999999999",
          "4294967296", "4294967295", "--", "\x00", "é", " "]
OPTIONS = {
    "demo": ["--steps", "--seed", "--weight"],
    "synthetic": ["--quick", "--out", "--resume", "--report-only", "--workers"],
    ("data", "build"): ["vad", "antispoof", "other", "--size", "tiny", "small", "full", "huge", "--out", "--seed",
                        "--speech", "--noise", "vctk:/nowhere", "esc50:/nowhere"],
    ("data", "check"): ["vad", "antispoof", "other"],
}


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    """Stand-ins for the slow work behind each command; each checks the CLI's contract with it."""
    from softwidth_studies import demo
    from softwidth_studies.data import antispoof_corpus as antispoof
    from softwidth_studies.data import vad_corpus as vad
    from softwidth_studies.experiments import synthetic

    calls: list[tuple[str, dict]] = []

    def run_demo(*, steps, seed, weight):
        assert type(steps) is int and steps >= 1
        assert type(seed) is int and 0 <= seed < 2**32
        assert type(weight) is float and math.isfinite(weight) and weight >= 0
        calls.append(("demo", {"steps": steps, "seed": seed, "weight": weight}))

    def run_synthetic(config, out, *, resume):
        assert config.workers >= 1 and isinstance(out, Path) and isinstance(resume, bool)
        out.mkdir(parents=True, exist_ok=True)  # what the real study does first (OSError for a bad path)
        (out / "summary.md").write_text("# stub\n")
        calls.append(("synthetic", {"out": out, "resume": resume, "workers": config.workers}))

    def build(name):
        def builder(out, *, size, seed, **sources):
            assert size in ("tiny", "small", "full") and type(seed) is int and 0 <= seed < 2**32
            Path(out).mkdir(parents=True, exist_ok=True)
            calls.append((name, {"out": Path(out), "size": size, "seed": seed, **sources}))
            return Path(out)
        return builder

    monkeypatch.setattr(demo, "run_demo", run_demo)
    monkeypatch.setattr(synthetic, "run_synthetic", run_synthetic)
    monkeypatch.setattr(vad, "build_vad_corpus", build("vad"))
    monkeypatch.setattr(antispoof, "build_antispoof_corpus", build("antispoof"))
    monkeypatch.setenv("SOFTWIDTH_CACHE", str(tmp_path / "cache"))  # default and relative outputs land in tmp
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    return calls


def run(argv: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """``main(argv)`` with ``{tmp}`` replaced: (exit code, stdout, stderr); only SystemExit is caught."""
    argv = [a.replace(ROOT, str(tmp_path)) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: usage errors (2) and --help (0)
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def check_outcome(code, stdout: str, stderr: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in stderr and "Traceback" not in stdout
    if code == 0:
        return
    lines = [line for line in stderr.split("\n") if line.strip()]  # not splitlines: \x1e is no line end
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("softwidth"), stderr
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), stderr  # argparse's usage block


@st.composite
def soup(draw):
    """Any sequence of the CLI's words, values and paths, after a (possibly wrong) command."""
    command = draw(st.sampled_from(["demo", "synthetic", "data", "nope", "--help", "-h", ""]))
    words = sorted({w for ws in OPTIONS.values() for w in ws}) + ["build", "check", "--help"]
    tail = draw(st.lists(st.one_of(st.sampled_from(words), st.sampled_from(VALUES), st.sampled_from(PATHS),
                                   st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4)),
                          max_size=7))
    return [command, *tail] if command else tail


@FUZZ
@given(argv=soup())
def test_token_soup_never_gives_a_traceback(stubs, tmp_path, argv):
    stubs.clear()
    code, stdout, stderr = run(argv, tmp_path)
    check_outcome(code, stdout, stderr)


# valid values of each option, and what can be wrong with them
GOOD = {"--steps": ["1", "5", "200"], "--seed": ["0", "7", "4294967295"], "--weight": ["0", "0.5", "2.5"],
        "--workers": ["1", "2"], "--out": [f"{ROOT}/out", f"{ROOT}/new/deeper"], "--size": ["tiny", "small", "full"]}
BAD = {"--steps": ["0", "-1", "1.5", "x", ""], "--seed": ["-1", "4294967296", "9" * 30, "1e3", "x"],
       "--weight": ["-1", "nan", "inf", "-inf", "x", ""], "--workers": ["0", "-2", "x"],
       "--out": [f"{ROOT}/afile", f"{ROOT}/afile/sub"], "--size": ["huge", "TINY", ""]}
COMMANDS = {"demo": (["demo"], ["--steps", "--seed", "--weight"]),
            "synthetic": (["synthetic"], ["--out", "--workers"]),
            "build-vad": (["data", "build", "vad"], ["--size", "--out", "--seed"]),
            "build-antispoof": (["data", "build", "antispoof"], ["--size", "--out", "--seed"])}


@st.composite
def commands(draw):
    """A valid command (options in random order), then 0-2 option values spoiled; returns (argv, spoiled)."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    head, options = COMMANDS[name]
    chosen = draw(st.lists(st.sampled_from(options), unique=True))
    spoiled = draw(st.lists(st.sampled_from(chosen), unique=True, max_size=2)) if chosen else []
    argv = list(head)
    for option in chosen:
        argv += [option, draw(st.sampled_from(BAD[option] if option in spoiled else GOOD[option]))]
    if name == "synthetic" and draw(st.booleans()):
        argv.append(draw(st.sampled_from(["--quick", "--resume"])))
    return name, argv, set(spoiled)


@FUZZ
@given(command=commands())
def test_valid_commands_run_and_spoiled_ones_fail_in_one_line(stubs, tmp_path, command):
    name, argv, spoiled = command
    stubs.clear()
    code, stdout, stderr = run(argv, tmp_path)
    check_outcome(code, stdout, stderr)
    if not spoiled:
        assert code == 0 and stubs and stubs[-1][0] == name.removeprefix("build-"), (argv, stderr)
        values = stubs[-1][1]
        for option, value in itertools.pairwise(argv):
            if option == "--seed":
                assert values["seed"] == int(value)
            if option == "--out":
                assert values["out"] == Path(value.replace(ROOT, str(tmp_path)))
    elif spoiled == {"--out"}:  # a path through a file: the system refuses, in one line, exit 1
        assert code == 1 and ("Not a directory" in stderr or "File exists" in stderr), (argv, stderr)
    else:
        assert code == 2 and not stubs, (argv, stderr)


@pytest.mark.parametrize("argv, code, message", [
    (["synthetic", "--report-only", "--out", f"{ROOT}/missing"], 2, "no finished synthetic study"),
    (["synthetic", "--report-only", "--out", f"{ROOT}/afile"], 2, "no finished synthetic study"),
    (["data", "check", "antispoof", f"{ROOT}/afile"], 2, "holds no metadata.csv"),
    (["data", "check", "vad", f"{ROOT}/missing"], 2, "no clean canvases"),
    (["data", "build", "antispoof", "--noise", "esc50:/x"], 2, "vad corpus only"),
    (["demo", "--seed", "99999999999999999999999"], 2, "must be an int in [0, 2**32 - 1]"),
    (["demo", "--weight", "nan"], 2, "must be a finite number >= 0"),
    (["data", "build", "vad", "--out", f"{ROOT}/afile/sub"], 1, "Not a directory"),
])
def test_known_bad_commands(stubs, tmp_path, argv, code, message):
    got, stdout, stderr = run(argv, tmp_path)
    check_outcome(got, stdout, stderr)
    assert got == code and message in stderr


def test_a_full_disk_is_one_line_with_exit_1(stubs, tmp_path, monkeypatch):
    import softwidth_studies.data.vad_corpus as vad

    def full(out, **kwargs):
        raise OSError(errno.ENOSPC, f"No space left on device while writing {out}/train/x.wav; free space and rerun")

    monkeypatch.setattr(vad, "build_vad_corpus", full)
    code, stdout, stderr = run(["data", "build", "vad", "--out", f"{ROOT}/out"], tmp_path)
    check_outcome(code, stdout, stderr)
    assert code == 1 and stderr.strip().startswith("softwidth: error: [Errno 28] No space left on device")
    assert len(stderr.strip().splitlines()) == 1


def test_the_stubs_stand_where_the_cli_looks():
    """Guards the fuzz: the CLI imports the work functions at call time, from the modules the stubs patch."""
    source = Path(cli.__file__).read_text()
    for name in ("from .demo import run_demo", "import SyntheticConfig, report_from_runs, run_synthetic",
                 "from .data.vad_corpus import build_vad_corpus",
                 "from .data.antispoof_corpus import build_antispoof_corpus"):
        assert name in source, name
