"""The ``calls`` record as a day-partitioned Parquet dataset (the scale path).

``clauditor export`` writes the stored calls as ``DIR/day=YYYY-MM-DD/data_0.parquet`` (the day
in UTC, Hive-style partition folders), which DuckDB, Polars, ClickHouse, Trino or Spark read as
they are. Exporting a day again replaces that day's folder, whole and atomically (written beside
it, then renamed), so a nightly export of "the last two days" never duplicates a row and a reader
never sees half a day.

The other direction: every reader of the store accepts such a folder where it takes a database
file (``--db DIR``), because :func:`clauditor.store.read_connection` hands out
:func:`dataset_connection` for a folder: an in-memory DuckDB whose ``calls`` view reads the
Parquet files, with the same ``daily_costs``, ``feature_costs`` and ``errors`` views as the
file. So costs, analytics, ad-hoc SQL and the report run unchanged over the dataset. A dataset
is read-only: ingest and alert state need a database file.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from clauditor.errors import StoreError
from clauditor.views import DATASET_VIEWS_SQL

__all__ = [
    "ExportSummary",
    "dataset_connection",
    "export_dataset",
    "is_dataset",
    "partition_files",
]

PARTITION = "day"
_GLOB = f"{PARTITION}=*/*.parquet"


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the folder, the UTC days (partitions) replaced and the rows."""

    path: Path
    days: tuple[dt.date, ...]
    rows: int


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder (read as a Parquet dataset) rather than a database file."""
    return Path(path).is_dir()


def export_dataset(
    con: duckdb.DuckDBPyConnection,
    out_dir: str | Path,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> ExportSummary:
    """Write the calls of ``con`` that started in ``[start, end)`` (all when None) under
    ``out_dir``, one folder per UTC day; the days written replace their old folders.

    ``con`` is a connection to a database file (read-only is enough). Calls of a day outside
    the range stay as they were in ``out_dir``: export a whole day to refresh it.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"cannot export to {out}: it is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    where, params = [], []
    if start is not None:
        where.append("start_time >= ?")
        params.append(start)
    if end is not None:
        where.append("start_time < ?")
        params.append(end)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    staging = out / f".export-{uuid.uuid4().hex[:12]}"
    try:
        rows = con.execute(
            f"COPY (SELECT *, CAST(timezone('UTC', start_time) AS DATE) AS {PARTITION} "
            f"FROM calls {condition} ORDER BY start_time) TO '{_quoted(staging)}' "
            f"(FORMAT parquet, PARTITION_BY ({PARTITION}), COMPRESSION zstd)",
            params,
        ).fetchall()[0][0]
        days = []
        for folder in sorted(staging.glob(f"{PARTITION}=*")):
            target = out / folder.name
            if target.exists():
                # Out of the way first, then in: a reader sees the old day or the new one.
                old = out / f".old-{uuid.uuid4().hex[:12]}"
                os.replace(target, old)
                os.replace(folder, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(folder, target)
            days.append(dt.date.fromisoformat(folder.name.split("=", 1)[1]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(out, tuple(days), int(rows or 0))


def dataset_connection(path: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views ``calls``, ``daily_costs``,
    ``feature_costs`` and ``errors`` read the Parquet dataset at ``path``.

    Raises :class:`~clauditor.errors.StoreError` when the folder holds no dataset.
    """
    folder = Path(path)
    partition_files(folder)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        con.execute(
            f"CREATE VIEW calls AS SELECT * EXCLUDE ({PARTITION}) FROM read_parquet("
            f"'{_quoted(folder / _GLOB)}', hive_partitioning = true, union_by_name = true)"
        ).fetchall()
        con.execute(DATASET_VIEWS_SQL).fetchall()
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot read the Parquet dataset {folder}: {exc}") from None
    return con


def partition_files(path: str | Path) -> list[Path]:
    """The Parquet files of the dataset at ``path`` (``day=*/*.parquet``), sorted.

    Raises :class:`~clauditor.errors.StoreError` when there is none.
    """
    folder = Path(path)
    files = sorted(folder.glob(_GLOB))
    if not files:
        raise StoreError(
            f"{folder} is a folder without Parquet day partitions ({_GLOB}): pass a DuckDB "
            "file, or a folder written by `clauditor export`"
        )
    return files


def _quoted(path: Path) -> str:
    """``path`` as the inside of a SQL string literal."""
    return str(path).replace("'", "''")
