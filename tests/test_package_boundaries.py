"""The house rules of the two packages, read from their source: the library ``softwidth`` never imports the case
studies, the studies (``softwidth_studies``) use only softwidth's public names, a bare ``import softwidth`` loads
none of the audio and plotting stack, and neither package has an import cycle (late imports inside functions
included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"softwidth": ROOT / "src" / "softwidth", "softwidth_studies": ROOT / "studies" / "src" / "softwidth_studies"}


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    base = PACKAGES[package].parent
    out = {}
    for path in sorted(PACKAGES[package].rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """Every import in the file (module level or not): (absolute module, imported names, line)."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def test_the_library_never_imports_the_studies():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for name, path in modules("softwidth").items()
                 for module, _, line in imports(name, path) if module.split(".")[0] == "softwidth_studies"]
    assert not offenders, "\n".join(offenders)


def test_the_studies_use_only_public_names_of_the_library():
    offenders = []
    for name, path in modules("softwidth_studies").items():
        for module, names, line in imports(name, path):
            if module.split(".")[0] != "softwidth":
                continue
            private = [module] if _private(module) else [n for n in names if _private(n)]
            offenders += [f"{path.relative_to(ROOT)}:{line} imports {module}: {p}" for p in private]
    assert not offenders, "\n".join(offenders)


def test_the_studies_share_code_through_public_names():
    """A study subpackage (vad, antispoof, data, experiments) may use its own private helpers, not another's."""
    offenders = []
    for name, path in modules("softwidth_studies").items():
        home = name.split(".")[1] if "." in name else ""
        for module, names, line in imports(name, path):
            parts = module.split(".")
            if parts[0] != "softwidth_studies" or len(parts) < 2 or parts[1] == home:
                continue
            private = [module] if _private(module) else [n for n in names if _private(n)]
            offenders += [f"{path.relative_to(ROOT)}:{line} imports {module}: {p}" for p in private]
    assert not offenders, "\n".join(offenders)


def test_import_softwidth_loads_no_audio_or_plotting_stack():
    code = ("import sys, softwidth, softwidth.export, softwidth.trace, softwidth.integrations\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'scipy', 'soundfile', "
            "'softwidth_studies'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _cycles(package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over imports between its modules."""
    names = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for module, imported, _ in imports(name, path):
            # ``from pkg import sub`` imports the submodule when ``pkg.sub`` is a module
            candidates = [module] + [f"{module}.{n}" for n in imported]
            targets |= {c for c in candidates if c in names and c != name}
        # a module imports its package's __init__ as it loads; that edge is not a cycle the code wrote
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    assert _cycles(package) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import x\n")
    (package / "b.py").write_text("def x():\n    from . import a\n")
    (package / "c.py").write_text("from toy.a import y\n")
    monkeypatch.setitem(PACKAGES, "toy", package)
    assert _cycles("toy") == [["toy.a", "toy.b"]]
