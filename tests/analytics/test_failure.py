"""Dollars lost to failed calls, resends and truncated answers, through the runner's
``failures`` table on a registered frame of hand-made calls."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clauditor.analytics.periods import Period
from clauditor.analytics.runner import failures_table

# make_calls' calls start 2026-10-01 12:00 UTC.
OCTOBER = Period(
    dt.datetime(2026, 10, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "Oct"
)


def cost_of_failure(calls: pl.DataFrame) -> pl.DataFrame:
    return failures_table(calls, OCTOBER, ["feature"])


def test_errored_retried_and_truncated_dollars(make_calls):
    calls = make_calls(
        # Rates: the claude-sonnet-4-5 card of clauditor/prices.toml ($3/M in, $15/M out).
        # 1,000 input tokens on Sonnet 4.5 = $0.003, resent twice: resends are counted, not
        # priced (a rejected attempt is not billed).
        dict(feature="a", retries=2),
        # A stream that broke after 1,000 output tokens: $0.003 + 1,000 x $15/M = $0.018.
        dict(
            feature="a", status="error", error_type="api_error", http_status=500, output_tokens=1000
        ),
        # Cut off by max_tokens: $0.003 + $0.015 = $0.018.
        dict(feature="a", output_tokens=1000, stop_reason="max_tokens", max_tokens=1000),
        # A clean call: $0.003, no failure.
        dict(feature="b"),
    )
    a, b = cost_of_failure(calls).to_dicts()
    assert a["feature"] == "a"
    assert a["errored_calls"] == 1 and a["errored_usd"] == pytest.approx(0.018)
    assert a["retries"] == 2 and "retry_usd" not in a
    assert a["truncated_calls"] == 1 and a["truncated_usd"] == pytest.approx(0.018)
    # 0.018 + 0.018 = 0.036 of 0.003 + 0.018 + 0.018 = 0.039 spent.
    assert a["failure_usd"] == pytest.approx(0.036)
    assert a["cost_usd"] == pytest.approx(0.039)
    assert b["failure_usd"] == 0.0 and b["failure_share"] == 0.0
