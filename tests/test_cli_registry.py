"""The CLI's commands are registered in one visible list, and only there.

``clauditor.cli.COMMANDS`` and ``GROUPS`` are what a reader opens to see every command; the
command modules define plain functions and register nothing themselves, so importing one
(or not) can never add or drop a command. And ``import clauditor.cli`` stays light: what
``clauditor --help`` imports must not pull in the commands' heavy dependencies.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer.main

from clauditor.cli import COMMANDS, GROUPS, app

CLI = Path(__file__).resolve().parent.parent / "clauditor" / "cli"


def _names(group: Any, prefix: str = "") -> set[str]:
    """Every command and subcommand of a typer group, as typed after ``clauditor``."""
    found: set[str] = set()
    for name, command in group.commands.items():
        found.add(f"{prefix}{name}")
        if hasattr(command, "commands"):  # a group
            found |= _names(command, f"{prefix}{name} ")
    return found


def test_every_command_of_help_is_in_the_one_registration_list_and_nothing_else() -> None:
    listed = {c.name for c in COMMANDS} | {g.name for g in GROUPS}
    listed |= {f"{g.name} {c.name}" for g in GROUPS for c in g.commands}
    root = typer.main.get_command(app)
    assert _names(root) == listed
    assert len(listed) == len(COMMANDS) + len(GROUPS) + sum(len(g.commands) for g in GROUPS)


def test_no_command_module_registers_a_command_itself() -> None:
    for path in sorted(CLI.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            # CliApp.command's own super().command(...) is no registration.
            owner = node.func.value
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
                continue
            assert node.func.attr not in ("command", "callback", "add_typer"), (
                f"{path.name}:{node.lineno} registers a command: list it in "
                "clauditor/cli/__init__.py instead"
            )


def test_importing_the_cli_leaves_the_heavy_dependencies_unloaded() -> None:
    heavy = ["polars", "duckdb", "pyarrow", "plotly", "anthropic", "grpc", "opentelemetry.sdk"]
    code = f"import sys, clauditor.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == ""
