"""What a period's dollars rest on beyond token counts: server tools, assumed cache TTLs and
code execution.

* server tools: web search fees are a part of each call's cost (``cost_tools_usd``); the period
  sums them with the searches and fetches that caused them;
* assumed TTL: a cache write whose 5-minute/1-hour split the source did not report is priced at
  the configured TTL (``cache_ttl_assumed``); the dollars that rest on that assumption are
  summed so a report can say how much of the bill would move if it were wrong;
* code execution: billed per container-hour (at least 5 minutes a container) beyond a monthly
  free allowance per organization, so it is not in any call's cost. The period's containers
  are each counted from their first call's start to their last call's end, at least 5 minutes,
  and priced with :func:`clauditor.pricing.code_execution_cost` for the share of a month the
  period covers. An estimate: a container lives a little past its last call, and other
  services of the organization share the allowance.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from clauditor.pricing import PriceTable, code_execution_cost
from clauditor.schema import CLAUDE_CODE_SOURCE

__all__ = ["MIN_CONTAINER_S", "SpendNotes", "claude_code_totals", "spend_notes", "spend_notes_from"]

MIN_CONTAINER_S = 300.0

_TOTALS_SQL = """
SELECT coalesce(sum(cost_tools_usd), 0.0), CAST(coalesce(sum(web_search_requests), 0) AS BIGINT),
    CAST(coalesce(sum(web_fetch_requests), 0) AS BIGINT), count(cache_ttl_assumed),
    coalesce(sum(CASE WHEN cache_ttl_assumed IS NOT NULL THEN cost_cache_write_usd END), 0.0)
FROM calls WHERE start_time >= $start AND start_time < $end
"""
_CONTAINERS_SQL = f"""
SELECT count(*), coalesce(sum(greatest(s, {MIN_CONTAINER_S})), 0.0) / 3600.0 FROM (
    SELECT (epoch_us(max(end_time)) - epoch_us(min(start_time))) / 1e6 AS s
    FROM calls WHERE container_id IS NOT NULL AND start_time >= $start AND start_time < $end
    GROUP BY container_id
)
"""
_COLUMNS = {"cost_tools_usd", "web_search_requests", "web_fetch_requests", "cache_ttl_assumed",
            "container_id"}  # fmt: skip


@dataclass(frozen=True)
class SpendNotes:
    """A period's server-tool spend, assumed-TTL spend and estimated code execution."""

    tools_usd: float = 0.0
    web_searches: int = 0
    web_fetches: int = 0
    assumed_ttl_calls: int = 0
    assumed_ttl_usd: float = 0.0
    containers: int = 0
    container_hours: float = 0.0
    code_execution_usd: float = 0.0

    def lines(self) -> list[str]:
        """The notes as sentences for a terminal or a page (empty when there is nothing)."""
        out = []
        if self.web_searches or self.web_fetches or self.tools_usd:
            out.append(
                f"server tools: ${self.tools_usd:,.2f} of the spend is web search fees "
                f"({self.web_searches:,} searches, {self.web_fetches:,} fetches)"
            )
        if self.assumed_ttl_calls:
            out.append(
                f"assumed cache TTL: ${self.assumed_ttl_usd:,.2f} of cache writes on "
                f"{self.assumed_ttl_calls:,} calls is priced at the configured TTL "
                "([pricing] cache_ttl): their source did not report the 5m/1h split"
            )
        if self.containers:
            out.append(
                f"code execution: {self.containers:,} containers, about "
                f"{self.container_hours:,.2f} container-hours, estimated "
                f"${self.code_execution_usd:,.2f} after the monthly free hours (billed apart "
                "from the calls' cost)"
            )
        return out


def spend_notes(
    con: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime, table: PriceTable
) -> SpendNotes:
    """The :class:`SpendNotes` of the calls in ``[start, end)`` of ``con``'s ``calls``.

    A source that predates these columns (an older Parquet export) gives empty notes.
    """
    have = {row[0] for row in con.execute("DESCRIBE calls").fetchall()}
    if not have >= _COLUMNS:
        return SpendNotes()
    params = {"start": start, "end": end}
    totals = con.execute(_TOTALS_SQL, params).fetchall()[0]
    containers = con.execute(_CONTAINERS_SQL, params).fetchall()[0]
    return spend_notes_from(totals, containers, start, end, table)


def spend_notes_from(
    totals: Sequence[Any],
    containers: Sequence[Any],
    start: dt.datetime,
    end: dt.datetime,
    table: PriceTable,
) -> SpendNotes:
    """The :class:`SpendNotes` of ``[start, end)`` from an engine's two sums: ``totals`` (tool
    dollars, web searches, web fetches, calls with an assumed TTL, their cache-write dollars)
    and ``containers`` (containers, container-hours with each container at least
    :data:`MIN_CONTAINER_S`)."""
    tools, searches, fetches, assumed, assumed_usd = totals
    count, hours = containers
    day = start.astimezone(dt.UTC).date()
    month_days = calendar.monthrange(day.year, day.month)[1]
    months = (end - start).total_seconds() / 86_400 / month_days
    usd = code_execution_cost(float(hours), months, table, day) if count else 0.0
    return SpendNotes(float(tools), int(searches), int(fetches), int(assumed),
                      float(assumed_usd), int(count), float(hours), usd)  # fmt: skip


def claude_code_totals(
    con: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime
) -> tuple[int, float]:
    """Developers' Claude Code calls in ``[start, end)`` of ``con``'s ``calls``: how many, and
    their dollars at list price (spend or not is the config's ``[claude_code] billing``)."""
    calls, dollars = con.execute(
        "SELECT count(*), coalesce(sum(cost_usd), 0) FROM calls "
        "WHERE source = ? AND start_time >= ? AND start_time < ?",
        [CLAUDE_CODE_SOURCE, start, end],
    ).fetchall()[0]
    return int(calls), float(dollars)
