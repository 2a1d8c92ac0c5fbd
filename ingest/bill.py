"""Anthropic's bill in the database: fetch the Admin API's daily buckets, store them, read them.

Both reports are fetched in 1-day buckets, which are UTC days whatever the configured time zone.
The usage report is grouped by every dimension reconciliation can use (model, API key,
workspace, service tier, context window, inference geo), the cost report by workspace and
description (which carries the model and token type of each amount).

The reports settle with a lag, so a day is fetched again until it is settled: a re-run fetches
the days of the range not stored yet, plus every stored day fetched less than ``settle_days``
(default 3) after it ended. A fetch replaces the day's rows in one transaction and stamps the
day in ``bill_days`` with ``fetched_at``; a day fetched before it ended is *partial*. Nothing
is written until both reports were read, and the database is not held open during the fetch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from clauditor.errors import StoreError
from clauditor.ingest.admin_api import USAGE_GROUPS, AdminApiError, AdminClient
from clauditor.store import read_connection, transaction, write_connection

__all__ = [
    "BILL_TOKEN_COLUMNS",
    "SETTLE_DAYS",
    "Bill",
    "FetchSummary",
    "days_to_fetch",
    "fetch_bill",
    "load_bill",
]

SETTLE_DAYS = 3
REPORTS = ("usage", "cost")
# Token columns of bill_usage, in the order reconciliation prints them.
BILL_TOKEN_COLUMNS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "web_search_requests",
)
# A usage row's dimensions: the usage report's group-by keys, stored as they come.
_DIMENSIONS = USAGE_GROUPS
_COST_FIELDS = (
    "workspace_id",
    "description",
    "cost_type",
    "token_type",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
)
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class FetchSummary:
    """What one fetch stored: the UTC days it (re)fetched and the rows of each report."""

    days: tuple[dt.date, ...]
    usage_rows: int
    cost_rows: int
    fetched_at: dt.datetime


@dataclass(frozen=True)
class Bill:
    """The stored bill of a range of UTC days.

    ``usage``: bill_usage rows; ``costs``: bill_costs rows; ``days``: one row per day with
    ``usage_fetched_at`` and ``cost_fetched_at`` (NULL: that report not fetched) and
    ``partial`` (either report was fetched before the day ended).
    """

    usage: pl.DataFrame
    costs: pl.DataFrame
    days: pl.DataFrame


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def days_to_fetch(
    stored: Mapping[dt.date, dt.datetime],
    first: dt.date,
    last: dt.date,
    *,
    now: dt.datetime,
    settle_days: int = SETTLE_DAYS,
) -> list[dt.date]:
    """The days of ``[first, last]`` to fetch: not stored, or fetched before they settled.

    ``stored`` maps a day to when it was fetched. Days that have not begun at ``now`` are left
    out (there is nothing to bill yet).
    """
    wanted = []
    day = first
    while day <= last:
        if _midnight(day) <= now:
            fetched = stored.get(day)
            settled_at = _midnight(day) + _DAY * (1 + settle_days)
            if fetched is None or fetched < settled_at:
                wanted.append(day)
        day += _DAY
    return wanted


def _stored_days(db: Path) -> dict[dt.date, dt.datetime]:
    """The day -> fetched_at of days whose two reports are both stored (the older stamp)."""
    if not db.exists():
        return {}
    with read_connection(db) as con:
        rows = con.execute(
            "SELECT day, min(fetched_at) FROM bill_days GROUP BY day HAVING count(*) = 2"
        ).fetchall()
    return {day: fetched.astimezone(dt.UTC) for day, fetched in rows}


def _bucket_day(bucket: Mapping[str, Any]) -> dt.date:
    try:
        start = dt.datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise AdminApiError(f"a bucket without a valid starting_at: {bucket!r}"[:200]) from None
    return start.astimezone(dt.UTC).date()


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage_rows(buckets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for bucket in buckets:
        day = _bucket_day(bucket)
        for r in bucket.get("results") or []:
            creation = r.get("cache_creation") or {}
            tools = r.get("server_tool_use") or {}
            rows.append(
                {
                    "day": day,
                    **{d: r.get(d) for d in _DIMENSIONS},
                    "uncached_input_tokens": _count(r.get("uncached_input_tokens")),
                    "cache_read_input_tokens": _count(r.get("cache_read_input_tokens")),
                    "cache_creation_5m_input_tokens": _count(
                        creation.get("ephemeral_5m_input_tokens")
                    ),
                    "cache_creation_1h_input_tokens": _count(
                        creation.get("ephemeral_1h_input_tokens")
                    ),
                    "output_tokens": _count(r.get("output_tokens")),
                    "web_search_requests": _count(tools.get("web_search_requests")),
                }
            )
    return rows


def _usd(amount: Any, currency: Any) -> float | None:
    """The API's amount (a decimal string in the lowest currency unit) in dollars."""
    if currency != "USD":
        return None
    try:
        return float(Decimal(str(amount)) / 100)
    except InvalidOperation:
        raise AdminApiError(
            f"the cost report sent an amount that is not a number: {amount!r}"
        ) from None


def _cost_rows(buckets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for bucket in buckets:
        day = _bucket_day(bucket)
        for r in bucket.get("results") or []:
            currency = str(r.get("currency") or "USD")
            rows.append(
                {
                    "day": day,
                    **{f: r.get(f) for f in _COST_FIELDS},
                    "currency": currency,
                    "amount": str(r.get("amount", "0")),
                    "amount_usd": _usd(r.get("amount", "0"), currency),
                }
            )
    return rows


_USAGE_SCHEMA = {
    "day": pl.Date,
    **dict.fromkeys(_DIMENSIONS, pl.String),
    **dict.fromkeys(BILL_TOKEN_COLUMNS, pl.Int64),
}
_COST_SCHEMA = {
    "day": pl.Date,
    **dict.fromkeys(_COST_FIELDS, pl.String),
    "currency": pl.String,
    "amount": pl.String,
    "amount_usd": pl.Float64,
}


def fetch_bill(
    db: str | Path,
    first: dt.date,
    last: dt.date,
    *,
    client: AdminClient | None = None,
    now: dt.datetime | None = None,
    settle_days: int = SETTLE_DAYS,
) -> FetchSummary:
    """Fetch the UTC days of ``[first, last]`` that are missing or unsettled, and store them.

    ``client`` defaults to one built from ``$ANTHROPIC_ADMIN_KEY`` (raising
    :class:`~clauditor.ingest.admin_api.AdminKeyError` when it is not set). ``now`` (default:
    the clock) decides which days are settled and is stored as their ``fetched_at``.
    """
    db = Path(db)
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    wanted = days_to_fetch(_stored_days(db), first, last, now=now, settle_days=settle_days)
    if not wanted:
        return FetchSummary((), 0, 0, now)
    own = client is None
    api = client or AdminClient()
    try:
        # One span from the first to the last wanted day: the settled days between them (rare)
        # are fetched again too, which costs a little and keeps it to one paginated request.
        start, end = _midnight(wanted[0]), _midnight(wanted[-1]) + _DAY
        usage = _usage_rows(api.usage_buckets(start, end))
        costs = _cost_rows(api.cost_buckets(start, end))
    finally:
        if own:
            api.close()
    days = [wanted[0] + _DAY * i for i in range((wanted[-1] - wanted[0]).days + 1)]
    usage_frame = pl.DataFrame(
        [r for r in usage if wanted[0] <= r["day"] <= wanted[-1]], schema=_USAGE_SCHEMA
    )
    cost_frame = pl.DataFrame(
        [r for r in costs if wanted[0] <= r["day"] <= wanted[-1]], schema=_COST_SCHEMA
    )
    stamps = pl.DataFrame(
        {
            "report": [r for _ in days for r in REPORTS],
            "day": [d for d in days for _ in REPORTS],
            "fetched_at": [now] * (len(days) * len(REPORTS)),
        },
        schema={"report": pl.String, "day": pl.Date, "fetched_at": pl.Datetime("us", "UTC")},
    )
    with write_connection(db) as con, transaction(con):
        span = [days[0], days[-1]]
        for table in ("bill_usage", "bill_costs", "bill_days"):
            con.execute(f"DELETE FROM {table} WHERE day BETWEEN ? AND ?", span).fetchall()
        for table, frame in (
            ("bill_usage", usage_frame),
            ("bill_costs", cost_frame),
            ("bill_days", stamps),
        ):
            con.register("incoming", frame.to_arrow())
            columns = ", ".join(frame.columns)
            con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM incoming")
            con.unregister("incoming")
    return FetchSummary(tuple(days), usage_frame.height, cost_frame.height, now)


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pl.DataFrame:
    return con.sql(sql, params=params).pl()


def load_bill(db: str | Path, first: dt.date, last: dt.date) -> Bill:
    """The stored bill of the UTC days ``[first, last]`` (see :class:`Bill`)."""
    span = [first, last]
    with read_connection(db) as con:
        try:
            usage = _frame(
                con, "SELECT * FROM bill_usage WHERE day BETWEEN ? AND ? ORDER BY day", span
            )
            costs = _frame(
                con, "SELECT * FROM bill_costs WHERE day BETWEEN ? AND ? ORDER BY day", span
            )
            days = _frame(
                con,
                """
                SELECT day,
                       max(fetched_at) FILTER (WHERE report = 'usage') AS usage_fetched_at,
                       max(fetched_at) FILTER (WHERE report = 'cost') AS cost_fetched_at,
                       bool_or(fetched_at < day + INTERVAL 1 DAY) AS partial
                FROM bill_days WHERE day BETWEEN ? AND ? GROUP BY day ORDER BY day
                """,
                span,
            )
        except duckdb.CatalogException as exc:  # a Parquet dataset folder has no bill tables
            raise StoreError(f"no stored bill in {db}: {exc}") from None
    return Bill(
        usage.cast({k: v for k, v in _USAGE_SCHEMA.items() if k in usage.columns}),
        costs.cast({k: v for k, v in _COST_SCHEMA.items() if k in costs.columns}),
        days,
    )
