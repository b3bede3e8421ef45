"""docs/integrations.md runs as written: every Python block (in a temporary folder), the DDP block as a
script under torchrun with 2 CPU processes, and every ``softwidth ...`` command parses."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from softwidth.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def _block(heading: str) -> str:
    section = TEXT.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index, tmp_path, monkeypatch, capsys):
    if "lightning" in BLOCKS[index]:
        pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"docs/integrations.md[python block {index}]", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert capsys.readouterr().out  # every example prints what it shows


def test_the_ddp_script_runs_under_torchrun(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_block("DDP with torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("hidden units:") == 1  # rank 0 alone reports
    run = tmp_path / "runs" / "ddp"
    assert (run / "log.csv").read_text().count("\n") == 7  # header + 6 epochs, written once
    assert (run / "consolidated" / "model.safetensors").exists()


def test_every_softwidth_command_parses():
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S)
             for line in block.splitlines() if line.strip().startswith("softwidth ")]
    assert len(lines) >= 3
    for line in lines:
        args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
        assert args.command == "sweep"
