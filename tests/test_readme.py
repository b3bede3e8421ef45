"""The README's code runs as written (so the documentation cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    small = scope["small"]
    assert all(type(m).__module__.startswith("torch.") for m in small.modules())
    linear = [m for m in small if isinstance(m, nn.Linear)]
    assert linear[0].out_features <= 128 and linear[-1].out_features == 2
