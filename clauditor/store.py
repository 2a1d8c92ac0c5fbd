"""The DuckDB file: connect, migrate, write batches, read.

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
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from clauditor.dataset import dataset_connection
from clauditor.errors import DatabaseBusyError, StoreError
from clauditor.redact import scrub
from clauditor.schema import (
    CALLS_COLUMNS,
    CALLS_SCHEMA,
    PRICED_COLUMNS,
    RATE_COLUMNS,
    SOURCES,
    conform,
)
from clauditor.views import VIEWS_V1, VIEWS_V4, VIEWS_V9

__all__ = [
    "DEFAULT_DB",
    "MIGRATIONS",
    "SAME_CALL_COLUMNS",
    "SAME_CALL_COUNTS",
    "SAME_CALL_LABELS",
    "SCHEMA_VERSION",
    "IngestedFile",
    "QuarantineEntry",
    "WriteResult",
    "Writer",
    "default_db_path",
    "drain_spool",
    "insert_calls",
    "insert_in_transaction",
    "load_calls",
    "read_connection",
    "same_call",
    "schema_version",
    "spool_dir",
    "transaction",
    "write_calls",
    "write_connection",
]

DEFAULT_DB = "clauditor.duckdb"

_log = logging.getLogger(__name__)

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?)(?:\.\s|\.$|$)")


def default_db_path() -> Path:
    """``$CLAUDITOR_DB`` or ``./clauditor.duckdb``."""
    return Path(os.environ.get("CLAUDITOR_DB") or DEFAULT_DB)


# --- migrations --------------------------------------------------------------------------------

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

# Version 5: the response id as a column, filled in for the rows already stored, so rows of two
# instrumentations for one call meet across batches. Ingest fills it; for frames made some
# other way (tests, older spools) the insert falls back to the attribute.
_RESPONSE_ID_SQL = "json_extract_string(attributes, '$.\"gen_ai.response.id\"')"
_RESPONSE_ID_OR_ATTRIBUTE = f"coalesce(response_id, {_RESPONSE_ID_SQL})"
_RESPONSE_ID_V5 = f"""
ALTER TABLE calls ADD COLUMN IF NOT EXISTS response_id VARCHAR;
UPDATE calls SET response_id = {_RESPONSE_ID_SQL} WHERE response_id IS NULL;
"""

# Version 6: server-tool counts, the cloud location, the tools' cost part, the TTL mark and the
# rates each call was priced at. The rates of stored rows are filled in from the built-in table
# where the row was priced by the card that prices it now (so they agree with its costs); the
# others wait for `clauditor reprice`, which refills every priced column.
_PRICING_V6_COLUMNS = (
    "web_search_requests",
    "web_fetch_requests",
    "code_execution_requests",
    "container_id",
    "cloud_region",
    "cost_tools_usd",
    "cache_ttl_assumed",
    *RATE_COLUMNS,
)


def _pricing_v6(con: duckdb.DuckDBPyConnection) -> None:
    types = {name: sql_type for name, sql_type, _ in CALLS_COLUMNS}
    for name in _PRICING_V6_COLUMNS:
        con.execute(f"ALTER TABLE calls ADD COLUMN IF NOT EXISTS {name} {types[name]}").fetchall()
    from clauditor.pricing import price_calls

    have = {row[0] for row in con.execute("DESCRIBE calls").fetchall()}
    inputs = [
        n
        for n, _, _ in CALLS_COLUMNS
        if n in have and n not in PRICED_COLUMNS and n not in ("attributes", "resource")
    ]
    stored = con.sql(f"SELECT {', '.join(inputs)}, price_version FROM calls").pl()
    if stored.height == 0:
        return
    priced = price_calls(stored.rename({"price_version": "_stored_version"}))
    same = priced.filter(pl.col("price_version") == pl.col("_stored_version")).select(
        "span_id", "cache_ttl_assumed", *RATE_COLUMNS
    )
    fill = same.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    sets = ", ".join(f"{c} = fill.{c}" for c in ("cache_ttl_assumed", *RATE_COLUMNS))
    where = "calls.span_id = fill.span_id"
    con.execute(f"UPDATE calls SET {sets}, cost_tools_usd = 0.0 FROM fill WHERE {where}").fetchall()


# Version 7: Anthropic's bill as the Admin API reports it (clauditor.ingest.bill), kept so that
# `clauditor reconcile` runs offline. Days are UTC days (the API's 1d buckets); a fetch replaces
# a day's rows and stamps it in bill_days, so how fresh each day is stays known. The calls table
# is untouched.
_BILL_V7 = """
CREATE TABLE IF NOT EXISTS bill_usage (
    day DATE NOT NULL,
    model VARCHAR,
    api_key_id VARCHAR,
    workspace_id VARCHAR,
    service_tier VARCHAR,
    context_window VARCHAR,
    inference_geo VARCHAR,
    uncached_input_tokens BIGINT NOT NULL,
    cache_read_input_tokens BIGINT NOT NULL,
    cache_creation_5m_input_tokens BIGINT NOT NULL,
    cache_creation_1h_input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    web_search_requests BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bill_costs (
    day DATE NOT NULL,
    workspace_id VARCHAR,
    description VARCHAR,
    cost_type VARCHAR,
    token_type VARCHAR,
    model VARCHAR,
    service_tier VARCHAR,
    context_window VARCHAR,
    inference_geo VARCHAR,
    currency VARCHAR NOT NULL,
    amount VARCHAR NOT NULL,      -- as sent: a decimal string in the lowest unit (cents)
    amount_usd DOUBLE             -- NULL for another currency
);
CREATE TABLE IF NOT EXISTS bill_days (
    report VARCHAR NOT NULL,      -- usage | cost
    day DATE NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (report, day)
);
"""

# Version 8: the cost a source reported itself (Claude Code's cost_usd); NULL for the rows
# already stored, none of which came from a source that reports one.
_REPORTED_COST_V8 = "ALTER TABLE calls ADD COLUMN IF NOT EXISTS reported_cost_usd DOUBLE;"

# The table as version 1 created it: every column of the record; later migrations add theirs.
_ADDED_AFTER_V1 = {"response_id", *_PRICING_V6_COLUMNS, "reported_cost_usd"}
_V1_COLUMNS = ",\n    ".join(
    f"{name} {sql_type}" for name, sql_type, _ in CALLS_COLUMNS if name not in _ADDED_AFTER_V1
)

MIGRATIONS: tuple[tuple[int, str, str | Callable[[duckdb.DuckDBPyConnection], None]], ...] = (
    (1, "calls table and its views", f"CREATE TABLE calls (\n    {_V1_COLUMNS}\n);\n{VIEWS_V1}"),
    (2, "quarantine and ingested files", _QUARANTINE_V2),
    (3, "alert state", _ALERTS_V3),
    (4, "token sums in the views as BIGINT", VIEWS_V4),
    (5, "response id column", _RESPONSE_ID_V5),
    (6, "server tools, cloud region, tools cost, assumed TTL, rates", _pricing_v6),
    (7, "Anthropic's bill: usage and cost report buckets", _BILL_V7),
    (8, "cost reported by the source", _REPORTED_COST_V8),
    (9, "count_tokens calls apart in the views", VIEWS_V9),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN on ``con``; COMMIT when the block ends, ROLLBACK (and re-raise) when it raises.

    The one way clauditor opens a transaction: every write goes through it.
    """
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    con.execute("COMMIT").fetchall()


def _ensure_migrated(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
    ).fetchall()
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, description, sql in MIGRATIONS:
        if version in done:
            continue
        with transaction(con):
            if callable(sql):
                sql(con)
            else:
                con.execute(sql).fetchall()
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description]
            ).fetchall()


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
    # The last: this very process holds the file open the other way (the receiver's writer
    # between batches, read by a test or an embedding app); it is as busy as a lock.
    return (
        "Could not set lock" in text
        or "Conflicting lock" in text
        or "with a different configuration than existing connections" in text
    )


def _holder(exc: Exception) -> str | None:
    match = _LOCK_HOLDER.search(str(exc))
    return match.group(1).strip() if match else None


def _looks_like_duckdb(path: Path) -> bool:
    """DuckDB files carry the magic bytes ``DUCK`` at offset 8 (an empty file is fine too)."""
    with path.open("rb") as handle:
        head = handle.read(12)
    return not head or head[8:12] == b"DUCK"


def _open(
    path: Path, *, read_only: bool, timeout_s: float, config: Mapping[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying with exponential backoff (10 ms doubling to 0.5 s) while locked."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    started = time.monotonic()
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=dict(config or {}))
            if config is None:  # with a config, the caller sets the zone (it may lock settings)
                con.execute("SET TimeZone = 'UTC'").fetchall()
            return con
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
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
    if path.is_dir():
        raise StoreError(
            f"{path} is a folder (a Parquet dataset, read-only); writing needs a DuckDB file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only=False, timeout_s=timeout_s)
    try:
        _ensure_migrated(con)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def read_connection(
    path: str | Path, *, timeout_s: float = 10.0, config: Mapping[str, Any] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, retried with backoff while a writer holds the file.

    A file written by an older clauditor is upgraded first (briefly opening it for writing).
    A folder is read as a Parquet dataset (:func:`clauditor.dataset.dataset_connection`).
    ``config`` is DuckDB's startup configuration for the file's connection (the SQL sandbox,
    :func:`clauditor.sql.sandboxed_connection`, passes its own); the caller then sets the
    session time zone itself.
    """
    path = Path(path)
    if path.is_dir():
        dataset = dataset_connection(path)
        try:
            yield dataset
        finally:
            dataset.close()
        return
    if not path.exists():
        raise StoreError(
            f"no database at {path}: run `clauditor ingest` or `clauditor demo` first, "
            "or point --db / $CLAUDITOR_DB at an existing file"
        )
    con = _open(path, read_only=True, timeout_s=timeout_s, config=config)
    if schema_version(con) < SCHEMA_VERSION:
        con.close()
        with write_connection(path, timeout_s=timeout_s):
            pass
        con = _open(path, read_only=True, timeout_s=timeout_s, config=config)
    try:
        yield con
    finally:
        con.close()


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What one write did.

    ``inserted``: calls new to the table (the row count grew by this much). ``duplicates``:
    rows of the batch that added no call, either because their span_id was already stored or
    because they describe a call already stored from another instrumentation; ``merged`` counts
    the latter apart (:func:`insert_calls`). ``spooled``: rows that went to the spool instead
    (the database was busy).
    """

    inserted: int = 0
    duplicates: int = 0
    spooled: int = 0
    merged: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.spooled + other.spooled,
            self.merged + other.merged,
        )


_COLUMN_NAMES = ", ".join(name for name, _, _ in CALLS_COLUMNS)
_INSERTED_VALUES = ", ".join(
    _RESPONSE_ID_OR_ATTRIBUTE if name == "response_id" else name for name, _, _ in CALLS_COLUMNS
)
_SOURCE_RANK = {source: rank for rank, source in enumerate(SOURCES)}

# A stored row is looked for only among calls that started this close to the batch's own: the
# spans of one call start within its duration of each other, and the bound lets DuckDB skip
# every row group outside it (zone maps), so the lookup does not grow with the table.
_SAME_CALL_WINDOW_US = 24 * 3600 * 1_000_000
_CARRIED = ("feature", "user_id", "conversation_id")

# Besides the trace, what two spans of one call without a message id agree on: these labels,
# and these counts with a missing count as 0 (one instrumentation records a cache write of 0
# where another records none).
SAME_CALL_LABELS = ("service", "request_model")
SAME_CALL_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
SAME_CALL_COLUMNS = (*SAME_CALL_LABELS, *SAME_CALL_COUNTS)


def same_call(candidates: pl.DataFrame) -> pl.DataFrame:
    """The pairs of ``candidates`` that are surely one call, one to one.

    ``candidates`` has one row per possible pair: ``span_id`` (the row of the less preferred
    source), ``_keep`` (the row that would replace it), their source ranks ``_rank`` and
    ``_keep_rank``, and ``_nested`` (one span is the other's parent). A row is folded only into
    a candidate of the most preferred source among its candidates, into the one it is nested
    with when there is one, and only when that leaves exactly one candidate and that candidate
    has no other row of this row's source: two identical calls side by side stay apart, and
    no row ever takes two spans of one instrumentation. Returns ``span_id``, ``_keep``.
    """
    best = candidates.filter(pl.col("_keep_rank") == pl.col("_keep_rank").min().over("span_id"))
    best = best.filter(pl.col("_nested") | ~pl.col("_nested").any().over("span_id"))
    return best.filter(
        (pl.len().over("span_id") == 1) & (pl.len().over("_keep", "_rank") == 1)
    ).select("span_id", "_keep")


def insert_calls(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, *, checked: bool = True
) -> WriteResult:
    """Insert ``frame`` (conformed) in the caller's open transaction; duplicates are skipped.

    ``checked=False`` inserts without DuckDB's per-row conflict handling (``ON CONFLICT DO
    NOTHING``), about a quarter of the store's cost: a span_id already stored then raises
    ``duckdb.ConstraintException`` and aborts the transaction. :func:`insert_in_transaction`
    uses it that way, with a checked retry.

    Exactly one row per call, across batches too: a row that describes the same call as a
    stored row of ANOTHER source (the same ``gen_ai.response.id`` and service, or the same call
    within one trace; two instrumentations saw one call, and their spans reached the store in
    different batches) is merged with it. The row of the preferred source
    (:data:`clauditor.schema.SOURCES` order) stays, whichever came first, and takes the
    feature, user and conversation of the other where it has none. Rows of one source are
    never merged with each other (the span_id key already dedupes re-ingests). The batch itself
    should already hold one row per call (:func:`clauditor.ingest.normalize.one_row_per_call`).

    For a writer that keeps one connection across back-to-back batches (the receiver); most
    callers want :func:`write_calls`, which opens, writes one batch and closes.
    """
    unique = frame.unique(subset="span_id", keep="first", maintain_order=True)
    before = con.execute("SELECT count(*) FROM calls").fetchall()[0][0]
    merged = 0
    if before and unique.height:
        unique, merged = _merge_stored_calls(con, unique)
    batch = unique.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    conflicts = " ON CONFLICT (span_id) DO NOTHING" if checked else ""
    con.execute(
        f"INSERT INTO calls ({_COLUMN_NAMES}) SELECT {_INSERTED_VALUES} FROM batch{conflicts}"
    ).fetchall()
    after = con.execute("SELECT count(*) FROM calls").fetchall()[0][0]
    inserted = int(after - before)
    return WriteResult(inserted=inserted, duplicates=frame.height - inserted, merged=merged)


def insert_in_transaction(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame | None,
    before_commit: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    *,
    optimistic: bool = False,
) -> WriteResult:
    """One batch in one transaction: :func:`insert_calls` (when ``frame`` has rows), then
    ``before_commit(con)``, then COMMIT; on any error, ROLLBACK and raise.

    ``optimistic`` first inserts unchecked (``insert_calls(checked=False)``), the cheap way
    for rows that are new, as almost all are in a first ingest. When that attempt raises
    ``duckdb.ConstraintException`` (a span_id stored already, or any other constraint),
    the transaction is rolled back and the whole batch is written again, checked: the result
    is the same either way, a batch of re-sent spans just costs its insert twice (callers
    switch ``optimistic`` off once a batch had duplicates), and an error that is not a
    duplicate is raised by the checked attempt.
    """
    for checked in (False, True) if optimistic else (True,):
        try:
            with transaction(con):
                result = (
                    insert_calls(con, frame, checked=checked)
                    if frame is not None and frame.height
                    else WriteResult()
                )
                if before_commit is not None:
                    before_commit(con)
            return result
        except duckdb.ConstraintException:
            if checked:
                raise
    raise AssertionError("unreachable: the checked attempt returns or raises")


def _merge_stored_calls(
    con: duckdb.DuckDBPyConnection, batch_frame: pl.DataFrame
) -> tuple[pl.DataFrame, int]:
    """Resolve the batch rows that describe a call already stored from another source.

    Rows of one call are found as :func:`clauditor.ingest.normalize.one_row_per_call` finds
    them within a batch: the same response id and service, or (one side without an id) the
    same call within one trace, paired one to one by :func:`same_call`. Per call, the preferred
    row of all involved (batch and stored) wins; the others are dropped from the batch or
    deleted from the table, and their feature, user and conversation fill the winner's gaps.
    Returns the batch to insert and how many batch rows were merged.
    """
    starts = batch_frame["start_time"].dt.epoch("us").drop_nulls()
    if starts.is_empty():
        return batch_frame, 0
    low, high = int(starts.min()), int(starts.max())  # type: ignore[arg-type]
    window = [low - _SAME_CALL_WINDOW_US, high + _SAME_CALL_WINDOW_US]
    sources = batch_frame["source"].unique()
    if sources.len() == 1 and sources[0] is not None:
        # The common case, one instrumentation everywhere: merging needs a stored row of
        # another source near these calls; a scan of one column settles that there is none.
        other = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM calls WHERE start_time BETWEEN "
            "make_timestamptz(?) AND make_timestamptz(?) AND source IS DISTINCT FROM ? LIMIT 1)",
            [*window, sources[0]],
        ).fetchall()[0][0]
        if not other:
            return batch_frame, 0
    keys = batch_frame.select(
        "span_id",
        "trace_id",
        "parent_span_id",
        "source",
        "response_id",
        "attributes",
        "start_time",
        "end_time",
        *SAME_CALL_COLUMNS,
        *_CARRIED,
    )
    arrow_keys = keys.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
    carried_new = ", ".join(f"b.{c} AS new_{c}" for c in _CARRIED)
    carried_old = ", ".join(f"c.{c} AS old_{c}" for c in _CARRIED)
    select = (
        f"b.span_id AS new_id, b.source AS new_source, {carried_new}, "
        f"c.span_id AS old_id, c.source AS old_source, {carried_old}"
    )
    # Same message id, same service (a proxy may reuse ids across services).
    pairs = con.sql(
        f"""
        WITH b AS (SELECT *, {_RESPONSE_ID_OR_ATTRIBUTE} AS rid FROM arrow_keys)
        SELECT b.rid, {select}
        FROM b JOIN calls c ON c.response_id = b.rid
        WHERE c.source IS DISTINCT FROM b.source
          AND c.service IS NOT DISTINCT FROM b.service
          AND c.start_time BETWEEN make_timestamptz(?) AND make_timestamptz(?)
        """,
        params=window,
    ).pl()
    # No message id on one side: the same call within one trace (see same_call).
    same = " AND ".join(
        [f"c.{c} IS NOT DISTINCT FROM b.{c}" for c in SAME_CALL_LABELS]
        + [f"coalesce(c.{c}, 0) = coalesce(b.{c}, 0)" for c in SAME_CALL_COUNTS]
    )
    in_trace = con.sql(
        f"""
        WITH b AS (SELECT *, {_RESPONSE_ID_OR_ATTRIBUTE} AS rid FROM arrow_keys)
        SELECT {select},
               coalesce(b.parent_span_id = c.span_id OR c.parent_span_id = b.span_id, false)
                   AS nested
        FROM b JOIN calls c ON c.trace_id = b.trace_id
        WHERE c.source IS DISTINCT FROM b.source AND {same}
          AND (b.rid IS NULL OR c.response_id IS NULL)
          AND c.start_time <= b.end_time AND b.start_time <= c.end_time
          AND c.start_time BETWEEN make_timestamptz(?) AND make_timestamptz(?)
        """,
        params=window,
    ).pl()
    if in_trace.height:
        ranked = in_trace.with_columns(
            pl.col(f"{p}_source")
            .replace_strict(_SOURCE_RANK, default=len(_SOURCE_RANK), return_dtype=pl.Int32)
            .alias(f"{p}_rank")
            for p in ("new", "old")
        )
        old_keeps = pl.col("old_rank") <= pl.col("new_rank")  # a tie keeps the stored row
        candidates = ranked.select(
            pl.when(old_keeps).then("new_id").otherwise("old_id").alias("span_id"),
            pl.when(old_keeps).then("old_id").otherwise("new_id").alias("_keep"),
            pl.when(old_keeps).then("new_rank").otherwise("old_rank").alias("_rank"),
            pl.when(old_keeps).then("old_rank").otherwise("new_rank").alias("_keep_rank"),
            pl.col("nested").alias("_nested"),
            "new_id",
            "old_id",
        )
        chosen = same_call(candidates).join(candidates, on=["span_id", "_keep"])
        trace_pairs = (
            ranked.join(chosen.select("new_id", "old_id", "_keep"), on=["new_id", "old_id"])
            .with_columns(("trace:" + pl.col("_keep")).alias("rid"))
            .select(pairs.columns)
        )
        pairs = pl.concat([pairs, trace_pairs], how="vertical_relaxed")
    if pairs.height == 0:
        return batch_frame, 0

    def side(prefix: str, new: bool) -> pl.DataFrame:
        return pairs.select(
            "rid",
            pl.col(f"{prefix}_id").alias("span_id"),
            pl.col(f"{prefix}_source")
            .replace_strict(_SOURCE_RANK, default=len(_SOURCE_RANK), return_dtype=pl.Int32)
            .alias("rank"),
            pl.lit(new).alias("new"),
            *[pl.col(f"{prefix}_{c}").alias(c) for c in _CARRIED],
        ).unique("span_id", keep="first", maintain_order=True)

    # Every row of each call, best first: lower rank, then the stored row (no churn on ties),
    # then batch order.
    rows = (
        pl.concat([side("old", False), side("new", True)])
        .with_row_index("order")
        .sort("rid", "rank", pl.col("new"), "order")
    )
    first = pl.col("span_id").first().over("rid")
    gifts = [pl.col(c).drop_nulls().first().over("rid").alias(f"gift_{c}") for c in _CARRIED]
    rows = rows.with_columns((pl.col("span_id") == first).alias("winner"), *gifts)
    winners = rows.filter("winner")
    losers = rows.filter(~pl.col("winner"))

    deleted = losers.filter(~pl.col("new")).select("span_id")  # noqa: F841  (read by DuckDB)
    if deleted.height:
        con.execute("DELETE FROM calls WHERE span_id IN (SELECT span_id FROM deleted)").fetchall()
    stored_winners = winners.filter(~pl.col("new"))  # noqa: F841  (read by DuckDB)
    if stored_winners.height:
        sets = ", ".join(f"{c} = coalesce(calls.{c}, w.gift_{c})" for c in _CARRIED)
        con.execute(
            f"UPDATE calls SET {sets} FROM stored_winners w WHERE calls.span_id = w.span_id"
        ).fetchall()

    new_gifts = winners.filter("new").select("span_id", *[f"gift_{c}" for c in _CARRIED])
    dropped = losers.filter("new")["span_id"]
    out = (
        batch_frame.filter(~pl.col("span_id").is_in(dropped.implode()))
        .join(new_gifts, on="span_id", how="left", maintain_order="left")
        .with_columns([pl.coalesce(c, f"gift_{c}").alias(c) for c in _CARRIED])
        .select(batch_frame.columns)
    )
    return out, int(rows.filter("new").height)


def spool_dir(path: str | Path) -> Path:
    """The folder beside the database where batches wait while the file is busy.

    Draining loads only what :func:`_spool` wrote: a file named as it names them, carrying its
    marker (Parquet key-value metadata) and exactly the ``calls`` columns and types. Any other
    file there (foreign, hand-made, from an older clauditor's schema, unreadable) is moved to
    ``rejected/`` inside it, logged, and recorded in the ``quarantine`` table with the reason;
    it is never merged into ``calls``. The marker tells clauditor's batches from stray files,
    it is no signature: whoever may write the folder may write the database beside it.
    """
    path = Path(path)
    return path.with_name(path.name + ".spool")


# What _spool writes into a batch's Parquet metadata, and how it names the file.
_SPOOL_MARKER = (b"clauditor.spool", b"calls-batch-1")
_SPOOL_NAME = re.compile(r"\d{20}-\d+-[0-9a-f]{8}\.parquet")
_REJECTED = "rejected"


def _spool(path: Path, frame: pl.DataFrame) -> WriteResult:
    import pyarrow.parquet as pq

    folder = spool_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.tmp"
    table = frame.to_arrow()
    key, value = _SPOOL_MARKER
    pq.write_table(
        table.replace_schema_metadata({**(table.schema.metadata or {}), key: value}), tmp
    )
    os.replace(tmp, folder / f"{name}.parquet")  # atomic: a reader never sees half a file
    return WriteResult(spooled=frame.height)


def _spooled_batch(file: Path) -> tuple[pl.DataFrame | None, str]:
    """The batch in ``file`` if :func:`_spool` wrote it, else None and why not."""
    import pyarrow.parquet as pq

    if file.is_symlink() or not file.is_file():
        return None, "not a regular file"
    if not _SPOOL_NAME.fullmatch(file.name):
        return None, "not named as clauditor names spooled batches"
    try:
        marker = (pq.read_metadata(file).metadata or {}).get(_SPOOL_MARKER[0])
        schema = pl.read_parquet_schema(file)
    except Exception as exc:  # any library's error: the file is not a readable Parquet file
        return None, _unreadable(exc)
    if marker != _SPOOL_MARKER[1]:
        return None, "no clauditor spool marker (not a batch clauditor spooled)"
    columns, expected = list(schema.items()), list(CALLS_SCHEMA.items())
    if columns != expected:
        missing = [n for n in CALLS_SCHEMA if n not in schema]
        extra = [n for n in schema if n not in CALLS_SCHEMA]
        mistyped = [n for n, t in columns if n in CALLS_SCHEMA and CALLS_SCHEMA[n] != t]
        problems = [
            f"{label} {', '.join(names)}"
            for label, names in (("missing", missing), ("extra", extra), ("mistyped", mistyped))
            if names
        ]
        return None, "not the calls schema: " + ("; ".join(problems) or "columns out of order")
    try:
        return pl.read_parquet(file), ""
    except Exception as exc:
        return None, _unreadable(exc)


def _unreadable(exc: Exception) -> str:
    text = str(exc).strip()
    return f"unreadable: {text.splitlines()[0] if text else type(exc).__name__}"


def _reject_spooled(con: duckdb.DuckDBPyConnection, file: Path, reason: str) -> None:
    """Move ``file`` to the spool's ``rejected/`` folder and record it in ``quarantine``."""
    rejected = file.parent / _REJECTED
    rejected.mkdir(exist_ok=True)
    target = rejected / file.name
    if target.exists() or target.is_symlink():
        target = rejected / f"{uuid.uuid4().hex[:8]}-{file.name}"
    con.execute(
        "INSERT INTO quarantine VALUES (now(), ?, ?, NULL)",
        [str(target), f"spooled batch rejected: {reason}"],
    ).fetchall()
    os.replace(file, target)
    _log.warning("spool file %s rejected (%s); moved to %s", file.name, reason, target)


def _drain(con: duckdb.DuckDBPyConnection, path: Path) -> WriteResult:
    folder = spool_dir(path)
    if not folder.is_dir():
        return WriteResult()
    total = WriteResult()
    for file in sorted(folder.glob("*.parquet")):
        batch, reason = _spooled_batch(file)
        if batch is None:
            with contextlib.suppress(FileNotFoundError):  # another drain took it meanwhile
                _reject_spooled(con, file, reason)
            continue
        with transaction(con):
            total = total + insert_calls(con, batch)
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


# One quarantine entry: where the input came from, why it was refused, the offending input as
# stored (made by clauditor.redact.safe_payload; the writer scrubs it again on the way in).
QuarantineEntry = tuple[str, str, str | None]
# One ingested file: path, size, mtime_ns, spans read, spans rejected.
IngestedFile = tuple[str, int, int, int, int]


class Writer:
    """The one way rows reach the database: file ingest, the receiver and the in-process
    exporter all write through it (:func:`write_calls` is one write with a fresh writer).

    Each :meth:`write` is one transaction: a priced batch of ``calls`` rows (duplicates skipped,
    rows of one call merged, :func:`insert_calls`) with its side tables, the quarantine entries
    (an entry whose origin and reason are stored already is not stored again, so re-running
    over the same bad input does not pile up copies; reasons and payloads pass through
    :func:`clauditor.redact.scrub`) and the ingested files.

    The connection is opened at the first write (migrating the file, applying ``settings``,
    then draining the spool into it) and held across writes until a write ends ``hold_s``
    after it was opened; then it is closed, so readers get the file (``hold_s=0``: one
    connection per write). ``optimistic`` inserts the first batches without the per-row
    conflict check (:func:`insert_in_transaction`), checked from the first batch that held
    spans already stored. ``spool_on_busy``: a database still locked after ``timeout_s`` gets
    the batch spooled beside it (its quarantine entries are logged instead), never an
    exception. Not thread-safe: one thread writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout_s: float = 30.0,
        hold_s: float = 0.0,
        optimistic: bool = False,
        spool_on_busy: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.hold_s = hold_s
        self.optimistic = optimistic
        self.spool_on_busy = spool_on_busy
        self.settings = dict(settings or {})
        self.sessions = 0  # times the file was opened
        self._held: contextlib.ExitStack | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0
        self._drained = WriteResult()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def held(self) -> bool:
        """Whether the connection is open."""
        return self._con is not None

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The write connection, opened (migrated, configured, the spool drained) if needed;
        raises :class:`~clauditor.errors.DatabaseBusyError` past ``timeout_s``."""
        if self._con is None:
            held = contextlib.ExitStack()
            con = held.enter_context(write_connection(self.path, timeout_s=self.timeout_s))
            try:
                for name, value in self.settings.items():
                    con.execute(f"SET {name} = '{value}'").fetchall()
                drained = _drain(con, self.path)
            except BaseException:
                held.close()
                raise
            self._held, self._con, self._opened = held, con, time.monotonic()
            self._drained = self._drained + drained
            self.sessions += 1
        return self._con

    def close(self) -> None:
        """Give up the connection (DuckDB checkpoints the file, which is then free)."""
        held, self._held, self._con = self._held, None, None
        if held is not None:
            held.close()

    def drain(self) -> WriteResult:
        """Write the spooled batches now (opening the file if needed); what was drained
        since the last :meth:`write` or :meth:`drain`. Without a spool the file is not
        opened (nor created)."""
        if self._con is not None or spool_dir(self.path).is_dir():
            self.connection()
        drained, self._drained = self._drained, WriteResult()
        return drained

    def stored(self, span_ids: list[str]) -> set[str]:
        """Which of ``span_ids`` are stored already."""
        if not span_ids:
            return set()
        ids = pl.DataFrame({"span_id": span_ids})  # noqa: F841  (DuckDB reads the local by name)
        con = self.connection()
        rows = con.execute("SELECT c.span_id FROM calls c JOIN ids USING (span_id)").fetchall()
        return {r[0] for r in rows}

    def write(
        self,
        frame: pl.DataFrame | None,
        *,
        quarantine: Sequence[QuarantineEntry] = (),
        files: Sequence[IngestedFile] = (),
        release: bool = False,
    ) -> WriteResult:
        """One transaction: ``frame`` (priced ``calls`` rows, any subset of the columns, or
        None) with ``quarantine`` and ``files``. ``release`` closes the connection after it
        whatever ``hold_s`` says. The result includes batches drained from the spool."""
        batch = conform(frame) if frame is not None and frame.height else None
        try:
            con = self.connection()
        except DatabaseBusyError:
            if not self.spool_on_busy:
                raise
            for origin, reason, _ in quarantine:
                _log.warning("not quarantined (database busy): %s: %s", origin, scrub(reason))
            return _spool(self.path, batch) if batch is not None else WriteResult()

        def side_tables(con: duckdb.DuckDBPyConnection) -> None:
            _record_quarantine(con, quarantine)
            _record_files(con, files)

        try:
            result = insert_in_transaction(con, batch, side_tables, optimistic=self.optimistic)
        except BaseException:
            self.close()
            raise
        if result.duplicates:  # spans seen before: a re-ingest, likely to have more
            self.optimistic = False
        if release or time.monotonic() - self._opened >= self.hold_s:
            self.close()
        drained, self._drained = self._drained, WriteResult()
        return result + drained


def _record_quarantine(con: duckdb.DuckDBPyConnection, entries: Sequence[QuarantineEntry]) -> None:
    if not entries:
        return
    q = pl.DataFrame(  # noqa: F841  (DuckDB reads the local by name)
        [(origin, scrub(reason), None if p is None else scrub(p)) for origin, reason, p in entries],
        schema=["origin", "reason", "payload"],
        orient="row",
    )
    con.execute(
        "INSERT INTO quarantine SELECT now(), origin, reason, any_value(payload) FROM q "
        "WHERE NOT EXISTS (SELECT 1 FROM quarantine t "
        "WHERE t.origin = q.origin AND t.reason = q.reason) GROUP BY origin, reason"
    ).fetchall()


def _record_files(con: duckdb.DuckDBPyConnection, files: Sequence[IngestedFile]) -> None:
    if not files:
        return
    f = pl.DataFrame(  # noqa: F841  (DuckDB reads the local by name)
        files, schema=["path", "size", "mtime_ns", "spans", "rejected"], orient="row"
    )
    con.execute(
        "INSERT OR REPLACE INTO ingested_files "
        "SELECT path, size, mtime_ns, now(), spans, rejected FROM f"
    ).fetchall()


def write_calls(
    path: str | Path,
    frame: pl.DataFrame,
    *,
    timeout_s: float = 30.0,
    spool_on_busy: bool = False,
    quarantine: Sequence[QuarantineEntry] = (),
) -> WriteResult:
    """Append ``frame`` (priced rows, any subset of the ``calls`` columns) in one transaction
    with its ``quarantine`` entries, then close: one write of a fresh :class:`Writer`.

    Rows whose ``span_id`` is already stored are skipped and counted as duplicates. With
    ``spool_on_busy`` a database that stays locked for ``timeout_s`` gets the batch spooled
    instead of an exception. Spooled batches are drained into the file first.
    """
    with Writer(path, timeout_s=timeout_s, spool_on_busy=spool_on_busy) as writer:
        return writer.write(frame, quarantine=quarantine)


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
