"""Refresh the generated blocks of the docs from the results files: ``python scripts/update_docs.py``.

A block is the text between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``; NAME says which
results file it copies (see BLOCKS). ``--check`` exits 1 if a block is stale (tests/test_docs.py runs it), so the
figures in the docs are always the ones the commands wrote.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {  # block name -> results file copied verbatim (headings demoted by one level)
    "synthetic": "results/synthetic/summary.md",
    "vad": "results/vad/summary.md",
    "vad-headline": "results/vad/headline.md",
    "vad-quick": "results/vad_quick/summary.md",
    "vad-pilot": "results/vad_pilots/schedule.md",
    "vad-freeze30": "results/vad_pilots/study_freeze30/headline.md",
    "vad-mel-grad": "results/vad_pilots/mel_grad.md",
    "vad-shape-grad": "results/vad_pilots/study_shape_grad/headline.md",
    "vad-uniform": "results/vad_pilots/uniform.md",
    "vad-width-method": "results/vad_pilots/width_method.md",
    "vad-sweep": "results/vad_sweep/summary.md",
    "vad-restart-gap": "results/vad_pilots/restart_gap.md",
    "allocation": "results/allocation/summary.md",
    "antispoof": "results/antispoof/summary.md",
    "antispoof-headline": "results/antispoof/headline.md",
    "antispoof-pilot": "results/antispoof_pilots/schedule.md",
    "antispoof-late": "results/antispoof_pilots/late.md",
    "antispoof-late-study": "results/antispoof_pilots/study_late80/headline.md",
    "bench-headline": "results/bench/headline.md",
}
DOCS = ("docs/results.md", "docs/method.md", "README.md")
PATTERN = re.compile(r"(<!-- BEGIN generated:([\w-]+) -->\n)(.*?)(<!-- END generated:\2 -->)", flags=re.DOTALL)


def block(name: str) -> str:
    path = ROOT / BLOCKS[name]
    if not path.exists():
        return f"_(not generated yet: run the command that writes `{BLOCKS[name]}`)_\n"
    text = path.read_text()
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.MULTILINE)  # nest under the doc's heading


def refresh(text: str) -> str:
    return PATTERN.sub(lambda m: m.group(1) + block(m.group(2)) + m.group(4), text)


def main(argv: list[str]) -> int:
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        new = refresh(text)
        if new != text:
            stale.append(doc)
            if "--check" not in argv:
                path.write_text(new)
    if stale and "--check" in argv:
        print(f"stale generated blocks in {', '.join(stale)}: run python scripts/update_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
