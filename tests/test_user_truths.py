"""What a user reads is what was billed (issue 16): hand-computed through the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import write_calls

runner = CliRunner()
UTC = dt.UTC
DAY = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def run_json(*args: str) -> list[dict]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("by", ["feature", "feature,service"])  # aggregates and per-call paths
def test_failures_count_only_billed_dollars(db_path: Path, make_calls, by: str) -> None:
    write_calls(db_path, make_calls(
        # Succeeded after three 529s: Anthropic billed only the last attempt. 1,000 in x $3/M
        # = $0.003 spent, $0 lost (the old estimate said 3 x $0.003 = $0.009 lost).
        dict(feature="chat", retries=3, start_time=DAY),
        # Rejected with 529 after its retries: no tokens, not billed, $0.
        dict(feature="chat", status="error", error_type="overloaded_error", http_status=529,
             input_tokens=0, retries=2, start_time=DAY),
        # A stream that broke after 1,000 output tokens was billed: 1,000 x $3/M + 1,000 x
        # $15/M = $0.018 lost.
        dict(feature="chat", status="error", error_type="api_error", http_status=500,
             output_tokens=1000, start_time=DAY),
        # Cut off at max_tokens: $0.003 + $0.015 = $0.018 lost.
        dict(feature="chat", output_tokens=1000, stop_reason="max_tokens", max_tokens=1000,
             start_time=DAY),
        # A stream the app dropped after 500 output tokens (no stop reason, no error): billed
        # $0.003 + 500 x $15/M = $0.0105, never read to its end.
        dict(feature="chat", stream=True, output_tokens=500, stop_reason=None, start_time=DAY),
        # A stream read to its end: nothing lost.
        dict(feature="chat", stream=True, output_tokens=500, stop_reason="end_turn",
             start_time=DAY),
    ))  # fmt: skip
    row = run_json("failures", "--by", by, "--db", str(db_path), "--period", "2026-11-02")[0]
    assert row["failure_usd"] == pytest.approx(0.0465, abs=1e-9)  # 0.018 + 0.018 + 0.0105
    assert row["errored_usd"] == pytest.approx(0.018, abs=1e-9)
    assert row["abandoned_calls"] == 1
    assert row["abandoned_usd"] == pytest.approx(0.0105, abs=1e-9)
    assert row["retries"] == 5 and "retry_usd" not in row


@pytest.mark.parametrize("by", ["feature", "feature,service"])  # aggregates and per-call paths
def test_count_tokens_calls_are_counted_apart(db_path: Path, make_calls, by: str) -> None:
    write_calls(db_path, make_calls(
        # Three chat calls, 1,000 in x $3/M = $0.003 each: $0.009, $0.003 per call.
        *[dict(feature="chat", start_time=DAY) for _ in range(3)],
        # Two count_tokens calls: free, and no generation.
        *[dict(feature="chat", operation="count_tokens", input_tokens=5_000, start_time=DAY)
          for _ in range(2)],
    ))  # fmt: skip
    row = run_json("costs", "--by", by, "--db", str(db_path), "--period", "2026-11-02")[0]
    assert row["calls"] == 3 and row["count_tokens_calls"] == 2
    assert row["cost_usd"] == pytest.approx(0.009, abs=1e-9)
    out = db_path.parent / "report.html"
    result = runner.invoke(app, ["report", "--db", str(db_path), "--period", "2026-11-02",
                                 "--as-of", "2026-11-03T00:00:00Z", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # The Calls card: 3 calls, $0.009 / 3 = $0.003 per priced call, the free ones apart.
    assert '<div class="card-value">3</div>' in page
    assert "$0.003 per priced call" in page and "+ 2 free count_tokens calls" in page


def test_count_tokens_failures_are_not_in_error_rates(db_path: Path, make_calls) -> None:
    # 20 minutes: a chat call every 6 s, all fine, and a count_tokens call every 6 s that hits
    # 429. Counted together that is a 50 % error episode (what main reported); the generation
    # calls' error rate is 0: no episode.
    write_calls(db_path, make_calls(
        *[dict(feature="chat", start_time=DAY + dt.timedelta(seconds=6 * i)) for i in range(200)],
        *[dict(feature="chat", operation="count_tokens", status="error",
               error_type="rate_limit_error", http_status=429, input_tokens=0,
               start_time=DAY + dt.timedelta(seconds=6 * i + 1)) for i in range(200)],
    ))  # fmt: skip
    assert run_json("errors", "--db", str(db_path), "--period", "2026-11-02") == []


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])  # whole-hour (aggregates) and half-hour
def test_forecast_early_in_a_deployment_uses_the_partial_day(
    db_path: Path, make_calls, tmp_path: Path, tz: str
) -> None:
    # First calls ever at 09:00 local on 2026-11-10, three hours before as_of 12:00 local:
    # 20 Sonnet 4.5 calls of 1,000 in = 20 x $0.003 = $0.06. Rate: $0.06 / (3/24 day) = $0.48 a
    # day. To come: half of today + 20 days (11th..30th) = 20.5 days x $0.48 = $9.84; forecast
    # $0.06 + $9.84 = $9.90 (main said a $0.00 run rate and forecast the $0.06 already spent).
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    first = dt.datetime(2026, 11, 10, 9, 0, tzinfo=zone)
    write_calls(db_path, make_calls(
        *[dict(start_time=first + dt.timedelta(minutes=9 * i)) for i in range(20)]
    ))  # fmt: skip
    config = tmp_path / "clauditor.toml"
    config.write_text(f'timezone = "{tz}"\n[budget]\nmonthly_usd = 100\n')
    total = run_json("budget", "--db", str(db_path), "--config", str(config),
                     "--as-of", "2026-11-10T12:00:00")[0]  # fmt: skip
    assert total["spent_usd"] == pytest.approx(0.06, abs=1e-9)
    assert total["run_rate_usd"] == pytest.approx(0.48, abs=1e-9)
    assert total["forecast_usd"] == pytest.approx(9.90, abs=1e-9)
    # So little is known that the interval is wide: at least half the forecast either way.
    assert total["forecast_high_usd"] >= 1.5 * total["forecast_usd"]
    assert total["forecast_low_usd"] <= 0.5 * total["forecast_usd"]


def test_report_and_budget_name_the_same_crossing_moment(
    db_path: Path, make_calls, tmp_path: Path
) -> None:
    # Budget $1.00; three Sonnet 4.5 calls of 100,000 in x $3/M = $0.30 each at 20:00:10,
    # 20:01:20 and 20:02:36: the third takes the month to $0.90, past 80 % ($0.80) at 20:02:36.
    # The report summed quarter hours and stamped them with their first call (20:00).
    at = [dt.datetime(2026, 11, 2, 20, 0, 10, tzinfo=UTC), dt.datetime(2026, 11, 2, 20, 1, 20,
          tzinfo=UTC), dt.datetime(2026, 11, 2, 20, 2, 36, tzinfo=UTC)]  # fmt: skip
    write_calls(db_path, make_calls(*[dict(start_time=t, input_tokens=100_000) for t in at]))
    config = tmp_path / "clauditor.toml"
    config.write_text("[budget]\nmonthly_usd = 1.0\n")
    common = ["--db", str(db_path), "--config", str(config), "--as-of", "2026-11-02T21:00:00Z"]
    total = run_json("budget", *common)[0]
    assert total["crossed_at"].startswith("2026-11-02T20:02:36")
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", *common, "--period", "today", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "passed 80% on Nov 02 20:02" in out.read_text()


def test_backtest_title_names_the_severity_it_reached(
    db_path: Path, make_calls, tmp_path: Path
) -> None:
    # Budget $1.00: $0.90 at 10:05 (80 % crossed), then $0.36 more at 11:05 ($1.26: 120 %).
    # Each call: 300,000 / 120,000 in x $3/M.
    write_calls(db_path, make_calls(
        dict(start_time=dt.datetime(2026, 11, 2, 10, 5, tzinfo=UTC), input_tokens=300_000),
        dict(start_time=dt.datetime(2026, 11, 2, 11, 5, tzinfo=UTC), input_tokens=120_000),
    ))  # fmt: skip
    config = tmp_path / "clauditor.toml"
    config.write_text("[budget]\nmonthly_usd = 1.0\n")
    rows = run_json("alerts", "backtest", "--db", str(db_path), "--config", str(config),
                    "--since", "2026-11-02", "--as-of", "2026-11-03T00:00:00Z")  # fmt: skip
    budget = [r for r in rows if r["rule"] == "budget"]
    assert [(r["severity"], r["title"]) for r in budget] == [
        ("120%", "Budget 120% reached: the whole account")
    ]


def test_error_chart_draws_the_rate_it_labels() -> None:
    from clauditor.dashboards.figures import error_rate_figure

    day = dt.datetime(2026, 11, 9)
    # 3-hour buckets average a 45-minute storm of 37 % down to ~10 %; the episode's own rate is
    # drawn over its span, and that is the number on the label.
    windows = pl.DataFrame(
        {
            "time": [day.replace(hour=h) for h in (12, 15, 18)],
            "error_class": ["overloaded"] * 3,
            "error_rate": [0.0, 0.1, 0.0],
        }
    )
    episodes = pl.DataFrame({"start": [day.replace(hour=14)],
                             "end": [day.replace(hour=14, minute=45)],
                             "error_class": ["overloaded"], "error_rate": [0.368]})  # fmt: skip
    fig = error_rate_figure(windows, episodes, threshold=0.05)
    drawn = [t for t in fig.data if t.name == "error episode"]
    assert len(drawn) == 1 and list(drawn[0].y) == [0.368, 0.368]
    labels = [a.text for a in fig.layout.annotations if "overloaded" in (a.text or "")]
    assert labels == ["overloaded 37% for 45 min"]


def test_views_count_count_tokens_calls_apart(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls(
        # 3 chat calls x $0.003 (1,000 in x $3/M); 2 free count_tokens calls.
        *[dict(feature="chat", start_time=DAY) for _ in range(3)],
        *[dict(feature="chat", operation="count_tokens", start_time=DAY) for _ in range(2)],
    ))  # fmt: skip
    (row,) = run_json("query", "SELECT calls, count_tokens_calls, cost_usd, cost_per_call_usd "
                               "FROM feature_costs", "--db", str(db_path))  # fmt: skip
    assert (row["calls"], row["count_tokens_calls"]) == (3, 2)
    assert row["cost_per_call_usd"] == pytest.approx(0.003, abs=1e-12)  # $0.009 / 3
    (day,) = run_json("query", "SELECT calls, count_tokens_calls FROM daily_costs",
                      "--db", str(db_path))  # fmt: skip
    assert (day["calls"], day["count_tokens_calls"]) == (3, 2)
