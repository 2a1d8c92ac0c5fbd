"""Latency percentiles of duration and time to first token."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.latency import latency_percentiles

UTC = dt.UTC
DAY1 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
DAY2 = dt.datetime(2026, 10, 2, 9, 0, tzinfo=UTC)


def test_percentiles_per_feature_and_day_leave_out_failures(make_calls):
    rows = [dict(start_time=DAY1, duration_ms=d) for d in (100.0, 200.0, 300.0, 400.0, 500.0)]
    rows[0].update(stream=True, ttft_ms=50.0)
    rows[1].update(stream=True, ttft_ms=150.0)
    rows.append(dict(start_time=DAY1, duration_ms=60_000.0, status="error", error_type="timeout"))
    rows.append(dict(start_time=DAY1, duration_ms=90.0, operation="count_tokens"))
    rows.append(dict(start_time=DAY2, duration_ms=1000.0))
    out = latency_percentiles(make_calls(*rows), by=["feature"], every="1d")
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
    out = latency_percentiles(calls, by=["feature"], every=None)
    assert out["feature"].to_list() == ["chat", "other"]
    assert out["duration_p50_ms"].to_list() == [200.0, 50.0]
