"""run_all_jobs (DuckDB aggregates, per-call values only where needed) gives the same results
as the per-call jobs on the committed sample."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clauditor.analytics.audit import audit
from clauditor.analytics.budget import budget_status, threshold_crossings
from clauditor.analytics.cache import (
    cache_economics,
    cache_hit_ratio_series,
    cache_regressions,
    caching_candidates,
)
from clauditor.analytics.costs import cost_breakdown, spend_by_day
from clauditor.analytics.errors import error_episodes, error_windows, retry_amplification
from clauditor.analytics.failure import cost_of_failure
from clauditor.analytics.latency import latency_percentiles
from clauditor.analytics.periods import Period
from clauditor.analytics.plan import run_all_jobs
from clauditor.analytics.spikes import spike_episodes
from clauditor.config import load_config
from clauditor.ingest.files import ingest_paths
from clauditor.store import load_calls

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"
AS_OF = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    config = load_config(SAMPLE / "clauditor.toml")
    db = tmp_path_factory.mktemp("plan") / "clauditor.duckdb"
    ingest_paths([SAMPLE / "sample-30d.jsonl.gz"], db, config=config)
    return db, load_calls(db), config


@pytest.fixture(scope="module")
def both(sample):
    db, calls, config = sample
    return calls, run_all_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.fixture(scope="module")
def new_york(sample):
    # Days cut in a zone whose offset changes inside the sample (summer time ends 2026-11-01).
    db, calls, config = sample
    config = dataclasses.replace(config, timezone="America/New_York")
    return calls, run_all_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.mark.parametrize("run", ["both", "new_york"])
def test_every_job_matches_the_per_call_job(run: str, request: pytest.FixtureRequest) -> None:
    calls, got, config = request.getfixturevalue(run)
    tz, budget = config.timezone, config.budget
    expected = {
        "cost_breakdown": cost_breakdown(calls, ["feature", "model"]),
        "spend_by_day": spend_by_day(calls, tz=tz),
        "cache_economics": cache_economics(calls),
        "caching_candidates": caching_candidates(calls),
        "cache_hit_ratio_series": cache_hit_ratio_series(calls),
        "cache_regressions": cache_regressions(calls),
        "error_windows": error_windows(calls),
        "error_episodes": error_episodes(calls),
        "retry_amplification": retry_amplification(calls),
        "latency_percentiles": latency_percentiles(calls, tz=tz),
        "budget_status": budget_status(
            calls,
            monthly_usd=budget.monthly_usd,
            feature_budgets=budget.features,
            thresholds=budget.thresholds,
            as_of=AS_OF,
            tz=tz,
        ),
        "threshold_crossings": threshold_crossings(
            calls, monthly_usd=budget.monthly_usd, thresholds=budget.thresholds, tz=tz
        ),
        "spike_episodes": spike_episodes(calls),
        "cost_of_failure": cost_of_failure(calls),
        "audit": audit(calls, config=config),
    }
    assert set(got) == set(expected)
    for name, frame in expected.items():
        (
            assert_frame_equal(
                got[name], frame, check_exact=False, rel_tol=1e-9, check_dtypes=True
            ),
            name,
        )
    # The sample's planted incidents are in these results (not empty frames).
    assert got["error_episodes"].height and got["spike_episodes"].height
    assert got["threshold_crossings"].height


def test_budget_crossing_times_are_exact_calls(both) -> None:
    calls, got, _ = both
    times = set(calls["start_time"].to_list())
    assert all(t in times for t in got["threshold_crossings"]["crossed_at"].to_list())
    assert not pl.DataFrame(got["budget_status"]).is_empty()


def test_jobs_over_a_period_see_only_its_calls(sample) -> None:
    db, calls, config = sample
    period = Period(start=dt.datetime(2026, 11, 10, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), label="10 days")  # fmt: skip
    got = run_all_jobs(db, period, config=config, as_of=period.end)
    inside = calls.filter(pl.col("start_time").is_between(period.start, period.end, "left"))
    expected = {
        "cost_breakdown": cost_breakdown(inside, ["feature", "model"]),
        "cache_economics": cache_economics(inside),
        "caching_candidates": caching_candidates(inside),
        "error_windows": error_windows(inside),
        "latency_percentiles": latency_percentiles(inside, tz=config.timezone),
        "audit": audit(inside, config=config),
    }
    for name, frame in expected.items():
        assert_frame_equal(got[name], frame, check_exact=False, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("zone", "whole"),
    [("UTC", True), ("Europe/Berlin", True), ("America/St_Johns", False),
     ("Asia/Kolkata", False), ("Australia/Lord_Howe", False)],
)  # fmt: skip
def test_whole_hour_zones(zone: str, whole: bool) -> None:
    from clauditor.analytics.plan import whole_hour_zone

    # A year: Lord Howe is +11 (whole) in its summer, +10:30 in its winter.
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert whole_hour_zone(zone, start, start + dt.timedelta(days=365)) is whole
    if zone == "Australia/Lord_Howe":  # its summer alone is whole hours
        assert whole_hour_zone(zone, start, start + dt.timedelta(days=30))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("by", [[], ["feature"], ["model"], ["feature", "model"]])
@pytest.mark.parametrize("daily", [True, False])
def test_latency_by_any_keys_matches_the_per_call_job(
    sample, zone: str, by: list[str], daily: bool
) -> None:
    from clauditor.analytics.plan import hours_on, latency_from_sql
    from clauditor.store import read_connection

    db, calls, _ = sample
    with read_connection(db) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        got = latency_from_sql(con, None, hours_on(con, None, AS_OF), zone, by=by, daily=daily)
    want = latency_percentiles(calls, by=by, every="1d" if daily else None, tz=zone)
    assert got.height
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9)
