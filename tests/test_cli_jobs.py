"""The analytics and alert commands on the committed sample, as a user runs them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.ingest import ingest_paths

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
AS_OF = "2026-10-31T00:00:00Z"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("jobs") / "sample.duckdb"
    ingest_paths([SAMPLE / "sample-30d.jsonl.gz"], db)
    return db


def run_json(*args: str) -> list[dict]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_errors_finds_the_529_storm(sample_db: Path) -> None:
    rows = run_json("errors", "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
    overloaded = [r for r in rows if r["error_class"] == "overloaded"]
    assert len(overloaded) == 1
    assert overloaded[0]["start"].startswith("2026-10-09T14:00")


def test_spikes_finds_the_runaway_loop(sample_db: Path) -> None:
    rows = run_json("spikes", "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
    agent = [r for r in rows if r["key"] == "agent-tools"]
    assert len(agent) == 1 and agent[0]["start"].startswith("2026-10-16T01:00")


def test_budget_uses_the_config(sample_db: Path) -> None:
    rows = run_json(
        "budget", "--db", str(sample_db), "--as-of", "2026-10-25T00:00:00Z",
        "--config", str(SAMPLE / "clauditor.toml"),
    )  # fmt: skip
    total = next(r for r in rows if r["scope"] == "total")
    assert total["budget_usd"] == 890.0
    assert 0.8 in total["thresholds_crossed"] and 1.0 not in total["thresholds_crossed"]


def test_audit_latency_cache_failures_run(sample_db: Path) -> None:
    for command in ("audit", "latency", "cache", "failures"):
        rows = run_json(command, "--db", str(sample_db), "--period", "30d", "--as-of", AS_OF)
        assert rows, f"{command} printed nothing"


@pytest.mark.parametrize("period", ["30d", "2026-10-09..2026-10-10", "2020-01-01..2020-01-02"])
def test_audit_command_equals_the_per_call_audit(sample_db: Path, period: str) -> None:
    # The command reads DuckDB aggregates, not the calls: the scorecard must be the one the
    # per-call audit gives on the same period (the last period holds no calls at all).
    import datetime as dt

    from clauditor._cli_common import resolve_config
    from clauditor.analytics import resolve_period
    from clauditor.analytics.audit import audit
    from clauditor.analytics.frame import load_analytics_frame

    config = resolve_config(None)
    span = resolve_period(period, as_of=dt.datetime(2026, 10, 31, tzinfo=dt.UTC), tz="UTC")
    want = audit(load_analytics_frame(sample_db, span), config=config).rows(named=True)
    got = run_json("audit", "--db", str(sample_db), "--period", period, "--as-of", AS_OF)
    assert [(r["item"], r["status"], r["evidence"]) for r in got] == [
        (r["item"], r["status"], r["evidence"]) for r in want
    ]
    for mine, theirs in zip(got, want, strict=True):
        assert mine["usd_at_stake"] == pytest.approx(theirs["usd_at_stake"], rel=1e-9)
    if period.startswith("2020"):
        assert {r["status"] for r in got} == {"n/a"}


def test_job_commands_group_by_keys_outside_the_jobs_own_columns(sample_db: Path) -> None:
    # The commands read a lean frame; the --by keys' columns (service, environment, user,
    # code location) must come along: the groups and counts are those the jobs give on
    # whole rows.
    import datetime as dt

    from clauditor.analytics import load_calls_in, resolve_period
    from clauditor.analytics.cache import cache_economics
    from clauditor.analytics.failure import cost_of_failure

    span = resolve_period("30d", as_of=dt.datetime(2026, 10, 31, tzinfo=dt.UTC), tz="UTC")
    whole = load_calls_in(sample_db, span)
    base = ["--db", str(sample_db), "--period", "30d", "--as-of", AS_OF]

    cache = run_json("cache", "--by", "service,user", *base)
    want = cache_economics(whole, by=["service", "user"])
    assert {(r["service"], r["user"]): r["calls"] for r in cache} == {
        (r["service"], r["user"]): r["calls"] for r in want.iter_rows(named=True)
    }
    assert len(cache) > 100

    failures = run_json("failures", "--by", "environment,code_location", *base)
    want = cost_of_failure(whole, by=["environment", "code_location"])
    assert {(r["environment"], r["code_location"]): r["calls"] for r in failures} == {
        (r["environment"], r["code_location"]): r["calls"] for r in want.iter_rows(named=True)
    }
    assert len(failures) > 3


def test_alerts_dry_run_prints_and_changes_nothing(sample_db: Path) -> None:
    before = hashlib.sha256(sample_db.read_bytes()).hexdigest()
    result = runner.invoke(
        app,
        ["alerts", "check", "--dry-run", "--db", str(sample_db), "--as-of", AS_OF,
         "--config", str(SAMPLE / "clauditor.toml")],
    )  # fmt: skip
    assert result.exit_code == 1  # alerts are firing at the end of the sample month
    assert "[FIRING] Budget" in result.stdout and "dry run" in result.stdout
    assert hashlib.sha256(sample_db.read_bytes()).hexdigest() == before


def test_alerts_backtest_lists_each_planted_incident_once(sample_db: Path) -> None:
    rows = run_json(
        "alerts", "backtest", "--db", str(sample_db), "--since", "30d", "--as-of", AS_OF,
        "--config", str(SAMPLE / "clauditor.toml"),
    )  # fmt: skip
    rules = [(r["rule"], r["key"]) for r in rows]
    assert rules.count(("spike", "agent-tools")) == 1
    assert sum(1 for rule, key in rules if rule == "error_rate" and "overloaded" in key) == 1
    assert sum(1 for rule, key in rules if rule == "cache" and "support-chat" in key) == 1
    assert sum(1 for rule, _ in rules if rule == "unpriced_model") == 1
