"""Read-only ad-hoc SQL (``clauditor query``) and repricing of stored calls.

``run_query`` accepts exactly one statement, and only a read (``SELECT``, ``EXPLAIN``, or a
``WITH ... SELECT``): anything else is refused before it runs, with a message naming the
statement type, and the connection is read-only as a second line of defence, so the file is never
changed. The stable views are ``calls``, ``daily_costs``, ``feature_costs`` and ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from clauditor.config import Config
from clauditor.errors import ReadOnlyQueryError, StoreError
from clauditor.pricing import price_calls
from clauditor.schema import PRICED_COLUMNS
from clauditor.store import insert_in_transaction, load_calls, read_connection, write_connection

__all__ = ["RepriceResult", "reprice_all", "run_query"]

_READ_TYPES = {"SELECT", "EXPLAIN"}


def run_query(db: str | Path, sql: str) -> pl.DataFrame:
    """Run one read-only statement against ``db`` and return its result as a frame."""
    if not sql.strip():
        raise ReadOnlyQueryError("empty query: give one SELECT statement")
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse the query: {exc}") from None
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"give exactly one statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READ_TYPES:
        raise ReadOnlyQueryError(
            f"refused: {kind} statements are not allowed; `clauditor query` is read-only "
            "(SELECT and EXPLAIN only) and the database was not changed"
        )
    with read_connection(db) as con:
        try:
            return con.sql(sql).pl()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            if "read-only" in message or "read only" in message:
                raise ReadOnlyQueryError(f"refused: {message}") from None
            raise StoreError(f"query failed: {message}") from None


@dataclass(frozen=True)
class RepriceResult:
    """What ``clauditor reprice`` changed.

    ``changed`` rows had any priced column change (cost, rate, price version); ``newly_priced``
    of them had no price before; ``unpriced`` rows still have none. ``usd_before`` and
    ``usd_after`` sum ``cost_usd`` over the changed rows (NULL as 0), so ``usd_after -
    usd_before`` is the dollars that moved.
    """

    changed: int = 0
    newly_priced: int = 0
    unpriced: int = 0
    usd_before: float = 0.0
    usd_after: float = 0.0
    unpriced_models: tuple[str, ...] = ()


def reprice_all(db: str | Path, config: Config | None = None) -> RepriceResult:
    """Reprice every stored call whose rate card, tier, rates or costs changed.

    Covers rows that had no price because their model was unknown. Runs in one transaction: a
    failure leaves every old cost in place.
    """
    table = (config or Config()).price_table()
    calls = load_calls(db)
    if calls.height == 0:
        return RepriceResult()
    repriced = price_calls(calls, table)
    changed_mask = pl.any_horizontal(
        pl.col(c).ne_missing(calls.get_column(c)) for c in PRICED_COLUMNS
    )
    changed = repriced.filter(changed_mask).select("span_id", *PRICED_COLUMNS)
    before = calls.filter(pl.col("span_id").is_in(changed.get_column("span_id").implode()))
    still = repriced.filter(pl.col("cost_usd").is_null())
    result = RepriceResult(
        changed=changed.height,
        newly_priced=int(before.get_column("cost_usd").null_count())
        - int(changed.get_column("cost_usd").null_count()),
        unpriced=still.height,
        usd_before=float(before.get_column("cost_usd").fill_null(0.0).sum()),
        usd_after=float(changed.get_column("cost_usd").fill_null(0.0).sum()),
        unpriced_models=tuple(
            sorted(
                still.select(pl.coalesce("response_model", "request_model").fill_null("(no model)"))
                .to_series()
                .unique()
                .to_list()
            )
        ),
    )
    if changed.height == 0:
        return result
    assignments = ", ".join(f"{c} = updates.{c}" for c in PRICED_COLUMNS)
    update = f"UPDATE calls SET {assignments} FROM updates WHERE calls.span_id = updates.span_id"
    with write_connection(db) as con:
        con.register("updates", changed.to_arrow())
        insert_in_transaction(con, None, lambda c: c.execute(update).fetchall() and None)
        con.unregister("updates")
    return result
