"""Reporting periods: turn ``7d``, ``mtd``, ``2026-10`` … into exact UTC bounds.

Every analytics job and report covers one :class:`Period`, a half-open interval
``[start, end)`` of UTC instants. Days and months are calendar days and months in the period's
IANA time zone, so "yesterday" in ``Europe/Berlin`` on the day the clocks go back is 25 hours
long, and stored UTC timestamps are compared against exact UTC bounds.

Accepted specs (``as_of`` defaults to now; a naive ``as_of`` is wall-clock time in ``tz``):

=========================  ============================================================
``today``                  from the start of ``as_of``'s day up to ``as_of``
``yesterday``              the whole calendar day before ``as_of``'s day
``Nd`` (``7d``, ``30d``)   rolling: ``[as_of - N days, as_of)``, N calendar days in ``tz``
``mtd``                    from the first of ``as_of``'s month up to ``as_of``
``YYYY-MM``                that whole calendar month
``YYYY-MM-DD``             that whole calendar day
``YYYY-MM-DD..YYYY-MM-DD`` those days, both ends included
=========================  ============================================================

"To date" periods (``today``, ``mtd``) end at ``as_of`` rather than at the end of the day or
month, so that evaluating the past ``--as-of`` a moment sees exactly what was known then.

:meth:`Period.previous` is the comparison period. It steps back by the period's calendar unit:
a month-anchored period (``YYYY-MM``, ``mtd``) steps back one month per month it spans and keeps
the same wall-clock span, clipped to the previous month's end (``mtd`` on 31 March 14:00 compares
with 1 February to 1 March 00:00); a day-anchored period (``today``, ``yesterday``, days, day
ranges) steps back by its number of days (``today`` until 14:00 compares with yesterday until
14:00); a rolling ``Nd`` period gives the N days immediately before it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

__all__ = ["ACCEPTED_SPECS", "Period", "resolve_period"]

ACCEPTED_SPECS = (
    "today",
    "yesterday",
    "Nd (e.g. 7d, 30d)",
    "mtd",
    "YYYY-MM",
    "YYYY-MM-DD",
    "YYYY-MM-DD..YYYY-MM-DD",
)

_ANCHORS = ("rolling", "day", "month")
_NDAYS = re.compile(r"^([1-9]\d{0,4})d$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
_UTC = dt.UTC


def _zone(tz: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {tz!r} is not a known IANA time zone") from None


def _local(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The naive wall-clock time of a UTC instant in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _utc(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant of a naive wall-clock time in ``zone`` (the earlier one when ambiguous)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(_UTC)


def _add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after ``day``'s month (negative: before)."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


@dataclass(frozen=True)
class Period:
    """A half-open interval ``[start, end)`` of UTC instants, with how to describe and compare it.

    ``start`` and ``end`` are timezone-aware UTC datetimes. ``label`` is a short human name
    ("yesterday, 2026-10-25", "October 2026"); ``tz`` is the IANA zone whose calendar days and
    months the period was cut from. ``anchor`` (``day``, ``month`` or ``rolling``) says how
    :meth:`previous` steps back; build periods with :func:`resolve_period` rather than by hand.
    """

    start: dt.datetime
    end: dt.datetime
    label: str
    tz: str = "UTC"
    anchor: str = "rolling"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("Period bounds must be timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError(f"Period ends ({self.end}) before it starts ({self.start})")
        if self.anchor not in _ANCHORS:
            raise ValueError(f"Period anchor must be one of {_ANCHORS}, got {self.anchor!r}")
        # Normalize to UTC so that equal periods compare equal whatever zone built them.
        object.__setattr__(self, "start", self.start.astimezone(_UTC))
        object.__setattr__(self, "end", self.end.astimezone(_UTC))

    @property
    def duration(self) -> dt.timedelta:
        """``end - start`` in real (UTC) time; a DST day is 23 or 25 hours."""
        return self.end - self.start

    def local_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """``start`` and ``end`` as aware datetimes in the period's time zone."""
        zone = _zone(self.tz)
        return self.start.astimezone(zone), self.end.astimezone(zone)

    def describe(self) -> str:
        """The exact bounds in the period's zone, e.g. ``2026-10-25 00:00 → 2026-10-26 00:00
        (Europe/Berlin, end excluded)``."""
        start, end = self.local_bounds()
        return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} ({self.tz}, end excluded)"

    def contains(self, moment: dt.datetime) -> bool:
        """Whether the aware ``moment`` lies in ``[start, end)``."""
        return self.start <= moment < self.end

    def previous(self) -> Period:
        """The comparison period before this one (see the module docstring for the rules)."""
        zone = _zone(self.tz)
        start, end = _local(self.start, zone), _local(self.end, zone)
        span = end - start  # wall-clock span: a DST day is still one day here
        if self.anchor == "month":
            months = (end.year * 12 + end.month) - (start.year * 12 + start.month)
            if end != _midnight(end.date().replace(day=1)) or months == 0:
                months += 1  # a partial month counts as a whole one
            prev_start = _midnight(_add_months(start.date(), -months))
            whole_months = end == _midnight(_add_months(start.date(), months))
            prev_end = start if whole_months else min(prev_start + span, start)
        elif self.anchor == "day":
            days = span.days + (1 if span % dt.timedelta(days=1) else 0)
            prev_start = start - dt.timedelta(days=max(days, 1))
            prev_end = min(prev_start + span, start)
        else:
            prev_start, prev_end = start - span, start
        return Period(
            start=_utc(prev_start, zone),
            end=_utc(prev_end, zone),
            label=_auto_label(prev_start, prev_end),
            tz=self.tz,
            anchor=self.anchor,
        )


def _auto_label(start: dt.datetime, end: dt.datetime) -> str:
    """A short name for wall-clock bounds: a month, a day, a day range, or the exact times."""
    if start.time() == dt.time() and end.time() == dt.time():
        if start.day == 1 and end.day == 1 and _add_months(start.date(), 1) == end.date():
            return f"{start:%B %Y}"
        last = (end - dt.timedelta(days=1)).date()
        if last == start.date():
            return f"{start:%Y-%m-%d}"
        if last > start.date():
            return f"{start:%Y-%m-%d} to {last:%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def _bad_spec(spec: str, why: str = "") -> ValueError:
    detail = f" ({why})" if why else ""
    return ValueError(
        f"unknown period {spec!r}{detail}; accepted forms: {', '.join(ACCEPTED_SPECS)}"
    )


def _parse_date(text: str, spec: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _bad_spec(spec, f"{text} is not a calendar date") from None


def resolve_period(spec: str, *, as_of: dt.datetime | None = None, tz: str = "UTC") -> Period:
    """The :class:`Period` that ``spec`` names, relative to ``as_of``, in the zone ``tz``.

    ``as_of`` defaults to now; a naive ``as_of`` is read as wall-clock time in ``tz``. Raises
    :class:`ValueError` naming the spec and listing the accepted forms when ``spec`` is not one
    of them (see the module docstring), and when ``tz`` is not an IANA zone.
    """
    zone = _zone(tz)
    if as_of is None:
        as_of = dt.datetime.now(_UTC)
    elif as_of.tzinfo is None:
        as_of = _utc(as_of, zone)
    now = _local(as_of, zone)
    today = _midnight(now.date())
    text = spec.strip().lower()

    def period(start: dt.datetime, end: dt.datetime, label: str, anchor: str) -> Period:
        return Period(_utc(start, zone), _utc(end, zone), label, tz, anchor)

    if text == "today":
        return period(today, now, f"today, {today:%Y-%m-%d}", "day")
    if text == "yesterday":
        day = today - dt.timedelta(days=1)
        return period(day, today, f"yesterday, {day:%Y-%m-%d}", "day")
    if text == "mtd":
        first = _midnight(now.date().replace(day=1))
        return period(first, now, f"{first:%B %Y} to date", "month")
    if match := _NDAYS.match(text):
        days = int(match.group(1))
        start = now - dt.timedelta(days=days)
        label = f"last {days} day" + ("" if days == 1 else "s")
        return period(start, now, label, "rolling")
    if match := _MONTH.match(text):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or year < 1:
            raise _bad_spec(spec, f"{text} is not a calendar month")
        first_day = dt.date(year, month, 1)
        start, end = _midnight(first_day), _midnight(_add_months(first_day, 1))
        return period(start, end, f"{start:%B %Y}", "month")
    if _DAY.match(text):
        day = _midnight(_parse_date(text, spec))
        return period(day, day + dt.timedelta(days=1), f"{day:%Y-%m-%d}", "day")
    if match := _RANGE.match(text):
        first_day = _parse_date(match.group(1), spec)
        last_day = _parse_date(match.group(2), spec)
        if last_day < first_day:
            raise _bad_spec(spec, "the range ends before it starts")
        start, end = _midnight(first_day), _midnight(last_day) + dt.timedelta(days=1)
        return period(start, end, _auto_label(start, end), "day")
    raise _bad_spec(spec)
