"""The DuckDB file: connect, migrate, write batches, read (DESIGN §3, §6).

DuckDB admits one read-write process per file, and while it holds the file no other process can
open it, even read-only. So:

* a writer connects, appends one batch in one transaction and closes (:func:`write_calls`);
* readers open read-only (:func:`read_connection`) and retry with backoff while the file is busy,
  then raise :class:`~clauditor.errors.DatabaseBusyError` naming the holder;
* a writer that may not wait (the in-process exporter) passes ``spool_on_busy=True``: when the
  file stays busy past its short bound the batch is written as a Parquet file into the spool
  folder beside the database, and the next successful write drains the spool. Nothing is lost,
  and since ingest is idempotent on ``span_id`` a batch drained twice still counts once.

Schema changes are numbered migrations (:data:`MIGRATIONS`); opening an older file for writing
upgrades it. Every connection uses UTC as its session time zone.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from clauditor.errors import DatabaseBusyError, StoreError
from clauditor.schema import CALLS_COLUMNS, conform, duckdb_columns_sql

__all__ = [
    "DEFAULT_DB",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WriteResult",
    "default_db_path",
    "drain_spool",
    "insert_calls",
    "load_calls",
    "read_connection",
    "schema_version",
    "spool_dir",
    "write_calls",
    "write_connection",
]

DEFAULT_DB = "clauditor.duckdb"

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?)(?:\.\s|\.$|$)")


def default_db_path() -> Path:
    """``$CLAUDITOR_DB`` or ``./clauditor.duckdb``."""
    return Path(os.environ.get("CLAUDITOR_DB") or DEFAULT_DB)


# --- migrations --------------------------------------------------------------------------------

_VIEWS_V1 = """
CREATE OR REPLACE VIEW daily_costs AS
SELECT
    CAST(timezone('UTC', start_time) AS DATE) AS day,
    coalesce(feature, '(untagged)') AS feature,
    coalesce(response_model, request_model, '(no model)') AS model,
    count(*) AS calls,
    count(*) FILTER (WHERE status = 'error') AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cost_usd) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls
FROM calls
GROUP BY ALL;

CREATE OR REPLACE VIEW feature_costs AS
SELECT
    coalesce(feature, '(untagged)') AS feature,
    count(*) AS calls,
    min(start_time) AS first_call,
    max(start_time) AS last_call,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_input_tokens) AS cache_read_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls
FROM calls
GROUP BY ALL;

CREATE OR REPLACE VIEW errors AS
SELECT * FROM calls WHERE status = 'error';
"""

_QUARANTINE_V2 = """
CREATE TABLE IF NOT EXISTS quarantine (
    received_at TIMESTAMPTZ NOT NULL,
    origin VARCHAR NOT NULL,      -- file:line, or the receiver request that carried it
    reason VARCHAR NOT NULL,
    payload VARCHAR               -- the offending span or line, truncated and scrubbed
);
CREATE TABLE IF NOT EXISTS ingested_files (
    path VARCHAR PRIMARY KEY,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    spans BIGINT,
    rejected BIGINT
);
"""

# Alert state (clauditor.alerts.state): one row per message of an incident (start, each
# escalation, resolve). The primary key is the idempotency key: a run inserts the row BEFORE
# sending, so two runs racing send once; `status` records the delivery, so a failure is retried.
_ALERTS_V3 = """
CREATE TABLE IF NOT EXISTS alerts (
    rule VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    incident VARCHAR NOT NULL,       -- rule|key|when the condition began: the same on every host
    transition VARCHAR NOT NULL,     -- start | escalate:<level> | resolve
    level INTEGER NOT NULL,
    severity VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    message JSON NOT NULL,
    status VARCHAR NOT NULL,         -- sending | sent | failed | undelivered
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_to VARCHAR,            -- sinks that accepted it, comma-separated
    delivered_at TIMESTAMPTZ,
    last_error VARCHAR,
    claimed_by VARCHAR,
    claimed_at TIMESTAMPTZ,
    PRIMARY KEY (rule, key, incident, transition)
);
"""

# Version 4: token sums as BIGINT (DuckDB's sum of BIGINT is a DECIMAL(38,0), which JSON
# tools then read as text).
_VIEWS_V4 = _VIEWS_V1
for _column in (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
):
    _VIEWS_V4 = _VIEWS_V4.replace(
        f"sum({_column}) AS {_column}", f"CAST(sum({_column}) AS BIGINT) AS {_column}"
    )

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "calls table and its views",
        f"CREATE TABLE calls (\n    {duckdb_columns_sql()}\n);\n{_VIEWS_V1}",
    ),
    (2, "quarantine and ingested files", _QUARANTINE_V2),
    (3, "alert state", _ALERTS_V3),
    (4, "token sums in the views as BIGINT", _VIEWS_V4),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _ensure_migrated(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
    ).fetchall()
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, description, sql in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            con.execute(sql).fetchall()
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description]
            ).fetchall()
            con.execute("COMMIT").fetchall()
        except Exception:
            con.execute("ROLLBACK").fetchall()
            raise


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The newest migration applied to the open database (0 for an empty file)."""
    try:
        rows = con.execute("SELECT max(version) FROM schema_migrations").fetchall()
        row = rows[0] if rows else None
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


# --- connections -------------------------------------------------------------------------------


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _holder(exc: Exception) -> str | None:
    match = _LOCK_HOLDER.search(str(exc))
    return match.group(1).strip() if match else None


def _looks_like_duckdb(path: Path) -> bool:
    """DuckDB files carry the magic bytes ``DUCK`` at offset 8 (an empty file is fine too)."""
    with path.open("rb") as handle:
        head = handle.read(12)
    return not head or head[8:12] == b"DUCK"


def _open(path: Path, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying with exponential backoff (10 ms doubling to 0.5 s) while locked."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    started = time.monotonic()
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            con.execute("SET TimeZone = 'UTC'").fetchall()
            return con
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open database {path}: {exc}") from None
            if time.monotonic() + delay > deadline:
                raise DatabaseBusyError(
                    str(path), _holder(exc), time.monotonic() - started
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except duckdb.Error as exc:
            if path.is_file() and not _looks_like_duckdb(path):
                raise StoreError(
                    f"{path} is not a DuckDB database file (for telemetry files use "
                    "`clauditor ingest`)"
                ) from None
            raise StoreError(f"cannot open database {path}: {exc}") from None


@contextlib.contextmanager
def write_connection(
    path: str | Path, *, timeout_s: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a migrated database, closed on exit.

    Hold it only for one batch: while it is open no other process can read the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only=False, timeout_s=timeout_s)
    try:
        _ensure_migrated(con)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def read_connection(
    path: str | Path, *, timeout_s: float = 10.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, retried with backoff while a writer holds the file.

    A file written by an older clauditor is upgraded first (briefly opening it for writing).
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(
            f"no database at {path}: run `clauditor ingest` or `clauditor demo` first, "
            "or point --db / $CLAUDITOR_DB at an existing file"
        )
    con = _open(path, read_only=True, timeout_s=timeout_s)
    if schema_version(con) < SCHEMA_VERSION:
        con.close()
        with write_connection(path, timeout_s=timeout_s):
            pass
        con = _open(path, read_only=True, timeout_s=timeout_s)
    try:
        yield con
    finally:
        con.close()


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows new to the table, rows whose span_id was already there, and
    whether the batch went to the spool instead (the database was busy)."""

    inserted: int = 0
    duplicates: int = 0
    spooled: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.spooled + other.spooled,
        )


_COLUMN_NAMES = ", ".join(name for name, _, _ in CALLS_COLUMNS)


def insert_calls(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> WriteResult:
    """Insert ``frame`` (conformed) in the caller's open transaction; duplicates are skipped.

    For a writer that keeps one connection across back-to-back batches (the receiver); most
    callers want :func:`write_calls`, which opens, writes one batch and closes.
    """
    unique = frame.unique(subset="span_id", keep="first", maintain_order=True)
    batch = unique.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    before = con.execute("SELECT count(*) FROM calls").fetchall()[0][0]
    con.execute(
        f"INSERT INTO calls ({_COLUMN_NAMES}) SELECT {_COLUMN_NAMES} FROM batch "
        "ON CONFLICT (span_id) DO NOTHING"
    ).fetchall()
    after = con.execute("SELECT count(*) FROM calls").fetchall()[0][0]
    inserted = int(after - before)
    return WriteResult(inserted=inserted, duplicates=frame.height - inserted)


def spool_dir(path: str | Path) -> Path:
    """The folder beside the database where batches wait while the file is busy."""
    path = Path(path)
    return path.with_name(path.name + ".spool")


def _spool(path: Path, frame: pl.DataFrame) -> WriteResult:
    folder = spool_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.tmp"
    frame.write_parquet(tmp)
    os.replace(tmp, folder / f"{name}.parquet")  # atomic: a reader never sees half a file
    return WriteResult(spooled=frame.height)


def _drain(con: duckdb.DuckDBPyConnection, path: Path) -> WriteResult:
    folder = spool_dir(path)
    if not folder.is_dir():
        return WriteResult()
    total = WriteResult()
    for file in sorted(folder.glob("*.parquet")):
        try:
            frame = conform(pl.read_parquet(file))
        except Exception:
            continue  # being written by another process, or unreadable: leave it
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            total = total + insert_calls(con, frame)
            con.execute("COMMIT").fetchall()
        except Exception:
            con.execute("ROLLBACK").fetchall()
            raise
        # Deleted after the commit: a crash in between re-drains it, and span_id dedupes.
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
    return total


def drain_spool(path: str | Path, *, timeout_s: float = 30.0) -> WriteResult:
    """Write every spooled batch into the database and remove it from the spool."""
    path = Path(path)
    if not spool_dir(path).is_dir():
        return WriteResult()
    with write_connection(path, timeout_s=timeout_s) as con:
        return _drain(con, path)


def write_calls(
    path: str | Path,
    frame: pl.DataFrame,
    *,
    timeout_s: float = 30.0,
    spool_on_busy: bool = False,
    drain: bool = True,
    before_commit: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> WriteResult:
    """Append ``frame`` (any subset of the ``calls`` columns) in one transaction, then close.

    Rows whose ``span_id`` is already stored are skipped and counted as duplicates. With
    ``spool_on_busy`` a database that stays locked for ``timeout_s`` gets the batch spooled
    instead of an exception. ``drain`` also writes any spooled batches. ``before_commit`` runs
    inside the transaction (to record, say, quarantined spans atomically with the batch).
    """
    path = Path(path)
    frame = conform(frame)
    try:
        ctx = write_connection(path, timeout_s=timeout_s)
        con = ctx.__enter__()
    except DatabaseBusyError:
        if spool_on_busy:
            return _spool(path, frame)
        raise
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            result = insert_calls(con, frame) if frame.height else WriteResult()
            if before_commit is not None:
                before_commit(con)
            con.execute("COMMIT").fetchall()
        except Exception:
            con.execute("ROLLBACK").fetchall()
            raise
        if drain:
            result = result + _drain(con, path)
        return result
    finally:
        ctx.__exit__(None, None, None)


# --- reading -----------------------------------------------------------------------------------


def load_calls(
    path: str | Path,
    *,
    where: str | None = None,
    params: list[object] | None = None,
    columns: list[str] | None = None,
    timeout_s: float = 10.0,
) -> pl.DataFrame:
    """Rows of ``calls`` as a Polars frame, optionally filtered by a SQL ``where`` clause."""
    cols = ", ".join(columns) if columns else "*"
    sql = f"SELECT {cols} FROM calls" + (f" WHERE {where}" if where else "")
    with read_connection(path, timeout_s=timeout_s) as con:
        frame = con.sql(sql, params=params or None).pl()
    if "start_time" in frame.columns:
        frame = frame.with_columns(
            pl.col("start_time").dt.convert_time_zone("UTC"),
        )
    if "end_time" in frame.columns:
        frame = frame.with_columns(pl.col("end_time").dt.convert_time_zone("UTC"))
    return frame
