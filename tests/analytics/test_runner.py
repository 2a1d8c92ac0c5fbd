"""The runner: every job from the engine's reductions, on the committed sample (the budget jobs
equal to their per-call twins) and on hand-made calls (figures worked out beside each test),
from each kind of source."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clauditor.analytics.budget import budget_status, threshold_crossings
from clauditor.analytics.periods import Period
from clauditor.analytics.runner import run_jobs
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
    return calls, run_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.fixture(scope="module")
def new_york(sample):
    # Days cut in a zone whose offset changes inside the sample (summer time ends 2026-11-01).
    db, calls, config = sample
    config = dataclasses.replace(config, timezone="America/New_York")
    return calls, run_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.fixture(scope="module")
def kolkata(sample):
    # 30 minutes off UTC: local days and months come from 15-minute slots.
    db, calls, config = sample
    config = dataclasses.replace(config, timezone="Asia/Kolkata")
    return calls, run_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.fixture(scope="module")
def kathmandu(sample):
    db, calls, config = sample
    config = dataclasses.replace(config, timezone="Asia/Kathmandu")
    return calls, run_jobs(db, None, config=config, as_of=AS_OF), config


@pytest.mark.parametrize("run", ["both", "new_york", "kolkata", "kathmandu"])
def test_the_budget_jobs_match_their_per_call_twins(
    run: str, request: pytest.FixtureRequest
) -> None:
    calls, got, config = request.getfixturevalue(run)
    tz, budget = config.timezone, config.budget
    expected = {
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
    }
    # The other jobs have no per-call twin: they are tested through the runner on hand-made
    # calls with figures worked out beside them (test_costs.py, test_cache.py, test_failure.py,
    # test_audit.py, test_latency.py, test_errors.py, test_spikes.py, below) and on the sample
    # (test_sample_incidents.py).
    assert set(got) - set(expected) == {
        "cost_breakdown", "spend_by_day", "cache_economics", "caching_candidates",
        "cost_of_failure", "audit", "retry_amplification", "spike_episodes",
        "latency_percentiles", "error_windows", "error_episodes", "cache_hit_ratio_series",
        "cache_regressions",
    }  # fmt: skip
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


@pytest.mark.parametrize(
    ("zone", "whole"),
    [("UTC", True), ("Europe/Berlin", True), ("America/St_Johns", False),
     ("Asia/Kolkata", False), ("Australia/Lord_Howe", False)],
)  # fmt: skip
def test_the_grain_is_an_hour_only_in_whole_hour_zones(zone: str, whole: bool) -> None:
    from clauditor.analytics.rollup import grain_for

    # A year: Lord Howe is +11 (whole) in its summer, +10:30 in its winter.
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert grain_for(zone, start, start + dt.timedelta(days=365)) == (60 if whole else 15)
    if zone == "Australia/Lord_Howe":  # its summer alone is whole hours
        assert grain_for(zone, start, start + dt.timedelta(days=30)) == 60


# Hand-made calls, run on the production path (the runner on a registered frame), with the
# expected figures worked out beside each test.


def _calls(rows: list[dict]) -> pl.DataFrame:
    """Calls with defaults for what a test does not set (a successful chat call of feature a)."""
    base = {"feature": "a", "request_model": "claude-sonnet-4-5", "operation": "chat",
            "status": "ok", "source": "sdk", "input_tokens": 10, "output_tokens": 5}  # fmt: skip
    frame = pl.DataFrame([base | r for r in rows])
    return frame.with_columns(pl.col("start_time").dt.replace_time_zone("UTC"))


def _at(day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute)


# UTC 18:00, 18:20, 18:40 on the 10th and 19:10: in Kolkata (+5:30) 23:30, 23:50 on the 10th,
# 00:10 and 00:40 on the 11th. One UTC hour (18:00-19:00) holds calls of both local days.
MIDNIGHT_CALLS = [
    {"start_time": _at(10, 18, 0), "cost_usd": 1.0},
    {"start_time": _at(10, 18, 20), "cost_usd": 2.0},
    {"start_time": _at(10, 18, 40), "cost_usd": 4.0},
    {"start_time": _at(10, 19, 10), "cost_usd": 8.0},
]


@pytest.mark.parametrize(
    ("zone", "days"),
    [
        # Kolkata: $1 + $2 on the 10th (23:30, 23:50), $4 + $8 on the 11th (00:10, 00:40).
        ("Asia/Kolkata", {dt.date(2026, 11, 10): (2, 3.0), dt.date(2026, 11, 11): (2, 12.0)}),
        # Kathmandu (+5:45): 23:45, 00:05, 00:25, 00:55: $1 on the 10th, $2 + $4 + $8 after.
        ("Asia/Kathmandu", {dt.date(2026, 11, 10): (1, 1.0), dt.date(2026, 11, 11): (3, 14.0)}),
        # UTC: all four on the 10th.
        ("UTC", {dt.date(2026, 11, 10): (4, 15.0)}),
    ],
)
def test_spend_by_day_cuts_local_days_in_zones_off_whole_hours(zone: str, days: dict) -> None:
    config = dataclasses.replace(load_config(SAMPLE / "clauditor.toml"), timezone=zone)
    got = run_jobs(_calls(MIDNIGHT_CALLS), None, config=config, as_of=AS_OF, jobs=["spend_by_day"])[
        "spend_by_day"
    ]
    assert {r["day"]: (r["calls"], r["cost_usd"]) for r in got.iter_rows(named=True)} == days


def test_cost_per_local_hour_in_a_45_minute_zone() -> None:
    from clauditor.analytics.runner import costs_table

    # Kathmandu local hours: 23:00 holds 23:45 ($1); 00:00 holds 00:05, 00:25, 00:55 ($14).
    period = Period(
        dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 12, tzinfo=dt.UTC), "2d"
    )
    got = costs_table(_calls(MIDNIGHT_CALLS), period, [], every="hour", tz="Asia/Kathmandu")
    local = [
        (r["bucket"].strftime("%d %H:%M"), r["calls"], r["cost_usd"])
        for r in got.iter_rows(named=True)
    ]
    assert local == [("10 23:00", 1, 1.0), ("11 00:00", 3, 14.0)]


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "UTC"])
def test_budget_crossing_is_the_exact_call_in_any_zone(tmp_path: Path, zone: str) -> None:
    from clauditor.analytics.runner import budget_table

    config = tmp_path / "clauditor.toml"
    config.write_text(f'timezone = "{zone}"\n[budget]\nmonthly_usd = 10\nthresholds = [0.5, 1.0]\n')
    cfg = load_config(config)
    as_of = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    window = Period(dt.datetime(2026, 10, 1, tzinfo=dt.UTC), as_of, "mtd")
    got = budget_table(_calls(MIDNIGHT_CALLS), window, config=cfg, as_of=as_of).row(0, named=True)
    # Running spend 1, 3, 7 (>= $5: 50 % at 18:40), 15 (>= $10: 100 % at 19:10, UTC).
    assert got["spent_usd"] == 15.0 and got["thresholds_crossed"] == [0.5, 1.0]
    assert got["crossed_at"] == dt.datetime(2026, 11, 10, 19, 10, tzinfo=dt.UTC)


def test_latency_quantiles_interpolate_linearly() -> None:
    from clauditor.analytics.runner import latency_table

    rows = [{"start_time": _at(10, 12, m), "duration_ms": d} for m, d in
            [(0, 100.0), (1, 200.0), (2, 300.0), (3, 400.0)]]  # fmt: skip
    rows.append({"start_time": _at(10, 12, 4), "duration_ms": 9000.0, "status": "error"})
    period = Period(
        dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 11, tzinfo=dt.UTC), "1d"
    )
    got = latency_table(_calls(rows), period, ["feature"], every=None).row(0, named=True)
    # The failed call is left out. Positions (n - 1) q over 100..400: 1.5 -> 250,
    # 2.85 -> 300 + 0.85 x 100 = 385, 2.97 -> 397.
    assert got["calls"] == 4
    assert got["duration_p50_ms"] == pytest.approx(250.0, abs=1e-9)
    assert got["duration_p95_ms"] == pytest.approx(385.0, abs=1e-9)
    assert got["duration_p99_ms"] == pytest.approx(397.0, abs=1e-9)
    assert got["streamed_calls"] == 0 and got["ttft_p50_ms"] is None


def test_cost_of_failure_and_retries_from_hand_made_calls() -> None:
    config = load_config(SAMPLE / "clauditor.toml")
    rows = [
        {"start_time": _at(10, 12, 0), "cost_usd": 0.5, "status": "error", "http_status": 500},
        {"start_time": _at(10, 12, 1), "cost_usd": 1.0, "stop_reason": "max_tokens", "retries": 2},
        {"start_time": _at(10, 12, 2), "cost_usd": 2.0, "stream": True},
        {"start_time": _at(10, 12, 3), "cost_usd": 4.0, "stop_reason": "end_turn", "retries": 1},
    ]
    got = run_jobs(_calls(rows), None, config=config, as_of=AS_OF,
                   jobs=["cost_of_failure", "retry_amplification"])  # fmt: skip
    failure = got["cost_of_failure"].row(0, named=True)
    # Errored $0.5 + truncated $1 + abandoned stream $2 = $3.5 of $7.5 spent.
    assert failure["failure_usd"] == pytest.approx(3.5, abs=1e-9)
    assert failure["failure_share"] == pytest.approx(3.5 / 7.5, abs=1e-9)
    assert (failure["errored_calls"], failure["truncated_calls"], failure["abandoned_calls"]) == (
        1,
        1,
        1,
    )
    retries = got["retry_amplification"].row(0, named=True)
    # 4 calls, 3 resends: 7 attempts, 1.75 per call; 2 calls retried.
    assert (retries["attempts"], retries["retried_calls"]) == (7, 2)
    assert retries["attempts_per_call"] == pytest.approx(1.75, abs=1e-9)


def test_a_frame_a_database_and_a_parquet_folder_give_the_same_jobs(sample, tmp_path: Path) -> None:
    from clauditor.dataset import export_dataset
    from clauditor.store import read_connection

    db, calls, config = sample
    with read_connection(db) as con:
        export_dataset(con, tmp_path / "dataset")
    period = Period(
        dt.datetime(2026, 11, 9, tzinfo=dt.UTC), dt.datetime(2026, 11, 12, tzinfo=dt.UTC), "3d"
    )
    results = [
        run_jobs(source, period, config=config, as_of=period.end)
        for source in (db, tmp_path / "dataset", calls)
    ]
    for other in results[1:]:
        for name, frame in results[0].items():
            assert_frame_equal(other[name], frame, check_exact=False, rel_tol=1e-9), name


def test_unknown_jobs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown job.*'costs'"):
        run_jobs(_calls(MIDNIGHT_CALLS), None, config=load_config(SAMPLE / "clauditor.toml"),
                 as_of=AS_OF, jobs=["costs"])  # fmt: skip


def test_error_windows_of_an_hour_from_minutes() -> None:
    from clauditor.analytics.runner import error_windows_table

    # 12:00-12:59: 8 calls, 2 of them 429s at 12:10 and 12:50; 13:00: 2 calls, no error.
    rows = [{"start_time": _at(10, 12, m)} for m in (0, 5, 20, 30, 40, 55)]
    rows += [
        {"start_time": _at(10, 12, m), "status": "error", "http_status": 429} for m in (10, 50)
    ]
    rows += [{"start_time": _at(10, 13, m)} for m in (0, 30)]
    period = Period(
        dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 11, tzinfo=dt.UTC), "1d"
    )
    got = error_windows_table(_calls(rows), period, window="1h", every="1h")
    limited = got.filter(pl.col("error_class") == "rate_limited")
    # Window 12:00-13:00: 2 of 8 = 0.25; window 13:00-14:00: 0 of 2.
    assert limited["calls"].to_list() == [8, 2] and limited["errors"].to_list() == [2, 0]
    assert limited["error_rate"].to_list() == [pytest.approx(0.25), 0.0]
    assert limited["window_start"].to_list()[0] == dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)


def test_jobs_over_a_period_see_only_its_calls() -> None:
    config = load_config(SAMPLE / "clauditor.toml")
    # Period [10th 00:00, 11th 00:00): the calls at 00:00 on the 10th and 23:59 are in it, the
    # ones at 23:59 on the 9th and 00:00 on the 11th (the end is open) are not.
    inside = [
        {"start_time": _at(10, 0, 0), "cost_usd": 1.0, "cache_read_input_tokens": 1000},
        {"start_time": _at(10, 23, 59), "cost_usd": 2.0, "status": "error", "http_status": 500},
    ]
    outside = [
        {"start_time": _at(9, 23, 59), "cost_usd": 16.0, "cache_read_input_tokens": 5000},
        {"start_time": _at(11, 0, 0), "cost_usd": 32.0, "status": "error", "http_status": 500},
    ]
    period = Period(
        dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 11, tzinfo=dt.UTC), "1d"
    )
    jobs = ["cost_breakdown", "cache_economics", "cost_of_failure", "audit"]
    got = run_jobs(_calls(inside + outside), period, config=config, as_of=period.end, jobs=jobs)
    # $1 + $2 spent by 2 calls; $2 of it on the failed one.
    assert got["cost_breakdown"]["calls"].sum() == 2
    assert got["cost_breakdown"]["cost_usd"].sum() == pytest.approx(3.0, abs=1e-9)
    assert got["cache_economics"]["cache_read_input_tokens"].sum() == 1000
    failure = got["cost_of_failure"].row(0, named=True)
    assert failure["failure_usd"] == pytest.approx(2.0, abs=1e-9)
    assert failure["failure_share"] == pytest.approx(2.0 / 3.0, abs=1e-9)
    audit = {r["item"]: r for r in got["audit"].iter_rows(named=True)}
    assert "1 of 2 calls failed" in audit["error_rate"]["evidence"]
