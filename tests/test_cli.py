"""The command line: the demo runs, and user errors exit non-zero with a one-line message."""

from __future__ import annotations

import pytest

from softwidth_studies.cli import main


def test_demo_runs_and_prints_the_consolidated_model(capsys):
    assert main(["demo", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "MFLOP/s" in out and "Linear(in_features=40" in out


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    assert main(["synthetic", "--report-only", "--out", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("softwidth: error: no finished synthetic study")


def test_data_build_rejects_noise_for_antispoof(capsys):
    assert main(["data", "build", "antispoof", "--noise", "esc50:/x"]) == 2
    assert "vad corpus only" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--steps", "0"], ["nope"], ["data", "build", "vad", "--size", "huge"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("corpus", ["vad", "antispoof"])
def test_data_check_of_a_missing_corpus_is_a_one_line_error(corpus, tmp_path, capsys):
    assert main(["data", "check", corpus, str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("softwidth: error:")


@pytest.mark.parametrize("argv", [[], ["data"], ["data", "nope"], ["vad"], ["antispoof"], ["demo", "--steps", "x"],
                                  ["demo", "--seed", "-1"], ["demo", "--weight", "y"], ["demo", "--weight", "nan"],
                                  ["synthetic", "--workers", "two"], ["--threads", "0", "demo"],
                                  ["antispoof", "train", "--workers", "x"], ["data", "build", "vad", "--seed", "s"]])
def test_usage_errors_name_no_internal_destination(argv, capsys):
    """argparse messages say COMMAND and what was expected, not a destination (``required: vad_command``) or a
    private type function (``invalid _positive_int value``)."""
    import re

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error:" in err
    assert not re.search(r"(?<![\w-])_\w|_command\b", err), err


def test_torch_runs_on_one_thread_unless_told(monkeypatch):
    import torch

    from softwidth_studies import cli

    seen = []
    monkeypatch.setattr(cli, "_trace", lambda args: seen.append(torch.get_num_threads()))  # any command will do
    before = torch.get_num_threads()
    for var in ("SOFTWIDTH_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert main(["trace", "x"]) == 0 and seen[-1] == 1
    assert main(["--threads", "3", "trace", "x"]) == 0 and seen[-1] == 3
    assert torch.get_num_threads() == before  # main() puts the count back (it may run inside a larger process)
    monkeypatch.setenv("SOFTWIDTH_THREADS", "2")
    assert main(["trace", "x"]) == 0 and seen[-1] == 2
    assert main(["--threads", "3", "trace", "x"]) == 0 and seen[-1] == 3  # the option wins
    monkeypatch.delenv("SOFTWIDTH_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    torch.set_num_threads(5)  # as torch reads it at start-up
    try:
        assert main(["trace", "x"]) == 0 and seen[-1] == 5  # left to torch
    finally:
        torch.set_num_threads(before)


def test_a_bad_thread_variable_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("SOFTWIDTH_THREADS", "many")
    assert main(["demo", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["softwidth: error: $SOFTWIDTH_THREADS: expected an integer, got 'many'"]
