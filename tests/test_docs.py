"""docs/api.md stays honest: every public name is documented in its module's section with its real
parameters, every ``softwidth ...`` command of the README and docs/*.md parses with the real CLI parser, every
Python block runs. The commands are also executed, each with what it should produce checked, by
test_doc_commands.py."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from pathlib import Path

import pytest
from doc_blocks import API, DOCS, bash_commands

from softwidth_studies.cli import build_parser

TEXT = API.read_text()

# module -> names documented besides its __all__ (public helpers the CLI uses)
COVERED = {
    "softwidth": (), "softwidth.layers": (), "softwidth.objective": (), "softwidth.schedule": (),
    "softwidth.train": (), "softwidth.session": (), "softwidth.optim": (), "softwidth.probe": (), "softwidth.cost": (),
    "softwidth.consolidate": (), "softwidth.shrink": (), "softwidth_studies.experiments.synthetic": ("report_from_runs",),
    "softwidth.noise_mix": (), "softwidth.gate": (), "softwidth_studies.experiments.pareto": (),
    "softwidth_studies.experiments.model_widths": (), "softwidth_studies.experiments.slicing": (), "softwidth_studies.data.cache": (), "softwidth_studies.data.packages": (), "softwidth_studies.data.audio": (),
    "softwidth_studies.data.loaders": (), "softwidth_studies.data.features": (), "softwidth_studies.data.vad_corpus": (),
    "softwidth_studies.data.antispoof_corpus": (), "softwidth.diagnostics": (), "softwidth.distributed": (),
    "softwidth.export": (), "softwidth_studies.sweep": (), "softwidth.integrations.lightning": (),
    "softwidth_studies.experiments.paired": (), "softwidth.width_optim": (), "softwidth.trace": (),
    **{f"softwidth_studies.vad.{m}": () for m in ("models", "data", "metrics", "evaluate", "stream", "store", "study",
                                          "peers", "pruning", "report", "timing", "ranked", "timestamps",
                                          "onnx_stream", "onnx_runner")},
    "softwidth_studies.vad": (),
    **{f"softwidth_studies.antispoof.{m}": () for m in ("models", "data", "evaluate", "study", "pruning", "report", "cli")},
}
ENTRY = re.compile(r"^- `(\w+)\((.*?)\)`", flags=re.M)  # "- `name(params)` text" at the start of a bullet


def sections() -> dict[str, str]:
    """``## `module` `` heading -> the text up to the next ``## `` heading."""
    parts = re.split(r"^## ", TEXT, flags=re.M)
    out = {}
    for part in parts[1:]:
        head, _, body = part.partition("\n")
        match = re.fullmatch(r"`([\w.]+)`", head.strip())
        if match:
            out[match.group(1)] = body
    return out


def public_names(module: str) -> list[str]:
    return list(importlib.import_module(module).__all__) + list(COVERED[module])


def test_every_covered_module_has_a_section_naming_all_its_public_names():
    found = sections()
    missing = {}
    for module in COVERED:
        assert module in found, f"docs/api.md has no section ## `{module}`"
        absent = [n for n in public_names(module) if not re.search(rf"`{re.escape(n)}\b", found[module])]
        if absent:
            missing[module] = absent
    assert not missing, f"public names not documented in their section of docs/api.md: {missing}"


def _documented_parameters(params: str) -> list[tuple[str, str]]:
    """(name, kind) of each parameter of a documented signature, parsed as a Python ``def``."""
    args = ast.parse(f"def f({params}): pass").body[0].args
    out = [(a.arg, "POSITIONAL_ONLY") for a in args.posonlyargs]
    out += [(a.arg, "POSITIONAL_OR_KEYWORD") for a in args.args]
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL"))
    out += [(a.arg, "KEYWORD_ONLY") for a in args.kwonlyargs]
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD"))
    return out


def test_documented_signatures_match_the_code():
    documented: set[tuple[str, str]] = set()
    wrong = []
    for module, body in sections().items():
        mod = importlib.import_module(module)
        for name, params in ENTRY.findall(body):
            obj = getattr(mod, name, None)
            if obj is None:  # defined elsewhere, e.g. Width in the top-level section
                obj = getattr(importlib.import_module("softwidth"), name)
            real = [(p.name, p.kind.name) for p in inspect.signature(obj).parameters.values()]
            if _documented_parameters(params) != real:
                wrong.append(f"{module}.{name}: doc ({params}) vs code {inspect.signature(obj)}")
            documented.add((module, name))
    assert not wrong, "\n".join(wrong)
    # every public class/function has a signature entry in the section of a module that exports it
    undocumented = []
    for module in COVERED:
        mod = importlib.import_module(module)
        for name in public_names(module):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            try:
                inspect.signature(obj)
            except ValueError:  # builtin-derived exception classes (SoftWidthError) have none
                continue
            if not any(n == name and getattr(importlib.import_module(m), n, None) is obj for m, n in documented):
                undocumented.append(f"{module}.{name}")
    assert not undocumented, f"no `name(signature)` entry in docs/api.md for: {undocumented}"


def _bash_commands(texts=None) -> list[str]:
    """Every ``softwidth ...`` command of the bash blocks of docs/api.md, or of ``texts``."""
    return [c for c in bash_commands(texts or [TEXT]) if c.startswith("softwidth ")]


def test_doc_shows_every_cli_subcommand():
    commands = _bash_commands()
    assert commands, "docs/api.md shows no softwidth command"
    shown = {tuple(shlex.split(c, comments=True)[1:3]) for c in commands}
    for expected in [("demo",), ("synthetic",), ("data", "build"), ("data", "check"), ("sweep",),
                     ("vad", "train"), ("vad", "evaluate"), ("vad", "detect")]:
        assert any(s[: len(expected)] == expected for s in shown), f"no example of softwidth {' '.join(expected)}"


@pytest.mark.parametrize("command", sorted(set(_bash_commands([p.read_text() for p in DOCS]))))
def test_bash_commands_parse(command):
    """Every ``softwidth`` command in the README and docs/*.md parses with the real CLI."""
    argv = shlex.split(command, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on a usage error
        pytest.fail(f"`{command}` does not parse (exit {exit_.code})")
    assert callable(args.func)


def test_a_bad_command_would_fail_the_parse_check():
    """The check above can fail: argparse rejects an option the CLI does not have."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synthetic", "--no-such-option"])


def test_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    assert blocks, "docs/api.md has no python example"
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md[python block {i}]", "exec"), {})  # noqa: S102 - our own docs


def test_generated_blocks_of_the_docs_equal_their_results_files():
    """docs/results.md, docs/method.md and the README copy figures only from results files (scripts/update_docs.py)."""
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "update_docs.py"))
    assert script["main"](["--check"]) == 0, "stale generated blocks: run python scripts/update_docs.py"
