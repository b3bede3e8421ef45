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
