"""Hourly spend against a robust trailing baseline: spikes and their episodes, through the
production path (the engine's rollup of a registered frame, and ``spikes_table``)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clauditor.analytics.engine import open_engine
from clauditor.analytics.periods import Period
from clauditor.analytics.runner import spikes_table
from clauditor.analytics.spikes import detect_spikes_from_hours, hourly_spend_from_hours
from clauditor.schema import frame_from_rows
from tests.conftest import call_row

UTC = dt.UTC
T0 = dt.datetime(2026, 10, 1, 0, 0, tzinfo=UTC)


def hour(h: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def frame(rows: list[dict]) -> pl.DataFrame:
    # Costs are set directly: the spike job reads cost_usd only.
    return frame_from_rows([call_row(**r) for r in rows])


# The scenario's four days.
PERIOD = Period(T0, hour(96), "4d", "UTC")


def rollup(rows: list[dict]) -> pl.DataFrame:
    """The engine's hour rollup of the hand-made calls (what every spike job finishes from)."""
    with open_engine(frame(rows), sources=None) as engine:
        return engine.rollup(PERIOD, as_of=PERIOD.end)


def scenario() -> list[dict]:
    rows = []
    for h in range(96):
        if h in (60, 61):  # a runaway: 40 Opus calls of $0.50 an hour = $20
            rows += [
                dict(
                    feature="agent",
                    start_time=hour(h + i / 40),
                    cost_usd=0.5,
                    response_model="claude-opus-4-6",
                )
                for i in range(40)
            ]
        else:  # one $0.50 Sonnet call an hour
            rows.append(dict(feature="agent", start_time=hour(h + 0.5), cost_usd=0.5))
        if h % 24 == 2:  # a nightly job: $5 at 02:00 and nothing else
            rows.append(dict(feature="nightly", start_time=hour(h + 0.1), cost_usd=5.0))
    return rows


def test_hourly_spend_sums_per_key_and_names_the_costliest_model():
    out = hourly_spend_from_hours(rollup(scenario()))
    h60 = out.filter((out["key"] == "agent") & (out["hour"] == hour(60))).row(0, named=True)
    assert (h60["calls"], h60["cost_usd"], h60["top_model"]) == (40, 20.0, "claude-opus-4-6")


def test_a_runaway_is_a_spike_and_a_nightly_job_is_not():
    spikes = detect_spikes_from_hours(rollup(scenario()))
    assert spikes["key"].to_list() == ["agent", "agent"]
    first = spikes.row(0, named=True)
    assert first["hour"] == hour(60)
    # Baseline: sixty $0.50 hours: median 0.5, MAD 0, so the scale is the floor 0.1 x 0.5.
    assert (first["baseline_median"], first["baseline_mad"]) == (0.5, 0.0)
    assert first["score"] == pytest.approx((20.0 - 0.5) / 0.05)
    assert first["excess_usd"] == pytest.approx(19.5)
    # 40 calls against a baseline of 1, on a model the feature never used before.
    assert first["reason"] == "runaway volume, model change"


def test_consecutive_spike_hours_are_one_episode():
    episodes = spikes_table(frame(scenario()), PERIOD, "feature", sources=None)
    assert episodes.height == 1
    row = episodes.row(0, named=True)
    assert (row["key"], row["start"], row["end"], row["hours"]) == ("agent", hour(60), hour(62), 2)
    # $20 + $20 spent, $0.50 + $0.50 of it expected.
    assert row["cost_usd"] == pytest.approx(40.0)
    assert row["excess_usd"] == pytest.approx(39.0)


def test_small_dollar_moves_are_not_spikes():
    rows = scenario()
    for r in rows:
        r["cost_usd"] = r["cost_usd"] / 100  # the runaway is now $0.20 over a $0.005 median
    assert detect_spikes_from_hours(rollup(rows), min_usd=1.0).height == 0
