"""Read-only ad-hoc SQL (``clauditor query``) and repricing of stored calls.

``run_query`` accepts exactly one statement, and only a read (``SELECT``, ``EXPLAIN``, or a
``WITH ... SELECT``): anything else is refused before it runs, with a message naming the
statement type, and the connection is read-only as a second line of defence, so the file is never
changed. The stable views are ``calls``, ``daily_costs``, ``feature_costs`` and ``errors``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from clauditor.config import Config
from clauditor.errors import ReadOnlyQueryError, StoreError
from clauditor.pricing import price_calls
from clauditor.schema import COST_COLUMNS
from clauditor.store import load_calls, read_connection, write_connection

__all__ = ["run_query", "reprice_all"]

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


def reprice_all(db: str | Path, config: Config | None = None) -> tuple[int, int]:
    """Recompute every stored call's cost with the current prices; returns (changed, unpriced).

    Runs in one transaction: a failure leaves every old cost in place.
    """
    table = (config or Config()).price_table()
    calls = load_calls(db)
    if calls.height == 0:
        return 0, 0
    repriced = price_calls(calls, table)
    changed = repriced.filter(
        pl.any_horizontal(
            pl.col(c).ne_missing(calls.get_column(c)) for c in (*COST_COLUMNS, "price_version")
        )
    ).select("span_id", *COST_COLUMNS, "price_version")
    unpriced = int(repriced.get_column("cost_usd").null_count())
    if changed.height == 0:
        return 0, unpriced
    updates = changed.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    assignments = ", ".join(f"{c} = updates.{c}" for c in (*COST_COLUMNS, "price_version"))
    with write_connection(db) as con:
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            con.execute(
                f"UPDATE calls SET {assignments} FROM updates WHERE calls.span_id = updates.span_id"
            ).fetchall()
            con.execute("COMMIT").fetchall()
        except Exception:
            con.execute("ROLLBACK").fetchall()
            raise
    return changed.height, unpriced
