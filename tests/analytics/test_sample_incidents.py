"""The analytics jobs on the committed sample: each planted incident is found at its time
(sample_logs/README.md), and nothing else of its kind is reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from clauditor.analytics.audit_items import AUDIT_ITEMS
from clauditor.analytics.budget import budget_status, threshold_crossings
from clauditor.analytics.periods import Period
from clauditor.analytics.runner import audit_table, cache_tables, run_jobs
from clauditor.config import load_config
from clauditor.ingest.files import ingest_paths
from clauditor.store import load_calls

UTC = dt.UTC
SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    db = tmp_path_factory.mktemp("sample") / "clauditor.duckdb"
    ingest_paths(
        [SAMPLE / "sample-30d.jsonl.gz"], db, config=load_config(SAMPLE / "clauditor.toml")
    )
    return load_calls(db)


@pytest.fixture(scope="module")
def config():
    return load_config(SAMPLE / "clauditor.toml")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_the_529_storm_is_the_only_error_episode(sample, config):
    episodes = run_jobs(
        sample, None, config=config, as_of=utc(2026, 12, 1), sources=None, jobs=["error_episodes"]
    )["error_episodes"]
    storm_start, storm_end = utc(2026, 11, 9, 14, 0), utc(2026, 11, 9, 14, 45)
    overloaded = episodes.filter(pl.col("error_class") == "overloaded")
    assert overloaded.height == 1
    row = overloaded.row(0, named=True)
    assert storm_start <= row["start"] <= storm_start + dt.timedelta(minutes=5)
    assert storm_end - dt.timedelta(minutes=5) <= row["end"] <= storm_end + dt.timedelta(minutes=1)
    assert row["error_rate"] > 0.2
    # Nothing else, in any class, anywhere else in the month: every episode overlaps the storm
    # (the 'any' one may start a few minutes early on a background error).
    for r in episodes.iter_rows(named=True):
        assert r["start"] < storm_end and r["end"] > storm_start, r


def test_the_runaway_loop_is_the_spike(sample, config):
    # The runner on the sample's calls registered as a frame: the production path.
    as_of = utc(2026, 12, 1)
    episodes = run_jobs(
        sample, None, config=config, as_of=as_of, sources=None, jobs=["spike_episodes"]
    )["spike_episodes"]
    runaway = episodes.filter(pl.col("key") == "agent-tools")
    assert runaway.height == 1
    row = runaway.row(0, named=True)
    # The loop ran 01:10-02:40 UTC: the hours 01:00 and 02:00.
    assert (row["start"], row["end"]) == (utc(2026, 11, 16, 1), utc(2026, 11, 16, 3))
    assert "runaway volume" in row["reason"] and "model change" in row["reason"]
    # ~750 Opus 5.5 calls of ~30k uncached tokens at $4/MTok: about $90 over a baseline near 0.
    assert 80 < row["excess_usd"] < 110
    # The only other spike allowed is the real cost of the cache regression: support-chat
    # writing its cache on every call after 2026-11-19 10:00.
    others = episodes.filter(pl.col("key") != "agent-tools")
    for r in others.iter_rows(named=True):
        assert r["key"] == "support-chat" and r["start"] >= utc(2026, 11, 19, 10), r


def test_the_cache_regression_is_found_when_it_began(sample, config):
    found = run_jobs(
        sample, None, config=config, as_of=utc(2026, 12, 1), sources=None,
        jobs=["cache_regressions"],
    )["cache_regressions"]  # fmt: skip
    assert found.height == 1
    row = found.row(0, named=True)
    assert (row["key"], row["start"]) == ("support-chat", utc(2026, 11, 19, 10))
    assert row["before_ratio"] > 0.7 and row["after_ratio"] < 0.15
    (economics,) = cache_tables(
        sample, Period(utc(2026, 10, 1), utc(2026, 12, 1), "Oct-Nov"), ["feature"],
        candidates=False, sources=None,
    )  # fmt: skip
    chat = economics.filter(pl.col("feature") == "support-chat").row(0, named=True)
    assert chat["wasted_write_usd"] > 0 and chat["saved_usd"] > 0


def test_the_budget_crosses_80_percent_on_november_23(sample, config):
    budget = config.budget
    crossings = threshold_crossings(
        sample, monthly_usd=budget.monthly_usd, thresholds=budget.thresholds
    )
    by_threshold = {r["threshold"]: r["crossed_at"] for r in crossings.iter_rows(named=True)}
    assert by_threshold[0.8].date() == dt.date(2026, 11, 23)
    assert by_threshold[1.0].date() == dt.date(2026, 11, 28)
    assert 1.2 not in by_threshold

    def status(as_of: dt.datetime) -> dict:
        out = budget_status(
            sample,
            monthly_usd=budget.monthly_usd,
            feature_budgets=budget.features,
            thresholds=budget.thresholds,
            as_of=as_of,
            tz=config.timezone,
        )
        return {r["scope"]: r for r in out.iter_rows(named=True)}

    before = status(utc(2026, 11, 23, 0))["total"]
    assert before["thresholds_crossed"] == []
    # November's actual spend ($635.43 by the end of the 29th) lies in the range forecast a
    # week earlier.
    assert before["forecast_low_usd"] <= 635.43 <= before["forecast_high_usd"]
    after = status(utc(2026, 11, 24, 0))
    assert after["total"]["thresholds_crossed"] == [0.8]
    assert after["total"]["crossed_at"] == by_threshold[0.8]
    # agent-tools ($130) passed 80 % and 100 % in the night of the runaway loop.
    night = status(utc(2026, 11, 16, 3))["feature:agent-tools"]
    assert night["thresholds_crossed"] == [0.8, 1.0]
    assert night["crossed_at"].date() == dt.date(2026, 11, 16)


def test_audit_scores_the_sample(sample, config):
    got = {
        r["item"]: r
        for r in audit_table(sample, None, config=config, as_of=utc(2026, 12, 1)).iter_rows(
            named=True
        )
    }
    assert list(got) == list(AUDIT_ITEMS)
    assert got["batch_api"]["status"] in ("warn", "fail")
    assert "doc-summarize" in got["batch_api"]["evidence"]
    assert got["error_rate"]["status"] == "warn"  # ~1.5 % background failures
    assert got["feature_attribution"]["status"] == "warn"  # ~6 % of spend untagged
    # The streamed answers' 512 cap cuts off ~5 % of them; the titles job caps at 8,192 for
    # ~75-token titles.
    sized = got["max_tokens_sized"]
    assert sized["status"] == "warn"
    assert (
        "search-answer: " in sized["evidence"] and "cut off at max_tokens 512" in sized["evidence"]
    )
    assert "generate_title caps at 8,192" in sized["evidence"]
    assert got["usage_logged"]["status"] == "pass"
    assert got["context_growth"]["status"] in ("warn", "pass")
