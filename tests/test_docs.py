"""The README documents every CLI command and every stable view."""

from __future__ import annotations

from pathlib import Path

import typer.main

from clauditor.cli import app
from clauditor.store import read_connection, write_connection

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def command_paths() -> list[str]:
    paths = []
    root = typer.main.get_command(app)
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            paths += [f"{name} {sub}" for sub in subcommands]
        paths.append(name)
    return paths


def test_every_command_is_in_the_readme() -> None:
    missing = [p for p in command_paths() if f"clauditor {p}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_view_is_in_the_readme(tmp_path: Path) -> None:
    db = tmp_path / "v.duckdb"
    with write_connection(db):
        pass
    with read_connection(db) as con:
        views = [
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
    assert views
    missing = [v for v in views if f"| `{v}` |" not in README]
    assert not missing, f"views missing from README.md: {missing}"


def test_readme_quick_start_matches_ci() -> None:
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    test_command = (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[dev]" && pytest'
    )
    assert test_command in README and test_command in ci
    assert "clauditor demo" in README
