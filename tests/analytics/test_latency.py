"""Latency percentiles of duration and time to first token, through ``latency_table`` (the
engine's quantiles) on a registered frame of hand-made calls."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.periods import Period
from clauditor.analytics.runner import latency_table

UTC = dt.UTC
DAY1 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
DAY2 = dt.datetime(2026, 10, 2, 9, 0, tzinfo=UTC)
TWO_DAYS = Period(dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 10, 3, tzinfo=UTC), "2d")


def test_percentiles_per_feature_and_day_leave_out_failures(make_calls):
    rows = [dict(start_time=DAY1, duration_ms=d) for d in (100.0, 200.0, 300.0, 400.0, 500.0)]
    rows[0].update(stream=True, ttft_ms=50.0)
    rows[1].update(stream=True, ttft_ms=150.0)
    rows.append(dict(start_time=DAY1, duration_ms=60_000.0, status="error", error_type="timeout"))
    rows.append(dict(start_time=DAY1, duration_ms=90.0, operation="count_tokens"))
    rows.append(dict(start_time=DAY2, duration_ms=1000.0))
    out = latency_table(make_calls(*rows), TWO_DAYS, ["feature"], every="1d", sources=None)
    first, second = out.to_dicts()
    assert first["calls"] == 5 and second["calls"] == 1
    # Linear interpolation over [100..500]: p50 = 300; p95 at rank 3.8 = 400 + 0.8 x 100 = 480;
    # p99 at rank 3.96 = 496.
    assert first["duration_p50_ms"] == 300.0
    assert first["duration_p95_ms"] == pytest.approx(480.0)
    assert first["duration_p99_ms"] == pytest.approx(496.0)
    # TTFT over the two streamed calls [50, 150]: p50 = 100.
    assert first["streamed_calls"] == 2
    assert first["ttft_p50_ms"] == 100.0
    assert second["ttft_p50_ms"] is None


def test_without_every_there_is_one_row_per_group(make_calls):
    calls = make_calls(
        dict(start_time=DAY1, duration_ms=100.0),
        dict(start_time=DAY2, duration_ms=300.0),
        dict(start_time=DAY2, duration_ms=50.0, feature="other"),
    )
    out = latency_table(calls, TWO_DAYS, ["feature"], every=None, sources=None)
    assert out["feature"].to_list() == ["chat", "other"]
    assert out["duration_p50_ms"].to_list() == [200.0, 50.0]


def test_buckets_are_local_days_of_the_zone_and_any_key_groups(make_calls):
    # UTC 18:10 and 18:20 are 23:55 on the 1st and 00:05 on the 2nd in Kathmandu (+5:45): one
    # UTC hour, two local days. By user: u1 has both, u2 only the second.
    at = dt.datetime(2026, 10, 1, 18, 10, tzinfo=UTC)
    calls = make_calls(
        dict(start_time=at, duration_ms=100.0, user_id="u1"),
        dict(start_time=at + dt.timedelta(minutes=10), duration_ms=300.0, user_id="u1"),
        dict(start_time=at + dt.timedelta(minutes=10), duration_ms=500.0, user_id="u2"),
    )
    out = latency_table(calls, TWO_DAYS, ["user"], every="1d", tz="Asia/Kathmandu", sources=None)
    got = [(r["period"].day, r["user"], r["calls"], r["duration_p50_ms"]) for r in out.to_dicts()]
    assert got == [(1, "u1", 1, 100.0), (2, "u1", 1, 300.0), (2, "u2", 1, 500.0)]
