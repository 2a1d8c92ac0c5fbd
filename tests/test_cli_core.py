"""The core CLI commands: query (read-only), prices, reprice, and clean errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import load_calls, write_calls

runner = CliRunner()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def filled_db(db_path: Path, make_calls) -> Path:
    # Sonnet 4.5: 1,000 in = $0.003 per call; one unpriced model.
    write_calls(
        db_path,
        make_calls(
            {"feature": "chat"},
            {"feature": "chat"},
            {"feature": "search", "request_model": "mystery", "response_model": None},
        ),
    )
    return db_path


def test_query_json_is_an_array_of_objects(filled_db: Path) -> None:
    result = runner.invoke(
        app,
        [
            "query",
            "SELECT feature, sum(cost_usd) AS usd FROM calls GROUP BY 1 ORDER BY 1",
            "--db",
            str(filled_db),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["feature"] == "chat" and rows[0]["usd"] == pytest.approx(0.006)
    assert rows[1] == {"feature": "search", "usd": None}


def test_query_csv_over_a_view(filled_db: Path) -> None:
    result = runner.invoke(
        app,
        [
            "query",
            "SELECT feature, calls FROM feature_costs ORDER BY feature",
            "--db",
            str(filled_db),
            "-f",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["feature,calls", "chat,2", "search,1"]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO calls (span_id) VALUES ('ffffffffffffffff')",
        "DELETE FROM calls",
        "DROP TABLE calls",
        "UPDATE calls SET cost_usd = 0",
        "CREATE TABLE x AS SELECT 1",
        "COPY calls TO '/tmp/clauditor-stolen.csv'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "SELECT 1; DELETE FROM calls",
    ],
)
def test_query_refuses_writes_and_leaves_the_file_unchanged(filled_db: Path, sql: str) -> None:
    before = digest(filled_db)
    result = runner.invoke(app, ["query", sql, "--db", str(filled_db)])
    assert result.exit_code == 2
    assert "refused" in result.stderr or "exactly one statement" in result.stderr
    assert digest(filled_db) == before
    assert load_calls(filled_db).height == 3


def test_query_syntax_error_is_clean(filled_db: Path) -> None:
    result = runner.invoke(app, ["query", "SELEC nope", "--db", str(filled_db)])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_query_on_missing_db_names_the_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["query", "SELECT 1", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2
    assert "no database at" in result.stderr


def test_prices_lists_the_table() -> None:
    result = runner.invoke(app, ["prices", "--format", "json"])
    assert result.exit_code == 0, result.output
    entries = {e["model"]: e for e in json.loads(result.stdout)}
    assert entries["claude-sonnet-4-5"]["input"] == 3.0
    assert entries["claude-sonnet-4-5"]["cache_read"] == pytest.approx(0.3)
    assert entries["claude-haiku-4-5"]["output"] == 5.0
    assert entries["claude-opus-4-6"]["us_only"] == "x1.1"
    assert entries["claude-opus-5-5"]["cache_read"] == pytest.approx(0.2)
    assert entries["claude-opus-5-5"]["source"].startswith("https://platform.claude.com/")


def test_reprice_after_a_price_override(filled_db: Path, tmp_path: Path) -> None:
    config = tmp_path / "clauditor.toml"
    config.write_text(
        '[prices."claude-sonnet-4-5"]\ninput = 6.0\noutput = 30.0\neffective_from = 2026-01-01\n'
        '[prices."mystery"]\ninput = 1.0\noutput = 1.0\ncache_read = 0.1\n'
        "cache_write_5m = 1.25\ncache_write_1h = 2.0\n"
    )
    result = runner.invoke(app, ["reprice", "--db", str(filled_db), "--config", str(config)])
    assert result.exit_code == 0, result.output
    # Before: 2 Sonnet 4.5 calls at $0.003 each, the mystery call unpriced: $0.006.
    # After: 2 x $0.006 + $0.001 = $0.013, so +$0.007, and one call newly priced.
    assert "3 calls changed (1 newly priced); $0.006000 -> $0.013000 (+$0.007000)" in (
        result.stdout
    )
    costs = dict(load_calls(filled_db).select("feature", "cost_usd").iter_rows())
    assert costs["chat"] == pytest.approx(0.006)  # 1,000 in x $6/M
    assert costs["search"] == pytest.approx(0.001)  # 1,000 in x $1/M


def test_invalid_config_is_reported(filled_db: Path, tmp_path: Path) -> None:
    config = tmp_path / "clauditor.toml"
    config.write_text("[budget]\nmonthly_usd = -5\n")
    result = runner.invoke(app, ["reprice", "--db", str(filled_db), "--config", str(config)])
    assert result.exit_code == 2
    assert "budget.monthly_usd must be greater than 0" in result.stderr


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"{name} has no help text"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, f"{name} --help failed: {result.output}"


def test_tables_print_values_as_text_not_markup(tmp_path: Path, make_calls) -> None:
    # Feature names are the app's data: rich markup in them must neither break the table
    # ("[/]" closes nothing) nor vanish ("[bold]"), and neither may the audit's "[budget]".
    db = tmp_path / "c.duckdb"
    write_calls(db, make_calls({"feature": "[/]"}, {"feature": "[bold]launch"}))
    window = ["--db", str(db), "--period", "2026-10-01..2026-10-02"]
    costs = runner.invoke(app, ["costs", *window], terminal_width=200)
    assert costs.exit_code == 0, costs.output
    assert "[/]" in costs.stdout and "[bold]launch" in costs.stdout
    audit = runner.invoke(app, ["audit", *window], terminal_width=400)
    assert audit.exit_code == 0, audit.output
    assert "no [budget] monthly_usd" in audit.stdout
    folder = tmp_path / "[/]reports"
    folder.mkdir(parents=True)
    report = runner.invoke(app, ["report", *window, "--out", str(folder / "r.html")])
    assert report.exit_code == 0, report.output
    assert f"report: {folder / 'r.html'}" in report.stdout
