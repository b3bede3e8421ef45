"""The shell commands of the documentation, for the tests that parse them (test_docs.py) and run them
(test_doc_commands.py): every line of the ```bash blocks of README.md and docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"
DOCS = [*dict.fromkeys([API, ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])]


def bash_commands(texts: list[str] | None = None) -> list[str]:
    """Every command of the ```bash blocks of ``texts`` (default: :data:`DOCS`), in order, one string each:
    lines continued with a trailing backslash are joined, blank and comment-only lines dropped; a trailing
    ``# comment`` stays (``shlex.split(command, comments=True)`` drops it)."""
    if texts is None:
        texts = [path.read_text() for path in DOCS]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", "\n".join(texts), flags=re.S):
        for command in re.sub(r"\\\n", " ", block).splitlines():
            command = " ".join(command.split())
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def saved_script(text: str, name: str) -> str:
    """The ```python block that ``text`` introduces with "Save it as `name`:" (a script its commands run)."""
    match = re.search(rf"Save it as `{re.escape(name)}`:\n\n```python\n(.*?)```", text, flags=re.S)
    if match is None:
        raise LookupError(f"no python block saved as {name}")
    return match.group(1)
