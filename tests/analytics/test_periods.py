"""resolve_period and Period.previous: exact UTC bounds for every spec form."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.analytics.periods import Period, resolve_period

UTC = dt.UTC
AS_OF = dt.datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # a Tuesday afternoon


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("today", utc(2026, 3, 10), AS_OF),
        ("yesterday", utc(2026, 3, 9), utc(2026, 3, 10)),
        ("7d", utc(2026, 3, 3, 14, 30), AS_OF),
        ("30d", utc(2026, 2, 8, 14, 30), AS_OF),
        ("1d", utc(2026, 3, 9, 14, 30), AS_OF),
        ("mtd", utc(2026, 3, 1), AS_OF),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
        ("2025-12", utc(2025, 12, 1), utc(2026, 1, 1)),
        ("2026-03-09", utc(2026, 3, 9), utc(2026, 3, 10)),
        ("2026-02-27..2026-03-02", utc(2026, 2, 27), utc(2026, 3, 3)),  # both ends included
        ("2026-03-05..2026-03-05", utc(2026, 3, 5), utc(2026, 3, 6)),
        (" MTD ", utc(2026, 3, 1), AS_OF),
    ],
)
def test_every_spec_form_resolves_to_exact_utc_bounds(
    spec: str, start: dt.datetime, end: dt.datetime
) -> None:
    period = resolve_period(spec, as_of=AS_OF)
    assert (period.start, period.end) == (start, end)
    assert period.tz == "UTC"
    assert period.start.tzinfo is not None and period.end.tzinfo is not None


def test_yesterday_in_berlin_on_the_day_the_clocks_go_back_is_25_hours() -> None:
    # Berlin leaves summer time on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET). On Monday the 26th
    # "yesterday" runs from 00:00 CEST (22:00 UTC on the 24th) to 00:00 CET (23:00 UTC on the 25th).
    period = resolve_period("yesterday", as_of=utc(2026, 10, 26, 10), tz="Europe/Berlin")
    assert period.start == utc(2026, 10, 24, 22)
    assert period.end == utc(2026, 10, 25, 23)
    assert period.duration == dt.timedelta(hours=25)
    assert "2026-10-25" in period.label
    # The day before is a plain 24-hour summer day.
    before = period.previous()
    assert (before.start, before.end) == (utc(2026, 10, 23, 22), utc(2026, 10, 24, 22))


def test_local_days_follow_the_zone_not_utc() -> None:
    # 23:30 UTC on 2026-03-09 is already 00:30 on the 10th in Berlin (CET, UTC+1).
    period = resolve_period("today", as_of=utc(2026, 3, 9, 23, 30), tz="Europe/Berlin")
    assert period.start == utc(2026, 3, 9, 23)  # 2026-03-10 00:00 CET
    assert period.end == utc(2026, 3, 9, 23, 30)
    month = resolve_period("2026-03", as_of=AS_OF, tz="Europe/Berlin")
    # March starts in winter time and ends in summer time (switch on 2026-03-29).
    assert (month.start, month.end) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert month.describe().startswith("2026-03-01 00:00 → 2026-04-01 00:00 (Europe/Berlin")


def test_rolling_days_are_calendar_days_across_a_dst_change() -> None:
    # 7 Berlin days before Tue 2026-03-31 12:00 CEST is Tue 2026-03-24 12:00 CET: 167 real hours.
    period = resolve_period("7d", as_of=utc(2026, 3, 31, 10), tz="Europe/Berlin")
    assert period.start == utc(2026, 3, 24, 11)
    assert period.duration == dt.timedelta(hours=167)


def test_naive_as_of_is_wall_clock_time_in_the_zone() -> None:
    period = resolve_period("today", as_of=dt.datetime(2026, 7, 1, 9, 0), tz="Europe/Berlin")
    assert period.end == utc(2026, 7, 1, 7)  # 09:00 CEST
    assert period.start == utc(2026, 6, 30, 22)


def test_as_of_defaults_to_now() -> None:
    before = dt.datetime.now(UTC)
    period = resolve_period("today")
    after = dt.datetime.now(UTC)
    assert before <= period.end <= after


@pytest.mark.parametrize(
    ("spec", "prev_start", "prev_end"),
    [
        # the same span one unit back
        ("today", utc(2026, 3, 9), utc(2026, 3, 9, 14, 30)),
        ("yesterday", utc(2026, 3, 8), utc(2026, 3, 9)),
        ("7d", utc(2026, 2, 24, 14, 30), utc(2026, 3, 3, 14, 30)),
        ("2026-03-09", utc(2026, 3, 8), utc(2026, 3, 9)),
        ("2026-02-27..2026-03-02", utc(2026, 2, 23), utc(2026, 2, 27)),  # 4 days before
        # mtd: February's first 9 days and 14.5 hours, the same span a month earlier
        ("mtd", utc(2026, 2, 1), utc(2026, 2, 10, 14, 30)),
        # a whole month: the whole previous month, whatever its length
        ("2026-03", utc(2026, 2, 1), utc(2026, 3, 1)),
        ("2026-02", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("2026-01", utc(2025, 12, 1), utc(2026, 1, 1)),
    ],
)
def test_previous_is_the_comparable_period_before(
    spec: str, prev_start: dt.datetime, prev_end: dt.datetime
) -> None:
    previous = resolve_period(spec, as_of=AS_OF).previous()
    assert (previous.start, previous.end) == (prev_start, prev_end)
    assert previous.tz == "UTC"


def test_previous_of_mtd_is_clipped_to_the_shorter_month() -> None:
    # 31 March 12:00 to date compares with all of February (it has no 31st).
    period = resolve_period("mtd", as_of=utc(2026, 3, 31, 12))
    previous = period.previous()
    assert (previous.start, previous.end) == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert previous.label == "February 2026"


def test_previous_of_a_rolling_period_is_immediately_before_and_as_long() -> None:
    period = resolve_period("30d", as_of=AS_OF)
    previous = period.previous()
    assert previous.end == period.start
    assert previous.duration == period.duration


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "last week",
        "0d",
        "-3d",
        "7days",
        "2026-13",
        "2026-02-30",
        "2026-3-1",
        "2026-03-10..2026-03-01",
    ],
)
def test_bad_specs_raise_value_error_naming_the_spec_and_the_forms(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_period(spec, as_of=AS_OF)
    message = str(info.value)
    assert repr(spec) in message
    for form in ("today", "yesterday", "7d", "mtd", "YYYY-MM", "YYYY-MM-DD..YYYY-MM-DD"):
        assert form in message


def test_unknown_time_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        resolve_period("today", as_of=AS_OF, tz="Mars/Olympus")


def test_period_rejects_naive_or_inverted_bounds() -> None:
    with pytest.raises(ValueError):
        Period(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2), "x")
    with pytest.raises(ValueError):
        Period(utc(2026, 1, 2), utc(2026, 1, 1), "x")
