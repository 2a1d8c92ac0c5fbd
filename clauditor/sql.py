"""Ad-hoc SQL in a read-only sandbox (``clauditor query``), and repricing of stored calls.

:func:`run_query` runs one statement in the sandbox that :func:`sandboxed_connection` opens.
The sandbox is a property of the DuckDB connection, not of the SQL text; it holds whatever the
statement is, so a statement nobody thought of is held too:

* the database file is opened read-only, so nothing in it can change;
* DuckDB's local file system is switched off once the file is open
  (``disabled_filesystems = 'LocalFileSystem'``), with ``enable_external_access = false`` and
  no extension install or autoload: no statement can read, write, list or attach any file
  (``COPY``, ``EXPORT``, ``ATTACH``, ``read_csv``, ``glob``...), load code or reach the network.
  The spool folder beside the database, and any Parquet folder, are out of reach;
* spilling to disk is off (``temp_directory = ''``) and memory is capped (``memory_limit``): a
  query that needs more fails with "ran out of memory" instead of filling the disk or the RAM;
* then the configuration is locked (``lock_configuration = true``): no ``SET``, ``RESET`` or
  ``PRAGMA`` can undo any of the above;
* a timer interrupts the query at its time limit (DuckDB has no statement timeout), which then
  fails with "query ran past N s".

A Parquet folder (``--db DIR``, written by ``clauditor export``) is read through pyarrow, not by
DuckDB's file system: DuckDB cannot be allowed to read a folder without being allowed to write
into it. The views (``calls``, ``daily_costs``, ``feature_costs``, ``errors``) live in a
throwaway catalog file in a private temporary folder, written before the sandbox is sealed,
opened read-only and removed on close; the folder's files are listed once, when the connection
opens.

What a statement can still do is change its own session: ``CREATE TEMP ...``, ``SET VARIABLE``,
``SET search_path``; all of it is in memory and gone when the connection closes. ``CHECKPOINT``,
``VACUUM`` and ``ANALYZE`` run as no-ops on a read-only file.

On top of the sandbox, :func:`check_read_only` parses the text with DuckDB's own parser and
accepts exactly one read: ``SELECT`` (with ``WITH``, ``VALUES``, ``FROM``-first, ``TABLE``),
``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, or ``EXPLAIN`` / ``EXPLAIN ANALYZE`` of one of those;
anything else is refused before it runs, with a message naming the statement type. That check
gives the clear message; the sandbox is what makes it safe.

Limits of the limits: ``memory_limit`` caps DuckDB's own memory, not the result frame handed
back to Python. DuckDB keeps one instance per file and process: two sandboxes on one file in one
process share it (the second finds it sealed and keeps the first one's memory limit), and a
plain reader of that file open in the same process makes the sandbox wait, then fail as busy.

Opening a file written by an older clauditor still upgrades it first (as every reader does,
:func:`clauditor.store.read_connection`): that write is clauditor's migration, not the query's.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from clauditor.config import Config
from clauditor.errors import ReadOnlyQueryError, StoreError
from clauditor.pricing import price_calls
from clauditor.schema import PRICED_COLUMNS
from clauditor.store import (
    insert_in_transaction,
    load_calls,
    read_connection,
    write_connection,
)
from clauditor.views import DATASET_VIEWS_SQL

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "RepriceResult",
    "check_read_only",
    "reprice_all",
    "run_query",
    "sandboxed_connection",
]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = "2GB"

_READ_TYPES = {"SELECT"}  # DuckDB parses DESCRIBE, SHOW and SUMMARIZE as SELECT statements
_EXPLAIN_FLAGS = {"ANALYZE", "ANALYSE", "VERBOSE"}
_READ_ONLY = (
    "`clauditor query` is read-only (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN of a "
    "read) and the database was not changed"
)

# Given when the connection starts: a connection with other settings never shares its DuckDB
# instance (DuckDB keeps one per file and process), so sealing this one leaves others alone.
_STARTUP: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
# Two sandboxes on one file in one process share its instance: one seals it, the other finds
# it sealed.
_SEALING = threading.Lock()
# The registered pyarrow dataset the Parquet folder's ``calls`` view reads.
_FOLDER_FILES = "_clauditor_parquet_files"


def run_query(
    db: str | Path,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> pl.DataFrame:
    """Run one read-only statement against ``db`` (a file or a Parquet folder) in the sandbox.

    Raises :class:`~clauditor.errors.ReadOnlyQueryError` for anything but one read (checked
    before it runs) and for a read of anything outside the database, and
    :class:`~clauditor.errors.StoreError` when it fails, runs past ``timeout_s`` seconds or
    needs more than ``memory_limit`` (DuckDB's syntax: ``"2GB"``, ``"500MB"``).
    """
    check_read_only(sql)
    with sandboxed_connection(db, memory_limit=memory_limit) as con:
        return _run_with_deadline(con, sql, timeout_s, memory_limit)


def check_read_only(sql: str) -> None:
    """Raise :class:`~clauditor.errors.ReadOnlyQueryError` unless ``sql`` is exactly one read.

    Parsed by DuckDB's own parser; the statement is not run.
    """
    if not sql.strip():
        raise ReadOnlyQueryError("empty query: give one SELECT statement")
    statements = _parse(sql)
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"give exactly one statement, got {len(statements)}")
    _require_read(statements[0], explained_by=None)


@contextlib.contextmanager
def sandboxed_connection(
    db: str | Path, *, memory_limit: str = DEFAULT_MEMORY_LIMIT
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sealed, read-only connection to ``db`` (a DuckDB file or a Parquet folder); closed on
    exit. What it can and cannot do is in this module's docstring.

    Waits for a busy file as :func:`clauditor.store.read_connection` does and raises its errors
    (a missing file, a folder without a dataset).
    """
    path = Path(db)
    if path.is_dir():
        with _folder_connection(path) as con:
            _seal(con, memory_limit)
            yield con
        return
    with read_connection(path, config=_STARTUP) as con:
        _seal(con, memory_limit)
        yield con


# --- the sandbox -------------------------------------------------------------------------------


def _seal(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """Switch off every way out of the open database, then lock the configuration.

    The order matters: DuckDB refuses to change the temporary directory once external access is
    off, and nothing at all once the configuration is locked. An instance another sandbox of
    this process sealed already keeps that sandbox's memory limit.
    """
    with _SEALING:
        if con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]:
            return
        try:
            con.execute("SET memory_limit = ?", [memory_limit]).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"invalid memory limit {memory_limit!r}: {_first_line(exc)}") from None
        for setting in (
            "SET GLOBAL TimeZone = 'UTC'",  # global: later connections to the instance too
            "SET temp_directory = ''",
            "SET GLOBAL python_enable_replacements = false",
            "SET enable_external_access = false",
            "SET disabled_filesystems = 'LocalFileSystem'",
            "SET lock_configuration = true",
        ):
            con.execute(setting).fetchall()


@contextlib.contextmanager
def _folder_connection(folder: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection whose views read the Parquet dataset at ``folder`` via pyarrow."""
    import pyarrow as pa
    import pyarrow.dataset as pa_dataset
    import pyarrow.parquet as pq

    from clauditor.dataset import PARTITION, partition_files

    files = partition_files(folder)
    try:
        # Columns by name across files, as DuckDB's union_by_name: an older export may lack one.
        schema = pa.unify_schemas(
            [pq.read_schema(file) for file in files], promote_options="permissive"
        )
        if PARTITION in schema.names:
            schema = schema.remove(schema.get_field_index(PARTITION))
        dataset = pa_dataset.dataset([str(file) for file in files], schema=schema, format="parquet")
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot read the Parquet dataset {folder}: {exc}") from None
    scratch = Path(tempfile.mkdtemp(prefix="clauditor-query-"))
    try:
        catalog = scratch / "dataset.duckdb"
        with duckdb.connect(str(catalog)) as writer:
            writer.register(_FOLDER_FILES, dataset)
            writer.execute(f"CREATE VIEW calls AS SELECT * FROM {_FOLDER_FILES}").fetchall()
            writer.execute(DATASET_VIEWS_SQL).fetchall()
        con = duckdb.connect(str(catalog), read_only=True, config=dict(_STARTUP))
        try:
            con.register(_FOLDER_FILES, dataset)
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_with_deadline(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, memory_limit: str
) -> pl.DataFrame:
    """``sql``'s result, interrupted by a timer after ``timeout_s``; errors made clear."""
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        return con.sql(sql).pl()
    except duckdb.Error as exc:
        message = _first_line(exc)
        if expired.is_set():
            raise StoreError(
                f"query ran past {timeout_s:g} s and was stopped (allow more with --timeout)"
            ) from None
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise StoreError(
                f"query ran out of memory (its limit is {memory_limit}; allow more with "
                f"--memory-limit): {message}"
            ) from None
        if isinstance(exc, duckdb.PermissionException):
            raise ReadOnlyQueryError(
                f"refused: {message}; a query reads only the database it was given"
            ) from None
        if "read-only" in message or "read only" in message:
            raise ReadOnlyQueryError(f"refused: {message}") from None
        raise StoreError(f"query failed: {message}") from None
    finally:
        timer.cancel()


# --- the allow-list ----------------------------------------------------------------------------


def _parse(sql: str) -> list[duckdb.Statement]:
    try:
        return list(duckdb.connect(":memory:").extract_statements(sql))
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse the query: {_first_line(exc)}") from None


def _kind(statement: duckdb.Statement) -> str:
    """The statement's type name; UNKNOWN for one the Python client cannot name (``UPDATE
    EXTENSIONS``, say), which is then no read this module knows."""
    try:
        return statement.type.name
    except ValueError:
        return "UNKNOWN"


def _require_read(statement: duckdb.Statement, explained_by: str | None) -> None:
    kind = _kind(statement)
    if kind in _READ_TYPES:
        return
    if kind == "EXPLAIN":
        explained = _explained(statement.query)
        if explained is None:
            raise ReadOnlyQueryError(
                f"refused: cannot tell which statement this EXPLAIN explains; {_READ_ONLY}"
            )
        _require_read(explained, explained_by="EXPLAIN")
        return
    what = f"{explained_by} of a {kind} statement is" if explained_by else f"{kind} statements are"
    raise ReadOnlyQueryError(f"refused: {what} not allowed; {_READ_ONLY}")


def _explained(text: str) -> duckdb.Statement | None:
    """The statement an ``EXPLAIN [ANALYZE] [(options)] statement`` explains, or None.

    DuckDB's tokenizer gives each token's byte offset; after ``EXPLAIN`` and its flags the
    explained statement is the first remainder that parses as exactly one statement (option
    lists in parentheses do not parse on their own).
    """
    raw = text.encode()
    tokens = duckdb.tokenize(text)
    ends = [position for position, _ in tokens[1:]] + [len(raw)]
    words = [
        (start, raw[start:end].strip().upper())
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    rest = 1  # words[0] is EXPLAIN
    while rest < len(words) and words[rest][1].decode(errors="replace") in _EXPLAIN_FLAGS:
        rest += 1
    parser = duckdb.connect(":memory:")
    for start, _ in words[rest:]:
        try:
            statements = parser.extract_statements(raw[start:].decode())
        except (duckdb.Error, ValueError, UnicodeDecodeError):
            continue
        return statements[0] if len(statements) == 1 else None
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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
        insert_in_transaction(con, None, lambda c: _run(c, update))
        con.unregister("updates")
    return result


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    con.execute(sql).fetchall()
