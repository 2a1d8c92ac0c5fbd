"""`clauditor costs` and `clauditor budget` keep developers' Claude Code usage apart from the
app's: left out by default with a line saying how much, shown with --source claude-code, and
never spend when Claude Code runs on a subscription."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.ingest import ingest_paths

from .ingest.claude_code_fixtures import collector_logs_line
from .ingest.receiver_support import call_attributes, json_request, json_span

runner = CliRunner()
AS_OF = "2026-09-22T00:00:00Z"
# The app's one call: claude-sonnet-4-5, 1,000 input x $3/MTok + 100 output x $15/MTok
# = $0.003 + $0.0015 = $0.0045.
APP_USD = 1_000 * 3 / 1e6 + 100 * 15 / 1e6
# Claude Code's three events (default 5m TTL for its cache writes), claude-opus-4-8:
# 1,000 x $5 + 200 x $25 = $0.01; 100 x $5 + 50 x $25 + 2,000 x $0.50 + 1,000 x $6.25
# = $0.009; the failed request has no tokens. Together $0.019.
CLAUDE_CODE_USD = (1_000 * 5 + 200 * 25) / 1e6 + (
    100 * 5 + 50 * 25 + 2_000 * 0.5 + 1_000 * 6.25
) / 1e6


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("claude-code-costs")
    export = folder / "mixed.jsonl"
    app_call = json_request([json_span(call_attributes(clauditor__user_id="app-user-7"))])
    export.write_text(json.dumps(app_call) + "\n" + collector_logs_line() + "\n")
    path = folder / "calls.duckdb"
    ingest_paths([export], path)
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clauditor.toml"
    path.write_text(text)
    return path


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _json(*args: str) -> list[dict]:
    return json.loads(_run(*args, "--format", "json"))


def test_costs_by_user_shows_the_apps_users_only_and_says_what_was_left_out(db: Path) -> None:
    rows = _json("costs", "--by", "user", "--db", str(db), "--period", "7d", "--as-of", AS_OF)
    assert [r["user"] for r in rows] == ["app-user-7"]
    assert rows[0]["cost_usd"] == pytest.approx(APP_USD)  # = 0.0045

    text = _run("costs", "--by", "user", "--db", str(db), "--period", "7d", "--as-of", AS_OF)
    assert "dev@example.com" not in text
    assert "Claude Code (developers, 3 calls): $0.02 of spend left out" in text
    assert "--source claude-code" in text


def test_source_claude_code_shows_its_calls_priced(db: Path) -> None:
    rows = _json(
        "costs", "--source", "claude-code", "--db", str(db), "--period", "7d", "--as-of", AS_OF
    )
    assert [(r["feature"], r["calls"]) for r in rows] == [("code-review", 3)]
    assert rows[0]["cost_usd"] == pytest.approx(CLAUDE_CODE_USD)  # = 0.019
    every = _json("costs", "--source", "all", "--db", str(db), "--period", "7d", "--as-of", AS_OF)
    assert sum(r["cost_usd"] for r in every) == pytest.approx(APP_USD + CLAUDE_CODE_USD)


def test_a_subscription_shows_usage_and_no_spend(db: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path, '[claude_code]\nbilling = "subscription"\n[budget]\nmonthly_usd = 100\n'
    )
    common = ("--db", str(db), "--as-of", AS_OF, "--config", str(config))
    text = _run("costs", "--period", "7d", *common)
    assert "$0.02 at list price, included in the subscription, not spend" in text

    mine = _run("costs", "--source", "claude-code", "--period", "7d", *common)
    assert "List-price equivalent (subscription, not spend)" in mine
    assert "code-review" in mine and "1,100" in mine  # the tokens are shown

    budget = json.loads(_run("budget", *common, "--format", "json"))
    total = next(r for r in budget if r["scope"] == "total")
    assert total["spent_usd"] == pytest.approx(APP_USD)  # Claude Code's dollars are not spend
    assert "included in the subscription" in _run("budget", *common)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])  # hour sums, and the calls themselves
def test_budget_on_api_billing_keeps_claude_code_apart_too(
    db: Path, tmp_path: Path, zone: str
) -> None:
    config = _config(tmp_path, f'timezone = "{zone}"\n[budget]\nmonthly_usd = 100\n')
    common = ("--db", str(db), "--as-of", AS_OF, "--config", str(config))
    total = next(
        r for r in json.loads(_run("budget", *common, "--format", "json")) if r["scope"] == "total"
    )
    assert total["spent_usd"] == pytest.approx(APP_USD)
    assert "$0.02 of spend left out" in _run("budget", *common)


def test_an_unknown_source_is_a_clear_error(db: Path) -> None:
    result = runner.invoke(app, ["costs", "--source", "claude", "--db", str(db)])
    assert result.exit_code == 2
    assert "unknown source(s) ['claude']" in result.output


def test_the_reports_and_alerts_jobs_leave_claude_code_out_unless_asked(db: Path) -> None:
    """The report and the alerts run their jobs through run_all_jobs: it sees the app's calls
    only by default, every call when asked."""
    import datetime as dt

    from clauditor.analytics.costs import SourceFilter
    from clauditor.analytics.periods import resolve_period
    from clauditor.analytics.runner import run_jobs as run_all_jobs
    from clauditor.config import Config

    period = resolve_period("7d", as_of=dt.datetime(2026, 9, 22, tzinfo=dt.UTC))
    jobs = run_all_jobs(db, period, config=Config(), as_of=period.end)
    # latency runs on a cursor of its own: it must see the same calls as the rest
    for name in ("cost_breakdown", "latency_percentiles", "cache_economics"):
        assert jobs[name]["feature"].cast(str).to_list() == ["search"], name
    assert jobs["cost_breakdown"]["cost_usd"].sum() == pytest.approx(APP_USD)
    every = run_all_jobs(db, period, config=Config(), as_of=period.end, sources=SourceFilter())
    assert sorted(every["latency_percentiles"]["feature"].cast(str).to_list()) == [
        "code-review",
        "search",
    ]
    assert jobs["cost_breakdown"]["calls"].sum() == 1
    assert every["cost_breakdown"]["calls"].sum() == 4


def test_the_report_shows_the_apps_calls_only(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _run("report", "--db", str(db), "--out", str(out), "--period", "7d", "--as-of", AS_OF)
    html = out.read_text()
    assert "search" in html
    assert "code-review" not in html and "dev@example.com" not in html
