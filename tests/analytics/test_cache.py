"""Cache economics: hit ratio, savings, wasted writes, the 1h-TTL verdict, candidates,
regressions."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.cache import (
    cache_hit_ratio_series_from_hours,
    cache_regressions_from_hours,
)
from clauditor.analytics.engine import open_engine

UTC = dt.UTC
T0 = dt.datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def rollup(calls: object) -> object:
    """The engine's hour rollup of a registered frame: what the runner finishes these from."""
    from clauditor.analytics.engine import open_engine

    with open_engine(calls, sources=None) as engine:  # type: ignore[arg-type]
        return engine.rollup(None, as_of=at(10_000))


def cache_economics(calls: object, by: tuple[str, ...] = ("feature",)) -> object:
    """Cache economics as the runner computes it: the engine's read/write sequence of a
    registered frame, finished with the rollup's sums."""
    with open_engine(calls, sources=None) as engine:  # type: ignore[arg-type]
        hours = engine.rollup(None, as_of=at(10_000), keys=by)
        return engine.cache_economics(None, hours, by=list(by))


def caching_candidates(calls: object) -> object:
    """The runner's caching candidates of a registered frame."""
    with open_engine(calls, sources=None) as engine:  # type: ignore[arg-type]
        return engine.caching_candidates(None, engine.rollup(None, as_of=at(10_000)))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_savings_waste_and_ttl_verdict_from_the_read_write_sequence(make_calls):
    # Sonnet 4.5 (the claude-sonnet-4-5 card of clauditor/prices.toml), base input $3/M: a 5m
    # write costs $3.75/M, a 1h write $6/M, a read $0.30/M.
    calls = make_calls(
        # 12:00 writes a 10k prefix: 10,000 x 3.75/M = $0.0375, read back at 12:02.
        dict(start_time=at(0), input_tokens=100, cache_creation_input_tokens=10_000),
        # 12:02 reads it: 10,000 x 0.30/M = $0.003 (uncached it would be $0.03).
        dict(start_time=at(2), input_tokens=100, cache_read_input_tokens=10_000),
        # 13:00 writes again and nothing reads it within 5 minutes: wasted.
        dict(start_time=at(60), input_tokens=100, cache_creation_input_tokens=10_000),
    )
    row = cache_economics(calls).row(0, named=True)
    assert (row["feature"], row["calls"]) == ("chat", 3)
    # hit ratio = 10,000 / (300 + 10,000 + 20,000)
    assert row["hit_ratio"] == pytest.approx(10_000 / 30_300)
    # saved = 9 x $0.003 on the read - 2 writes x (0.25 x 10,000 x $3/M = $0.0075) = $0.012
    assert row["saved_usd"] == pytest.approx(0.012)
    assert row["write_cost_usd"] == pytest.approx(0.075)
    # Only the 13:00 write went unread: its premium $0.0075 is the waste.
    assert row["wasted_write_usd"] == pytest.approx(0.0075)
    assert row["unread_write_tokens"] == 10_000
    # Replay, prefix worth 10,000 x $3/M = $0.03 a call:
    #   5m TTL: write, read (2 min), write (58 min) = 0.0375 + 0.003 + 0.0375 = $0.078
    #   1h TTL: write (x2), read, read            = 0.06 + 0.003 + 0.003     = $0.066
    assert row["ttl_1h_saving_usd"] == pytest.approx(0.012)
    assert row["recommend_1h"] is True


def test_one_hour_ttl_is_not_recommended_when_reuse_is_within_minutes(make_calls):
    calls = make_calls(
        dict(start_time=at(0), cache_creation_input_tokens=10_000),
        *[dict(start_time=at(m), cache_read_input_tokens=10_000) for m in (1, 2, 3)],
    )
    row = cache_economics(calls).row(0, named=True)
    # 5m: 0.0375 + 3 x 0.003 = 0.0465; 1h: 0.06 + 3 x 0.003 = 0.069 -> 1h costs $0.0225 more.
    assert row["ttl_1h_saving_usd"] == pytest.approx(-0.0225)
    assert row["recommend_1h"] is False
    assert row["wasted_write_usd"] == 0.0


def test_one_hour_writes_count_as_read_back_within_the_hour(make_calls):
    calls = make_calls(
        dict(
            start_time=at(0),
            cache_creation_input_tokens=10_000,
            cache_creation_1h_input_tokens=10_000,
        ),
        dict(start_time=at(30), cache_read_input_tokens=10_000),
    )
    row = cache_economics(calls).row(0, named=True)
    assert row["wasted_write_usd"] == 0.0
    # saved = 9 x 0.003 - 1h premium (1.0 x 10,000 x $3/M = $0.03) = -$0.003
    assert row["saved_usd"] == pytest.approx(-0.003)


def test_caching_candidates_price_the_shared_prefix(make_calls):
    rows = [dict(feature="summarize", start_time=at(m), input_tokens=2000) for m in range(25)]
    rows += [dict(feature="short", start_time=at(m), input_tokens=500) for m in range(25)]
    rows += [
        dict(feature="cached", start_time=at(m), input_tokens=2000, cache_read_input_tokens=3000)
        for m in range(25)
    ]
    out = caching_candidates(make_calls(*rows))
    assert out["feature"].to_list() == ["summarize"]
    row = out.row(0, named=True)
    assert (row["calls"], row["avg_input_tokens"], row["prefix_tokens"]) == (25, 2000.0, 2000)
    # Prefix worth 2,000 x $3/M = $0.006. 24 calls follow another within 5 minutes:
    # 24 x 0.9 x 0.006 = 0.1296 saved, minus the first call's write premium 0.25 x 0.006.
    assert row["dollars_at_stake"] == pytest.approx(0.1296 - 0.0015)
    assert row["reuse_share"] == pytest.approx(24 / 25)


def test_hit_ratio_series_per_hour(make_calls):
    calls = make_calls(
        dict(start_time=at(0), input_tokens=1000, cache_read_input_tokens=9000),
        dict(start_time=at(90), input_tokens=1000, cache_creation_input_tokens=9000),
    )
    out = cache_hit_ratio_series_from_hours(rollup(calls), every="1h")  # type: ignore[arg-type]
    assert out["bucket"].to_list() == [at(0), at(60)]
    assert out["hit_ratio"].to_list() == [0.9, 0.0]
    assert out["calls"].to_list() == [1, 1]


def test_a_lasting_fall_in_hit_ratio_is_found_at_the_hour_it_began(make_calls):
    rows = []
    for hour in range(48):
        for k in range(5):
            t = at(hour * 60 + k * 10)
            if hour < 24:  # ratio 9,000 / 10,000 = 0.9
                rows.append(dict(start_time=t, input_tokens=1000, cache_read_input_tokens=9000))
            else:  # every call writes: ratio 0
                rows.append(dict(start_time=t, input_tokens=1000, cache_creation_input_tokens=9000))
            # A steady feature alongside: never flagged.
            rows.append(
                dict(
                    feature="steady", start_time=t, input_tokens=1000, cache_read_input_tokens=9000
                )
            )
    out = cache_regressions_from_hours(
        rollup(make_calls(*rows)),  # type: ignore[arg-type]
        every="1h",
        drop=0.5,
        min_calls=20,
    )
    assert out.height == 1
    row = out.row(0, named=True)
    # 24 hours of 5 calls on each side of 12:00 the next day: 120 calls, 0.9 before, 0 after.
    assert (row["key"], row["start"]) == ("chat", at(24 * 60))
    assert row["before_ratio"] == pytest.approx(0.9)
    assert row["after_ratio"] == 0.0
    assert (row["calls_before"], row["calls_after"]) == (120, 120)
