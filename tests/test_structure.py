"""The package's shape, as docs/architecture.md ("Modules and imports") states it: no import
cycles, every package's ``__all__`` complete and sorted, no private name or another package's
private module imported, and mypy clean on the whole package."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    """Every module of the installed ``clauditor`` package, by dotted name, from pyproject's
    package-dir mapping (the stage folders install as ``clauditor.*`` subpackages)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules: dict[str, Path] = {}
    for package in setup["packages"]:
        folder = ROOT / setup["package-dir"].get(package, package.replace(".", "/"))
        if package not in setup["package-dir"]:  # a subpackage under a mapped folder
            parent, _, leaf = package.rpartition(".")
            folder = ROOT / setup["package-dir"].get(parent, parent) / leaf
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere (inside functions too)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            # A module's own package is imported before it anyway: not an edge of a cycle.
            if target in known and target != name and not name.startswith(f"{target}."):
                found.add(target)
    return found


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved in ``package``."""
    if not node.level:
        return node.module or ""
    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{anchor}.{node.module}" if node.module else anchor


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_back_into_a_module_that_imports_it() -> None:
    modules = _modules()
    assert "clauditor.store" in modules and "clauditor.ingest.files" in modules
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycles(graph) == []


# The packages whose public surface is the names their __init__ lists (analytics keeps its own
# test beside its rewrite).
PACKAGES = [
    "clauditor",
    "clauditor.simulator",
    "clauditor.instrumentation",
    "clauditor.ingest",
    "clauditor.dashboards",
    "clauditor.alerts",
]
# Every module of these stages (all but ingest's and analytics', which are being rewritten)
# holds its own __all__ to the same rule.
UNCHECKED_MODULES = ("clauditor.ingest.", "clauditor.analytics.")


def _order(name: str) -> tuple[int, str]:
    """ruff's RUF022 order ("isort-style"): CONSTANTS, then Classes, then everything else."""
    if len(name) > 1 and name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def _own_names(init: Path, package: str) -> set[str]:
    """The public names a package's __init__ binds: its definitions and what it imports from
    its own package (names from elsewhere, such as typing's, are not part of its surface)."""
    names: set[str] = set()
    body = ast.parse(init.read_text()).body
    for node in body + [n for block in body if isinstance(block, ast.If) for n in block.body]:
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith(package)
        ):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
    return {name for name in names if not name.startswith("_")}


def test_each_package_lists_exactly_its_public_names_sorted() -> None:
    modules = _modules()
    for package in PACKAGES:
        module = importlib.import_module(package)
        listed = list(module.__all__)
        assert listed == sorted(listed, key=_order), f"{package}.__all__ is not sorted"
        assert len(set(listed)) == len(listed), f"{package}.__all__ repeats a name"
        for name in listed:
            assert getattr(module, name, None) is not None, f"{package}.{name} is listed, absent"
        unlisted = _own_names(modules[package], package) - set(listed)
        assert not unlisted, f"{package} imports {sorted(unlisted)} but does not list them"


def test_every_module_all_is_sorted_and_names_what_it_holds() -> None:
    for name in _modules():
        if name.startswith(UNCHECKED_MODULES):
            continue
        module = importlib.import_module(name)
        listed = getattr(module, "__all__", None)
        if listed is None:
            continue
        assert list(listed) == sorted(listed, key=_order), f"{name}.__all__ is not sorted"
        missing = [entry for entry in listed if not hasattr(module, entry)]
        assert not missing, f"{name}.__all__ lists {missing}, which it does not hold"


@pytest.mark.slow
def test_mypy_finds_nothing_in_the_whole_package() -> None:
    # pyproject's [tool.mypy] files: every stage folder, so a bare `mypy` checks them all.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_module_imports_another_packages_private_module_or_a_private_name() -> None:
    """A ``_name`` is its module's own; a ``_module`` is its package's (its siblings use it)."""
    modules = _modules()
    broken = []
    for name, path in modules.items():
        if name.startswith(UNCHECKED_MODULES):
            continue
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                imported = [
                    (f"{base}.{alias.name}", "")
                    if f"{base}.{alias.name}" in modules
                    else (base, alias.name)
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                imported = [(alias.name, "") for alias in node.names]
            else:
                continue
            for source, leaf in imported:
                if source.split(".")[0] != "clauditor":
                    continue  # other libraries' internals (the SDK being patched) are not ours
                parts = source.split(".")
                first = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
                owner = ".".join(parts[:first]) if first is not None else None
                if owner is not None and not (package == owner or package.startswith(f"{owner}.")):
                    broken.append(f"{name} imports {source}")
                if leaf.startswith("_") and not leaf.startswith("__"):
                    broken.append(f"{name} imports {source}.{leaf}")
    assert broken == []
