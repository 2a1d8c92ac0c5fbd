"""What a new user sees is true: thresholds, pasted hints and the numbers the CLI prints."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

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
