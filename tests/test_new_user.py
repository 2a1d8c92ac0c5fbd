"""What a new user sees is true: thresholds, pasted hints and the numbers the CLI prints."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import write_calls

runner = CliRunner()
UTC = dt.UTC
AS_OF = "2026-10-20T00:00:00Z"


@pytest.fixture
def overspent(tmp_path: Path, make_calls) -> Path:
    """20 calls of $6 (1M Sonnet 4.5 input tokens each, the long-context rate) on 2026-10-10:
    $120 this month, 12x a $10 budget.

    The folder has a space in its name, so a suggested command must quote its paths."""
    db = tmp_path / "team data" / "usage.duckdb"
    db.parent.mkdir()
    start = dt.datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
    rows = [
        {
            "start_time": start + dt.timedelta(minutes=i),
            "end_time": start + dt.timedelta(minutes=i, seconds=2),
            "input_tokens": 1_000_000,
        }
        for i in range(20)
    ]
    write_calls(db, make_calls(*rows))
    return db


def _config(folder: Path, thresholds: str) -> Path:
    path = folder / "team data" / "budget.toml"
    path.write_text(f'timezone = "UTC"\n[budget]\nmonthly_usd = 10\nthresholds = {thresholds}\n')
    return path


@pytest.mark.parametrize("command", [["budget"], ["alerts", "check", "--dry-run"]])
def test_percent_thresholds_are_refused_with_the_right_spelling(
    overspent: Path, tmp_path: Path, command: list[str]
) -> None:
    # $120 against $10: 80 and 100 "percent" would never be crossed, so nothing would alert.
    config = _config(tmp_path, "[80, 100]")
    result = runner.invoke(
        app, [*command, "--db", str(overspent), "--config", str(config), "--as-of", AS_OF]
    )
    assert result.exit_code == 2, result.output
    assert "thresholds are fractions of the budget: write 0.8 for 80 %, got 80" in result.output


def test_thresholds_up_to_five_times_the_budget_are_accepted(
    overspent: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, "[0.8, 1.0, 5]")
    result = runner.invoke(
        app, ["budget", "--db", str(overspent), "--config", str(config), "--as-of", AS_OF]
    )
    assert result.exit_code == 0, result.output


def test_the_alerts_next_command_runs_when_pasted(
    overspent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "[0.8, 1.0, 1.2]")
    checked = runner.invoke(
        app,
        ["alerts", "check", "--dry-run", "--db", str(overspent), "--config", str(config)]
        + ["--as-of", AS_OF],
    )
    assert checked.exit_code == 1, checked.output  # firing
    nexts = [line for line in checked.output.splitlines() if line.startswith("Next: ")]
    budget_hint = next(line for line in nexts if "clauditor budget" in line)
    command = budget_hint.removeprefix("Next: ").split("; ")[0]
    # Pasted in another folder, where the bare command would find no database and no config.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CLAUDITOR_DB", raising=False)
    monkeypatch.delenv("CLAUDITOR_CONFIG", raising=False)
    argv = shlex.split(command)
    assert argv[0] == "clauditor", command
    pasted = runner.invoke(app, argv[1:])
    assert pasted.exit_code == 0, f"{command}\n{pasted.output}"
    assert "no [budget]" not in pasted.output
    assert "$10.00" in pasted.output  # the budget it was checked against
    assert "$120.00" in pasted.output  # and the month's spend
    # Every suggested clauditor command of every message carries both files.
    for line in nexts:
        for step in line.removeprefix("Next: ").split("; "):
            if step.startswith("clauditor "):
                assert "--db" in shlex.split(step) and "--config" in shlex.split(step), step


@pytest.fixture
def small_amounts(tmp_path: Path, make_calls) -> Path:
    """Six Sonnet 4.5 cache reads a minute apart (a 1h cache TTL would cost more than the 5m
    one: a negative saving), one Haiku 4.5 call of a single input token ($0.000001) and one
    resent call, on 2026-10-10."""
    db = tmp_path / "small.duckdb"
    start = dt.datetime(2026, 10, 10, 12, 0, tzinfo=UTC)

    def at(minute: int, **row: object) -> dict[str, object]:
        moment = start + dt.timedelta(minutes=minute)
        return {"start_time": moment, "end_time": moment + dt.timedelta(seconds=1), **row}

    reads = [at(i, cache_read_input_tokens=100_000, feature="chat") for i in range(6)]
    tiny = at(
        10,
        input_tokens=1,
        request_model="claude-haiku-4-5",
        response_model="claude-haiku-4-5",
        feature="tiny",
        retries=1,
    )
    write_calls(db, make_calls(*reads, tiny))
    return db


def test_money_has_its_sign_first_and_a_tiny_amount_is_not_zero(small_amounts: Path) -> None:
    wide = {"COLUMNS": "250"}
    cache = runner.invoke(app, ["cache", "--db", str(small_amounts), "--as-of", AS_OF], env=wide)
    assert cache.exit_code == 0, cache.output
    assert "-$0.2250" in cache.output  # the 1h TTL's (negative) saving
    assert "$-" not in cache.output
    costs = runner.invoke(app, ["costs", "--db", str(small_amounts), "--as-of", AS_OF], env=wide)
    assert costs.exit_code == 0, costs.output
    (tiny,) = [line for line in costs.output.splitlines() if "│ tiny" in line]
    assert "$0.0000010" in tiny, tiny  # not $0.0000


def test_the_report_never_shows_a_nonzero_amount_as_zero(tmp_path: Path, make_calls) -> None:
    db = tmp_path / "tiny.duckdb"
    start = dt.datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
    one_token = {
        "start_time": start,
        "end_time": start + dt.timedelta(seconds=1),
        "input_tokens": 1,
        "request_model": "claude-haiku-4-5",
        "response_model": "claude-haiku-4-5",
    }
    write_calls(db, make_calls(one_token))  # $0.000001
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--db", str(db), "--as-of", AS_OF, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 call)" in result.output  # "(… MB, 1 call)", not "1 calls"
    assert "$0.000001 per priced call" in out.read_text(encoding="utf-8")  # not $0.00


def test_query_prints_what_the_sql_returned(small_amounts: Path) -> None:
    sql = "SELECT round(0.000006::DOUBLE, 8) AS cost_usd, 1/3 AS third, 2026 AS year"
    result = runner.invoke(app, ["query", sql, "--db", str(small_amounts)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if "0.000006" in line]
    assert "0.3333333333333333" in row and "2026" in row and "2,026" not in row, row
    assert "$" not in result.output


def test_counts_agree_with_their_noun(small_amounts: Path) -> None:
    result = runner.invoke(
        app, ["audit", "--db", str(small_amounts), "--as-of", AS_OF], env={"COLUMNS": "250"}
    )
    assert result.exit_code in (0, 1), result.output
    assert "1 call resent" in result.output
    assert "1 calls" not in result.output


def test_an_empty_period_says_so_instead_of_listing_zeros(small_amounts: Path) -> None:
    # The 7 days before AS_OF are empty; the 7 days before them hold every call.
    args = ["costs", "--db", str(small_amounts), "--as-of", AS_OF, "--period", "7d"]
    table = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "no calls between" in table.output
    assert "-100" not in table.output and "chat" not in table.output, table.output
    as_json = runner.invoke(app, [*args, "--format", "json"])
    assert as_json.stdout.strip() == "[]", as_json.stdout


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_every_help_shows_whole_sentences_and_flags_without_a_value() -> None:
    import inspect

    import typer

    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert len(commands) > 15
    for path, command in [((), root), *commands]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, f"clauditor {' '.join(path)} --help"
        doc = inspect.getdoc(command.callback) if command.callback else None
        for paragraph in (doc or "").split("\n\n")[1:]:
            line = " ".join(paragraph.split())
            if len(line) < 180:  # fits on one line of a 200-column terminal
                lines = [" ".join(out_line.split()) for out_line in result.output.splitlines()]
                assert any(line in out_line for out_line in lines), (path, line)
