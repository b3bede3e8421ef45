"""The README's code runs as written (so the documentation cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    scopes = []
    for block in blocks:
        scopes.append({})
        exec(compile(block, "README.md", "exec"), scopes[-1])  # noqa: S102 - our own documentation
    (small,) = [scope["small"] for scope in scopes if "small" in scope]  # the "Make a model dynamic" example
    assert all(type(m).__module__.startswith("torch.") for m in small.modules())
    linear = [m for m in small if isinstance(m, nn.Linear)]
    assert linear[0].out_features <= 128 and linear[-1].out_features == 2


def test_main_job_leaves_the_checkout_clean():
    """``bash scripts/run.sh`` (the README's main job) writes only where git ignores: no tracked file changes."""
    import shlex
    import shutil
    import subprocess

    root = README.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    (line,) = [s for s in (root / "scripts" / "run.sh").read_text().splitlines() if "bin/softwidth" in s]
    assert shlex.split(line)[1:] == ["synthetic", "--quick", "$@"]  # the job whose output is checked below
    written = [f"results/synthetic_quick/{name}" for name in ("config.json", "metrics.json", "runs.csv", "summary.md",
               "trajectories.csv", "pareto.png", "trajectories.png", "runs/0123456789abcdef.json")]
    tracked = subprocess.run(["git", "ls-files", "--", "results/synthetic_quick"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split()
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=root, capture_output=True,
                             text=True).stdout.split()
    assert not tracked and ignored == written
