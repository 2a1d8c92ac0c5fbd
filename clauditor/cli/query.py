"""Reading the calls out: ``query`` (sandboxed SQL) and ``export`` (Parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clauditor.cli._common import (
    AsOfOpt,
    ConfigOpt,
    DbOpt,
    FormatOpt,
    SourceOpt,
    handles_errors,
    resolve_db,
    resolve_source,
    resolve_span,
)
from clauditor.output import Format, count, emit, out


@handles_errors
def query(
    sql: Annotated[
        str,
        typer.Argument(help="One read: SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN."),
    ],
    db: SourceOpt = None,
    fmt: FormatOpt = Format.table,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Stop the query after this many seconds.")
    ] = 60.0,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB's memory cap for the query, e.g. 2GB.")
    ] = "2GB",
) -> None:
    """Run read-only ad-hoc SQL over the views: calls, daily_costs, feature_costs, errors.

    The query runs in a sandbox that can read only the database (or Parquet folder) it is
    given: no file, extension or network, no change to the database, a time and memory limit.
    """
    from clauditor.analytics.engine import is_clickhouse
    from clauditor.sql import run_query

    source = resolve_source(db)
    if is_clickhouse(source):  # read-only by ClickHouse's own setting (clickhouse/query.py)
        from clauditor.clickhouse.query import run_query as run_on_clickhouse

        result = run_on_clickhouse(str(source), sql, timeout_s=timeout, memory_limit=memory_limit)
    else:
        result = run_query(source, sql, timeout_s=timeout, memory_limit=memory_limit)
    emit(result, fmt, exact=True)  # the SQL chose the precision: print every digit it returned


@handles_errors
def export(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of the dataset (created if missing).")
    ],
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            "-p",
            help="Only these calls (as for the other commands). Default: every call.",
            show_default=False,
        ),
    ] = None,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write the calls as a Parquet dataset, one folder per UTC day.

    Exporting a day again replaces it. Any reading command's --db also takes such a folder.
    """
    from clauditor.dataset import export_dataset
    from clauditor.store import read_connection

    start = end = None
    if period is not None:
        _, span = resolve_span(config, period, as_of)
        start, end = span.start, span.end
    with read_connection(resolve_db(db)) as con:
        summary = export_dataset(con, out_dir, start=start, end=end)
    days = summary.days
    where = f"{days[0]}..{days[-1]}, {len(days)} day(s)" if days else "no calls in range"
    out.print(f"exported {count(summary.rows, 'call')} to {summary.path} ({where})", markup=False)


__all__ = ["export", "query"]
