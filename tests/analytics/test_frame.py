"""The lean analytics frame gives every job the same answers as the plain ``calls`` frame.

The committed sample is ingested into a real DuckDB file, read once with ``load_calls`` (every
column, plain strings) and once with ``load_analytics_frame`` (coded Categorical strings,
derived keys); each job must return the same frame from both, and the audit must return the
same scorecard when handed the job results instead of running them itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clauditor.analytics.audit import audit
from clauditor.analytics.budget import budget_status, daily_spend, threshold_crossings
from clauditor.analytics.cache import (
    cache_economics,
    caching_candidates,
)
from clauditor.analytics.costs import cost_breakdown
from clauditor.analytics.failure import cost_of_failure
from clauditor.analytics.frame import load_analytics_frame, prepare_calls
from clauditor.analytics.periods import resolve_period
from clauditor.config import load_config
from clauditor.ingest.files import ingest_paths
from clauditor.store import load_calls

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"
AS_OF = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frame") / "clauditor.duckdb"
    ingest_paths(
        [SAMPLE / "sample-30d.jsonl.gz"], path, config=load_config(SAMPLE / "clauditor.toml")
    )
    return path


@pytest.fixture(scope="module")
def plain(db: Path) -> pl.DataFrame:
    return load_calls(db)


@pytest.fixture(scope="module")
def lean(db: Path) -> pl.DataFrame:
    return load_analytics_frame(db, None)


JOBS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "cost_breakdown": lambda c: cost_breakdown(c, ["feature", "model"]),
    "cache_economics": cache_economics,
    "cache_economics_total": lambda c: cache_economics(c, by=[]),
    "caching_candidates": caching_candidates,
    "daily_spend": daily_spend,
    "threshold_crossings": lambda c: threshold_crossings(c, monthly_usd=50.0),
    "budget_status": lambda c: budget_status(
        c, monthly_usd=3000.0, feature_budgets={"agent-tools": 500.0}, as_of=AS_OF
    ),
    "cost_of_failure": cost_of_failure,
    "audit": audit,
}


def test_the_lean_frame_is_small_and_typed(plain: pl.DataFrame, lean: pl.DataFrame) -> None:
    assert lean.height == plain.height
    assert "attributes" not in lean.columns and "user_id" not in lean.columns
    assert lean.schema["feature"] == pl.Categorical
    assert lean["_has_user"].sum() == plain["user_id"].is_not_null().sum()
    assert lean.estimated_size() < plain.estimated_size() / 2


def test_a_period_limits_the_rows(db: Path, plain: pl.DataFrame) -> None:
    period = resolve_period("2026-11-09")
    lean = load_analytics_frame(db, period, columns=["start_time", "feature", "cost_usd"])
    expected = plain.filter(pl.col("start_time").is_between(period.start, period.end, "left"))
    assert lean.height == expected.height > 0
    assert lean["cost_usd"].sum() == pytest.approx(expected["cost_usd"].sum())
    with pytest.raises(ValueError, match="unknown calls column"):
        load_analytics_frame(db, period, columns=["start_time; DROP TABLE calls"])


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_job_gives_the_same_result_on_the_lean_frame(
    job: str, plain: pl.DataFrame, lean: pl.DataFrame
) -> None:
    expected = JOBS[job](plain)
    assert expected.height > 0 or job == "caching_candidates"
    for frame in (lean, prepare_calls(plain)):
        assert_frame_equal(JOBS[job](frame), expected, check_exact=False, rel_tol=1e-9)


def test_the_audit_reuses_job_results(plain: pl.DataFrame, lean: pl.DataFrame) -> None:
    results = {
        "cache_economics": cache_economics(lean),
        "caching_candidates": caching_candidates(lean),
        "cost_of_failure": cost_of_failure(lean),
    }
    expected = audit(plain)
    got = audit(lean, results=results)
    assert_frame_equal(got.drop("usd_at_stake"), expected.drop("usd_at_stake"))
    assert got["usd_at_stake"].to_list() == pytest.approx(expected["usd_at_stake"].to_list())
