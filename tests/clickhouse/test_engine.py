"""The ClickHouse engine on chDB gives every job DuckDB's answer on the same calls: the
committed sample ingested through the Python path into DuckDB, then inserted into the
ClickHouse ``calls`` table through the same client a server uses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clauditor.analytics.engine import open_engine
from clauditor.analytics.periods import Period
from clauditor.analytics.runner import (
    budget_table,
    cache_tables,
    costs_table,
    errors_tables,
    failures_table,
    latency_table,
    run_jobs,
    spikes_table,
)
from clauditor.clickhouse import connect
from clauditor.clickhouse.ddl import init
from clauditor.clickhouse.engine import insert_calls
from clauditor.config import load_config
from clauditor.ingest.files import ingest_paths
from clauditor.store import load_calls

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"
AS_OF = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
WEEK = Period(
    dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 17, tzinfo=dt.UTC), "week"
)
TOL = {"check_exact": False, "rel_tol": 1e-9, "abs_tol": 1e-9}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory):
    """(DuckDB file, chdb:// URL, config) holding the same calls."""
    root = tmp_path_factory.mktemp("engine")
    config = load_config(SAMPLE / "clauditor.toml")
    db = root / "clauditor.duckdb"
    ingest_paths([SAMPLE / "sample-30d.jsonl.gz"], db, config=config)
    url = f"chdb://{root / 'chdb'}"
    with connect(url) as client:
        init(client)
        insert_calls(client, load_calls(db))
    return db, url, config


def assert_same_jobs(expected: dict[str, pl.DataFrame], got: dict[str, pl.DataFrame]) -> None:
    assert list(got) == list(expected)
    for name, frame in expected.items():
        assert got[name].height == frame.height, name
        assert_frame_equal(got[name], frame, **TOL)  # same columns, dtypes, rows


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_every_job_on_chdb_equals_duckdb(stores, zone: str) -> None:
    db, url, config = stores
    config = dataclasses.replace(config, timezone=zone)
    expected = run_jobs(db, None, config=config, as_of=AS_OF)
    got = run_jobs(url, None, config=config, as_of=AS_OF)
    assert all(frame.height for name, frame in expected.items() if name != "threshold_crossings")
    assert_same_jobs(expected, got)


def test_every_job_of_a_period_equals_duckdb(stores) -> None:
    db, url, config = stores
    config = dataclasses.replace(config, timezone="Asia/Kolkata")
    expected = run_jobs(db, WEEK, config=config, as_of=AS_OF)
    assert (
        expected["cost_breakdown"]["calls"].sum()
        < run_jobs(db, None, config=config, as_of=AS_OF, jobs=["cost_breakdown"])["cost_breakdown"][
            "calls"
        ].sum()
    )
    assert_same_jobs(expected, run_jobs(url, WEEK, config=config, as_of=AS_OF))


def test_each_command_table_equals_duckdb(stores) -> None:
    db, url, config = stores
    tz = "Asia/Kolkata"
    tables = [
        lambda s: costs_table(s, WEEK, ["feature", "model"]),
        lambda s: costs_table(s, WEEK, ["service", "feature"], every="day", tz=tz),
        lambda s: costs_table(s, WEEK, ["model"], every="hour", tz=tz),
        lambda s: cache_tables(s, WEEK, ["feature", "model"]),
        lambda s: cache_tables(s, WEEK, ["service"]),
        lambda s: errors_tables(s, WEEK),
        lambda s: latency_table(s, WEEK, ["feature", "model"], every="1d", tz=tz),
        lambda s: latency_table(s, WEEK, ["service"], every="1h", tz=tz),
        lambda s: latency_table(s, WEEK, [], every=None),
        lambda s: budget_table(
            s, WEEK, config=dataclasses.replace(config, timezone=tz), as_of=WEEK.end
        ),
        lambda s: spikes_table(s, WEEK, "feature"),
        lambda s: failures_table(s, WEEK, ["feature", "model"]),
    ]
    for table in tables:
        expected, got = table(db), table(url)
        for e, g in zip(
            expected if isinstance(expected, tuple) else (expected,),
            got if isinstance(got, tuple) else (got,),
            strict=True,
        ):
            assert_frame_equal(g, e, **TOL)


def test_latency_quantiles_are_exact_not_sampled(tmp_path: Path) -> None:
    # 10,001 distinct durations: ClickHouse's default quantile samples 8,192 of them; the
    # exact interpolated p50/p95/p99 of 0..10000 ms are 5000, 9500 and 9900.
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    n = 10_001
    calls = pl.DataFrame(
        {
            "span_id": [f"s{i}" for i in range(n)],
            "start_time": [start + dt.timedelta(seconds=i) for i in range(n)],
            "duration_ms": [float((i * 7919) % n) for i in range(n)],
            "feature": ["f"] * n,
            "request_model": ["claude-sonnet-4-5"] * n,
        }
    )
    url = f"chdb://{tmp_path / 'chdb'}"
    with connect(url) as client:
        init(client)
        insert_calls(client, calls)
    day = Period(start, start + dt.timedelta(days=1), "day")
    with open_engine(calls) as duck, open_engine(url) as ch:
        for engine in (duck, ch):
            hours = engine.rollup(day, as_of=day.end)
            row = engine.latency(day, hours, tz="UTC", by=[], every=None).row(0, named=True)
            assert (row["duration_p50_ms"], row["duration_p95_ms"], row["duration_p99_ms"]) == (
                5000.0,
                9500.0,
                9900.0,
            )
            assert row["ttft_p50_ms"] is None and row["streamed_calls"] == 0


def test_a_resent_call_is_counted_once(stores, tmp_path: Path) -> None:
    # Inserting every call a second time (a re-sent span of the same response id) changes no
    # job: the engine reads calls FINAL.
    db, _, config = stores
    url = f"chdb://{tmp_path / 'twice'}"
    calls = load_calls(db)
    with connect(url) as client:
        init(client)
        insert_calls(client, calls)
        insert_calls(client, calls)
        assert client.rows("SELECT count() FROM clauditor.calls")[0][0] >= calls.height
    jobs = ["cost_breakdown", "latency_percentiles", "cache_economics", "audit"]
    assert_same_jobs(
        run_jobs(db, None, config=config, as_of=AS_OF, jobs=jobs),
        run_jobs(url, None, config=config, as_of=AS_OF, jobs=jobs),
    )


def test_runs_of_unpriced_calls_are_the_same_on_both_engines(tmp_path: Path) -> None:
    # An unknown model's calls at 10:00, 10:05 and 12:00, unpriced (cost NULL), and one priced
    # call between them that never counts: with runs broken by gaps over an hour, 10:00-10:05
    # is one run of 2 calls and 12:00 a run of 1 (12:00 - 10:05 = 1h55 > 1h).
    def at(hour: int, minute: int) -> dt.datetime:
        return dt.datetime(2026, 11, 3, hour, minute, tzinfo=dt.UTC)

    times = [at(10, 0), at(10, 5), at(11, 0), at(12, 0)]
    calls = pl.DataFrame(
        {
            "span_id": [f"{i:016x}" for i in range(1, 5)],
            "trace_id": [f"{i:032x}" for i in range(1, 5)],
            "start_time": times,
            "end_time": times,
            "source": ["clauditor"] * 4,
            "request_model": ["claude-unknown-9", "claude-unknown-9", "claude-haiku-4-5",
                              "claude-unknown-9"],
            "status": ["ok"] * 4,
            "cost_usd": [None, None, 0.01, None],
        }
    )  # fmt: skip
    url = f"chdb://{tmp_path / 'unpriced'}"
    with connect(url) as client:
        init(client)
        insert_calls(client, calls)
    expected = pl.DataFrame(
        {
            "model": ["claude-unknown-9", "claude-unknown-9"],
            "first": [at(10, 0), at(12, 0)],
            "last": [at(10, 5), at(12, 0)],
            "calls": [2, 1],
        }
    )
    gap = dt.timedelta(hours=1)
    with open_engine(calls, sources=None) as duck:
        assert_frame_equal(duck.unpriced_runs(None, gap), expected, check_dtypes=False)
    with open_engine(url, sources=None) as engine:
        assert_frame_equal(engine.unpriced_runs(None, gap), expected, check_dtypes=False)
