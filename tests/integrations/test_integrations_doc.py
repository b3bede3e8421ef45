"""docs/integrations.md runs as written: every Python block (in a temporary folder) and every ``softwidth ...``
command parses. The DDP block is the script the docs save as train.py: tests/test_doc_commands.py runs it with
the documented ``python train.py`` and ``torchrun --nproc_per_node=2 train.py``, with the other commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from doc_blocks import saved_script

from softwidth_studies.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
TEXT = DOC.read_text()
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
          if b != saved_script(TEXT, "train.py")]  # run as a script by test_doc_commands.py


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index, tmp_path, monkeypatch, capsys):
    if "lightning" in BLOCKS[index]:
        pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"docs/integrations.md[python block {index}]", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert capsys.readouterr().out  # every example prints what it shows


def test_every_softwidth_command_parses():
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S)
             for line in block.splitlines() if line.strip().startswith("softwidth ")]
    assert len(lines) >= 3
    for line in lines:
        args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
        assert args.command == "sweep"
