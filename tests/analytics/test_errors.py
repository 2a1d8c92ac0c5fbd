"""Error classes, rolling error windows, sustained-degradation episodes, retry amplification."""

from __future__ import annotations

import datetime as dt

import polars as pl

from clauditor.analytics.errors import (
    ERROR_CLASSES,
    error_class_expr,
    error_episodes_from_minutes,
    error_windows_from_minutes,
    retry_amplification_from_hours,
)


def _minutes(calls: pl.DataFrame) -> pl.DataFrame:
    """The engine's error minutes of the frame: what the runner finishes the error jobs from."""
    from clauditor.analytics.engine import open_engine

    with open_engine(calls, sources=None) as engine:
        return engine.error_minutes(None)


def error_windows(calls: pl.DataFrame, **kw: object) -> pl.DataFrame:
    """Error windows as the runner computes them (the engine's minutes, then the finishing)."""
    return error_windows_from_minutes(_minutes(calls), **kw)  # type: ignore[arg-type]


def error_episodes(calls: pl.DataFrame, **kw: object) -> pl.DataFrame:
    """Error episodes as the runner computes them (the engine's minutes, then the finishing)."""
    return error_episodes_from_minutes(_minutes(calls), **kw)  # type: ignore[arg-type]


def retry_amplification(calls: pl.DataFrame) -> pl.DataFrame:
    """Retry amplification as the runner computes it: the engine's rollup of the frame."""
    from clauditor.analytics.engine import open_engine

    with open_engine(calls) as engine:
        return retry_amplification_from_hours(engine.rollup(None, as_of=T0))


UTC = dt.UTC
T0 = dt.datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def failed(minutes: float, status: int | None, kind: str, **extra: object) -> dict:
    return dict(
        start_time=at(minutes),
        status="error",
        http_status=status,
        error_type=kind,
        input_tokens=0,
        **extra,
    )


def test_each_failure_gets_the_class_a_user_would_name(make_calls):
    calls = make_calls(
        failed(0, 429, "rate_limit_error"),
        failed(0, 529, "overloaded_error"),
        failed(0, 500, "api_error"),
        failed(0, 503, None),
        failed(0, 400, "invalid_request_error"),
        failed(0, 401, "authentication_error"),
        failed(0, None, "timeout"),
        failed(0, None, "client_timeout_error"),
        failed(0, None, "connection_error"),
        failed(0, None, "something_new"),
        dict(start_time=at(0), http_status=200),
    )
    got = calls.with_columns(error_class_expr())["error_class"].to_list()
    assert got == [
        "rate_limited",
        "overloaded",
        "server_error",
        "server_error",
        "client_error",
        "client_error",
        "timeout",
        "timeout",
        "connection",
        "other",
        None,
    ]
    assert set(got) - {None, "other"} == set(ERROR_CLASSES)


def test_windows_roll_every_minute_over_five_minutes(make_calls):
    # One call a minute from 12:00 to 12:09; the call at 12:02 is rate limited.
    rows = [dict(start_time=at(m)) for m in range(10) if m != 2]
    calls = make_calls(*rows, failed(2, 429, "rate_limit_error"))
    w = error_windows(calls, window="5m", every="1m")
    limited = w.filter(pl.col("error_class") == "rate_limited").sort("window_start")
    # Windows start 12:00 .. 12:09 (ten of them); 12:00 covers 12:00-12:04: 5 calls, 1 error.
    assert limited.height == 10
    first = limited.row(0, named=True)
    assert (first["window_start"], first["window_end"]) == (at(0), at(5))
    assert (first["calls"], first["errors"], first["error_rate"]) == (5, 1, 0.2)
    # 12:03 covers 12:03-12:07: the error is behind it.
    assert limited.filter(pl.col("window_start") == at(3))["errors"].item() == 0
    # 12:08 covers 12:08-12:12, but only 12:08 and 12:09 have calls.
    assert limited.filter(pl.col("window_start") == at(8))["calls"].item() == 2
    # 'any' sums all classes: same as rate_limited here.
    anyc = w.filter(pl.col("error_class") == "any").sort("window_start")
    assert anyc["errors"].to_list() == limited["errors"].to_list()


def test_a_sustained_storm_is_one_episode_and_stray_errors_are_not(make_calls):
    rows = []
    for m in range(60):  # one call a minute, 12:00-12:59
        if 20 <= m < 45:
            rows.append(failed(m, 529, "overloaded_error"))  # 25 minutes of 529s
        elif m == 55:
            rows.append(failed(m, 500, "api_error"))  # one stray error later
        else:
            rows.append(dict(start_time=at(m)))
    # Make the hour busy enough: 4 more ok calls per minute outside the storm.
    rows += [dict(start_time=at(m + 0.5)) for m in range(60) if not 20 <= m < 45 for _ in range(4)]
    episodes = error_episodes(make_calls(*rows))
    # Episode from the first to the last failing minute: [12:20, 12:45), 25 calls all failed;
    # the stray 500 at 12:55 (1 of 5 calls that minute) lasts one minute: no episode.
    assert episodes["error_class"].to_list() == ["any", "overloaded"]
    for row in episodes.iter_rows(named=True):
        assert (row["start"], row["end"]) == (at(20), at(45))
        assert (row["calls"], row["errors"], row["error_rate"]) == (25, 25, 1.0)
        assert row["peak_rate"] == 1.0


def test_a_low_error_rate_is_not_an_episode(make_calls):
    # 100 calls a minute for 10 minutes, 5 of the 1,000 fail: 0.5 % < the 1 % threshold.
    rows = [dict(start_time=at(m + i / 100)) for m in range(10) for i in range(100)]
    for k in range(5):
        rows[k * 200] = failed(k * 2, 429, "rate_limit_error")
    assert error_episodes(make_calls(*rows)).height == 0
    # A threshold under the rate finds it: 5 errors over 12:00-12:09 (the span of failing
    # minutes), 900 calls in it.
    got = error_episodes(make_calls(*rows), threshold=0.001, z=0.0)
    assert got.filter(pl.col("error_class") == "rate_limited")["errors"].to_list() == [5]


def test_attempts_per_call_is_one_plus_retries(make_calls):
    calls = make_calls(
        dict(feature="a", retries=0),
        dict(feature="a", retries=1),
        dict(feature="a", retries=2),
        dict(feature="b", retries=None),
    )
    out = retry_amplification(calls).to_dicts()
    # a: attempts 1 + 2 + 3 = 6 over 3 calls = 2.0; two calls were resent.
    assert out[0] == {
        "feature": "a",
        "calls": 3,
        "attempts": 6,
        "attempts_per_call": 2.0,
        "retried_calls": 2,
        "retried_share": 2 / 3,
        "failed_after_retries": 0,
    }
    assert out[1]["attempts_per_call"] == 1.0  # unrecorded retries count as none
