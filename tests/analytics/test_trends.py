"""Cost per bucket and change against the previous period (the ``costs`` command's table, run by
the runner on registered frames), with hand-computed dollars."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.periods import Period
from clauditor.analytics.runner import costs_table
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from tests.conftest import call_row

UTC = dt.UTC


def calls(*rows: dict):
    return price_calls(frame_from_rows([call_row(**r) for r in rows]))


# October 2026 (and the days around it in any zone).
OCTOBER = Period(dt.datetime(2026, 9, 30, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC), "oct")


def cost_by_bucket(frame, by, *, every: str, tz: str = "UTC"):
    return costs_table(frame, OCTOBER, by, every=every, tz=tz)


def test_cost_by_day_in_a_time_zone() -> None:
    # Sonnet 4.5, 1,000 input tokens = $0.003 each. 23:30 UTC on Oct 1 is Oct 2 in Berlin.
    frame = calls(
        {"start_time": dt.datetime(2026, 10, 1, 10, tzinfo=UTC), "feature": "a"},
        {"start_time": dt.datetime(2026, 10, 1, 23, 30, tzinfo=UTC), "feature": "a"},
        {"start_time": dt.datetime(2026, 10, 1, 23, 30, tzinfo=UTC), "feature": "b"},
    )
    utc = cost_by_bucket(frame, ["feature"], every="day", tz="UTC")
    assert utc.height == 2  # one day, two features
    assert utc.filter(utc["feature"] == "a")["cost_usd"].item() == pytest.approx(0.006)
    berlin = cost_by_bucket(frame, ["feature"], every="day", tz="Europe/Berlin")
    days = {(r["bucket"].date(), r["feature"]): r for r in berlin.iter_rows(named=True)}
    assert days[(dt.date(2026, 10, 1), "a")]["cost_usd"] == pytest.approx(0.003)
    assert days[(dt.date(2026, 10, 2), "a")]["cost_usd"] == pytest.approx(0.003)
    # Shares are within each bucket: on Oct 2 (Berlin) a and b spent $0.003 each.
    assert days[(dt.date(2026, 10, 2), "b")]["share"] == pytest.approx(0.5)


def test_cost_by_week_and_bad_bucket() -> None:
    frame = calls(
        {"start_time": dt.datetime(2026, 10, 5, tzinfo=UTC)},  # a Monday
        {"start_time": dt.datetime(2026, 10, 11, 23, tzinfo=UTC)},  # the Sunday after
        {"start_time": dt.datetime(2026, 10, 12, tzinfo=UTC)},  # next Monday
    )
    weeks = cost_by_bucket(frame, [], every="week")
    assert weeks["calls"].to_list() == [2, 1]
    with pytest.raises(ValueError, match="unknown bucket"):
        cost_by_bucket(frame, [], every="fortnight")


def test_change_against_previous_period() -> None:
    now, before = dt.datetime(2026, 10, 20, tzinfo=UTC), dt.datetime(2026, 10, 10, tzinfo=UTC)
    period = Period(
        dt.datetime(2026, 10, 15, tzinfo=UTC), dt.datetime(2026, 10, 25, tzinfo=UTC), "10d"
    )
    frame = calls(
        {"feature": "a", "start_time": before},  # $0.003 each
        {"feature": "gone", "start_time": before},
        {"feature": "a", "start_time": now},
        {"feature": "a", "start_time": now},
        {"feature": "new", "start_time": now},
    )
    table = costs_table(frame, period, ["feature"])
    out = {r["feature"]: r for r in table.iter_rows(named=True)}
    # a: $0.006 now vs $0.003 before = +100 %.
    assert out["a"]["change"] == pytest.approx(1.0)
    assert out["new"]["change"] is None and out["new"]["previous_cost_usd"] is None
    assert out["gone"]["calls"] == 0 and out["gone"]["change"] == pytest.approx(-1.0)
