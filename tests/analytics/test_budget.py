"""Budget status, forecast and threshold crossings on a hand-built month."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.budget import budget_status, threshold_crossings
from clauditor.schema import frame_from_rows
from tests.conftest import call_row

UTC = dt.UTC


def october(extra: list[dict] | None = None) -> object:
    """One call a day at 10:00 UTC, Oct 1-15 2026: $10 on weekdays, $4 on weekends.

    Oct 1 2026 is a Thursday; weekends so far: 3-4 and 10-11.
    """
    rows = []
    for day in range(1, 16):
        d = dt.date(2026, 10, day)
        cost = 4.0 if d.weekday() >= 5 else 10.0
        rows.append(
            call_row(
                feature="a", start_time=dt.datetime(2026, 10, day, 10, tzinfo=UTC), cost_usd=cost
            )
        )
    rows += [call_row(**r) for r in extra or []]
    return frame_from_rows(rows)


AS_OF = dt.datetime(2026, 10, 15, 12, 0, tzinfo=UTC)


def test_month_to_date_forecast_knows_weekends():
    out = budget_status(
        october(),
        monthly_usd=250.0,
        feature_budgets={"a": 100.0},
        thresholds=[0.8, 1.0, 1.2],
        as_of=AS_OF,
    )
    total = out.row(0, named=True)
    assert total["scope"] == "total"
    # Spent: 11 weekdays x $10 + 4 weekend days x $4 = $126.
    assert total["spent_usd"] == pytest.approx(126.0)
    assert total["fraction"] == pytest.approx(126.0 / 250.0)
    # To come: half of today (Thu) $5; weekdays 16, 19-23, 26-30 = 11 x $10; weekend days
    # 17, 18, 24, 25, 31 = 5 x $4. 126 + 5 + 110 + 20 = $261. No day-to-day variation in the
    # history, so the interval is the point.
    assert total["forecast_usd"] == pytest.approx(261.0)
    assert total["forecast_low_usd"] == pytest.approx(261.0)
    assert total["forecast_high_usd"] == pytest.approx(261.0)
    assert total["run_rate_usd"] == pytest.approx(135.0 / 16.5)
    # Running total: 131 (15th), 141, 145, 149, 159 ... 247 (29th), 257 on the 30th.
    assert total["projected_runout"] == dt.date(2026, 10, 30)
    assert total["thresholds_crossed"] == []
    assert total["crossed_at"] is None


def test_a_feature_budget_already_spent_reports_when_it_ran_out():
    out = budget_status(
        october(),
        monthly_usd=250.0,
        feature_budgets={"a": 100.0},
        thresholds=[0.8, 1.0, 1.2],
        as_of=AS_OF,
    )
    feature = out.row(1, named=True)
    assert feature["scope"] == "feature:a"
    # $126 of $100: past 80 %, 100 % and 120 %.
    assert feature["thresholds_crossed"] == [0.8, 1.0, 1.2]
    # Running total 10, 20, 24, 28, 38, 48, 58, 68, 78, 82, 86, 96, 106 (13th), 116, 126 (15th):
    # 120 % ($120) was crossed by the call of Oct 15, 10:00; 100 % ran out on the 13th.
    assert feature["crossed_at"] == dt.datetime(2026, 10, 15, 10, tzinfo=UTC)
    assert feature["projected_runout"] == dt.date(2026, 10, 13)


def test_as_of_hides_later_calls_and_interval_widens_with_noise():
    noisy = october(
        [
            dict(feature="a", start_time=dt.datetime(2026, 10, 5, 11, tzinfo=UTC), cost_usd=6.0),
            dict(feature="a", start_time=dt.datetime(2026, 10, 20, 11, tzinfo=UTC), cost_usd=999.0),
        ]
    )
    out = budget_status(
        noisy, monthly_usd=None, feature_budgets={}, thresholds=[0.8], as_of=AS_OF
    ).row(0, named=True)
    assert out["spent_usd"] == pytest.approx(132.0)  # the Oct 20 call is after as_of
    assert out["budget_usd"] is None and out["fraction"] is None
    assert out["forecast_low_usd"] < out["forecast_usd"] < out["forecast_high_usd"]


def test_threshold_crossings_per_month():
    frame = october(
        [dict(feature="a", start_time=dt.datetime(2026, 11, 1, 9, tzinfo=UTC), cost_usd=90.0)]
    )
    out = threshold_crossings(frame, monthly_usd=100.0, thresholds=[0.8, 1.0, 1.2])
    got = [(r["month"], r["threshold"], r["crossed_at"], r["spent_usd"]) for r in out.to_dicts()]
    assert got == [
        # October running total: 82 on the 10th, 106 on the 13th, 126 on the 15th.
        (dt.date(2026, 10, 1), 0.8, dt.datetime(2026, 10, 10, 10, tzinfo=UTC), 82.0),
        (dt.date(2026, 10, 1), 1.0, dt.datetime(2026, 10, 13, 10, tzinfo=UTC), 106.0),
        (dt.date(2026, 10, 1), 1.2, dt.datetime(2026, 10, 15, 10, tzinfo=UTC), 126.0),
        # November starts from zero: $90 passes 80 % at once.
        (dt.date(2026, 11, 1), 0.8, dt.datetime(2026, 11, 1, 9, tzinfo=UTC), 90.0),
    ]
    only_b = threshold_crossings(frame, monthly_usd=100.0, thresholds=[0.8], feature="b")
    assert only_b.height == 0
