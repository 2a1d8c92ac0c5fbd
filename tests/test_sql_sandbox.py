"""The sandbox of `clauditor query`: every bypass attempt is refused twice over.

:data:`BYPASSES` is a table of hostile statements, engine-neutral enough that another engine's
sandbox can be held to it. Each runs against a database file and against a Parquet folder,
once through `clauditor query` (the allow-list refuses it with a clear message) and once
straight on :func:`clauditor.sql.sandboxed_connection` (no allow-list: the engine itself
refuses it). Either way every file of the store's folder (the database, its spool, the Parquet
folder) and of a folder outside it is byte-identical afterwards, and no file appeared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.errors import ReadOnlyQueryError, StoreError
from clauditor.sql import run_query, sandboxed_connection
from clauditor.store import read_connection, spool_dir, write_calls
from tests.conftest import call_row

runner = CliRunner()

# A frame in this module's globals: DuckDB's Python client would scan it by name.
secret_frame = pl.DataFrame({"secret": ["s3cr3t"]})

# (name, SQL, what the engine does with it when the allow-list is bypassed). "raises": the
# sandboxed connection raises. "harmless": it may run, on the session only (a no-op CHECKPOINT
# on a read-only file, a TEMP table in memory); the files are unchanged all the same.
# Placeholders: {spool} the spool folder beside the database, {data} the database file or a
# Parquet file of the folder, {data_dir} the folder holding the data, {outside} a folder beside
# the store with a secret.csv, {catalog} the sandbox's database name.
BYPASSES: tuple[tuple[str, str, str], ...] = (
    # EXPLAIN ANALYZE runs what it explains.
    ("explain-analyze-copy-into-spool",
     "EXPLAIN ANALYZE COPY (SELECT * FROM calls) TO '{spool}/forged.parquet' (FORMAT parquet)",
     "raises"),
    ("explain-analyze-copy-out",
     "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{outside}/stolen.csv'", "raises"),
    ("explain-analyze-install", "EXPLAIN ANALYZE INSTALL httpfs", "raises"),
    ("explain-analyze-set", "EXPLAIN ANALYZE SET memory_limit = '100GB'", "raises"),
    ("explain-analyze-call", "EXPLAIN ANALYZE CALL enable_logging()", "raises"),
    ("explain-analyze-checkpoint", "EXPLAIN ANALYZE CHECKPOINT", "harmless"),
    ("explain-options-delete", "EXPLAIN ANALYZE (FORMAT json) DELETE FROM calls", "raises"),
    ("explain-commented-copy",
     "EXPLAIN /* a */ ANALYZE -- b\n COPY calls TO '{outside}/stolen.csv'", "raises"),
    # COPY, EXPORT, IMPORT.
    ("copy-to-outside", "COPY calls TO '{outside}/stolen.csv'", "raises"),
    ("copy-into-spool",
     "COPY (SELECT * FROM calls) TO '{spool}/forged.parquet' (FORMAT parquet)", "raises"),
    ("copy-into-data-folder",
     "COPY (SELECT * FROM calls) TO '{data_dir}/day=2099-01-01/data_0.parquet' (FORMAT parquet)",
     "raises"),
    ("copy-over-the-data", "COPY (SELECT 1 AS x) TO '{data}' (FORMAT parquet)", "raises"),
    ("copy-from", "COPY calls FROM '{outside}/secret.csv'", "raises"),
    ("export-database", "EXPORT DATABASE '{outside}/export'", "raises"),
    ("import-database", "IMPORT DATABASE '{outside}'", "raises"),
    # Other databases.
    ("attach-outside", "ATTACH '{outside}/other.duckdb' AS other", "raises"),
    ("attach-the-data-again", "ATTACH '{data}' AS again", "raises"),
    ("attach-memory", "ATTACH ':memory:' AS scratch", "raises"),
    ("detach", "DETACH {catalog}", "raises"),
    # Extensions.
    ("install", "INSTALL httpfs", "raises"),
    ("load", "LOAD httpfs", "raises"),
    ("load-a-file", "LOAD '{outside}/evil.duckdb_extension'", "raises"),
    # Settings.
    ("set-external-access", "SET enable_external_access = true", "raises"),
    ("set-file-systems", "SET disabled_filesystems = ''", "raises"),
    ("set-unlock", "SET lock_configuration = false", "raises"),
    ("set-temp-directory", "SET temp_directory = '{data_dir}'", "raises"),
    ("reset-memory-limit", "RESET memory_limit", "raises"),
    ("pragma-profiling-output", "PRAGMA profiling_output = '{outside}/profile.json'", "raises"),
    ("pragma-threads", "PRAGMA threads = 64", "raises"),
    ("call-logging-to-file",
     "CALL enable_logging(storage = 'file', storage_path = '{outside}/log')", "raises"),
    ("checkpoint", "CHECKPOINT", "harmless"),
    ("force-checkpoint", "FORCE CHECKPOINT", "harmless"),
    ("vacuum", "VACUUM", "harmless"),
    # Writes to the database.
    ("create-table", "CREATE TABLE stolen AS SELECT * FROM calls", "raises"),
    ("create-view", "CREATE VIEW v AS SELECT 1", "raises"),
    ("insert", "INSERT INTO calls (span_id, cost_usd) VALUES ('ffffffffffffffff', 1e6)", "raises"),
    ("update", "UPDATE calls SET cost_usd = 1e6", "raises"),
    ("delete", "DELETE FROM calls", "raises"),
    ("drop-table", "DROP TABLE calls", "raises"),
    ("drop-view", "DROP VIEW daily_costs", "raises"),
    ("alter", "ALTER TABLE calls RENAME TO gone", "raises"),
    ("create-temp-table", "CREATE TEMP TABLE t AS SELECT * FROM calls", "harmless"),
    # Reading what is not the database.
    ("read-csv-outside", "SELECT * FROM read_csv('{outside}/secret.csv')", "raises"),
    ("read-text-outside", "SELECT * FROM read_text('{outside}/secret.csv')", "raises"),
    ("read-blob-outside", "SELECT * FROM read_blob('{outside}/secret.csv')", "raises"),
    ("read-parquet-outside", "SELECT * FROM read_parquet('{outside}/other.parquet')", "raises"),
    ("read-parquet-spool", "SELECT * FROM read_parquet('{spool}/*.parquet')", "raises"),
    ("replacement-scan-path", "SELECT * FROM '{outside}/secret.csv'", "raises"),
    ("glob-outside", "SELECT * FROM glob('{outside}/*')", "raises"),
    ("glob-beside", "SELECT * FROM glob('{data_dir}/*')", "raises"),
    ("query-function",
     "SELECT * FROM query('SELECT * FROM read_csv(''{outside}/secret.csv'')')", "raises"),
    ("python-variable", "SELECT * FROM secret_frame", "raises"),
    # Comments and more than one statement.
    ("select-then-drop", "SELECT 1; DROP TABLE calls", "raises"),
    ("select-then-copy",
     "SELECT 1 -- harmless\n; COPY calls TO '{outside}/stolen.csv'", "raises"),
    ("comment-hides-delete", "/* SELECT */ DELETE FROM calls", "raises"),
    ("select-then-detach", "SELECT 1; DETACH {catalog}", "raises"),
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    """A store to attack: ``db`` is what --db names; ``watched`` holds every file involved."""

    kind: str
    db: Path
    watched: tuple[Path, ...]
    names: dict[str, str]


@pytest.fixture(scope="module", params=["file", "folder"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Source:
    base = tmp_path_factory.mktemp(f"sandbox-{request.param}")
    store, outside = base / "store", base / "outside"
    store.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("secret\ns3cr3t\n")
    db = store / "clauditor.duckdb"
    rows = [
        call_row(start_time=dt.datetime(2026, 10, day, 12, tzinfo=dt.UTC), cost_usd=0.25)
        for day in (1, 2, 2)
    ]
    write_calls(db, pl.DataFrame(rows))
    spool = spool_dir(db)
    spool.mkdir()
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 1 AS x) TO '{outside / 'other.parquet'}' (FORMAT parquet)")
    if request.param == "file":
        return Source("file", db, (store, outside), _names(spool, db, store, outside, "clauditor"))
    folder = store / "calls"
    with read_connection(db) as con:
        from clauditor.dataset import export_dataset

        export_dataset(con, folder)
    data = next(folder.glob("day=*/*.parquet"))
    return Source(
        "folder", folder, (store, outside), _names(spool, data, folder, outside, "dataset")
    )


def _names(spool: Path, data: Path, data_dir: Path, outside: Path, catalog: str) -> dict[str, str]:
    return {
        "spool": str(spool),
        "data": str(data),
        "data_dir": str(data_dir),
        "outside": str(outside),
        "catalog": catalog,
    }


def snapshot(folders: tuple[Path, ...]) -> dict[str, str]:
    """Every entry under ``folders``: a file by its SHA-256, a folder as such."""
    entries: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            entries[str(path)] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
            )
    return entries


@pytest.fixture
def unchanged(source: Source) -> Iterator[None]:
    """Fails the test when anything under the watched folders changed or appeared."""
    before = snapshot(source.watched)
    yield
    assert snapshot(source.watched) == before


CASES = [pytest.param(sql, engine, id=name) for name, sql, engine in BYPASSES]


@pytest.mark.parametrize(("sql", "engine"), CASES)
def test_query_refuses_with_a_clear_message(
    source: Source, unchanged: None, sql: str, engine: str
) -> None:
    result = runner.invoke(app, ["query", sql.format(**source.names), "--db", str(source.db)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "Traceback" not in result.output, message
    assert any(
        clue in message
        for clue in ("refused", "exactly one statement", "cannot parse", "does not exist")
    ), message


@pytest.mark.parametrize(("sql", "engine"), CASES)
def test_engine_refuses_without_the_allow_list(
    source: Source, unchanged: None, sql: str, engine: str
) -> None:
    with sandboxed_connection(source.db) as con:
        try:
            con.execute(sql.format(**source.names)).fetchall()
        except duckdb.Error:
            pass
        else:
            assert engine == "harmless", "the sandboxed connection ran it"
        # Still the same data afterwards, in the same session.
        assert con.execute("SELECT count(*), sum(cost_usd) FROM calls").fetchall() == [(3, 0.75)]


def test_reads_still_work(source: Source, unchanged: None) -> None:
    for sql in (
        "WITH d AS (SELECT * FROM daily_costs) SELECT sum(calls) AS n FROM d",
        "EXPLAIN ANALYZE SELECT count(*) FROM calls",
        "DESCRIBE calls",
        "SUMMARIZE calls",
        "SHOW TABLES",
    ):
        assert run_query(source.db, sql).height > 0, sql
    totals = run_query(source.db, "SELECT count(*) AS n, sum(cost_usd) AS usd FROM calls")
    assert totals.to_dicts() == [{"n": 3, "usd": 0.75}]


def test_runaway_query_stops_at_the_time_limit(source: Source, unchanged: None) -> None:
    # A subprocess, so that a query the limit fails to stop fails the test instead of hanging.
    proc = subprocess.run(
        [sys.executable, "-m", "clauditor.cli", "query", "--timeout", "1", "--db", str(source.db),
         "SELECT count(*) FROM range(1000000000000000)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "query ran past 1 s" in proc.stderr
    with pytest.raises(StoreError, match="ran past 1 s"):
        run_query(source.db, "SELECT sum(i) FROM range(1000000000000000) t(i)", timeout_s=1)


def test_huge_allocation_stops_at_the_memory_limit(source: Source, unchanged: None) -> None:
    sql = "SELECT count(DISTINCT i) FROM range(1000000000) t(i)"
    with pytest.raises(StoreError, match="ran out of memory.*64MB"):
        run_query(source.db, sql, memory_limit="64MB", timeout_s=120)
    with (
        sandboxed_connection(source.db, memory_limit="64MB") as con,
        pytest.raises(duckdb.OutOfMemoryException),
    ):
        con.execute(sql).fetchall()


def test_refusals_name_the_statement(source: Source) -> None:
    with pytest.raises(ReadOnlyQueryError, match="EXPLAIN of a COPY statement is not allowed"):
        run_query(source.db, f"EXPLAIN ANALYZE COPY calls TO '{source.names['outside']}/x.csv'")
    with pytest.raises(ReadOnlyQueryError, match="reads only the database"):
        run_query(source.db, f"SELECT * FROM read_csv('{source.names['outside']}/secret.csv')")


def test_two_sandboxes_at_once_are_both_sealed(source: Source, unchanged: None) -> None:
    # On one file they share DuckDB's instance: the second finds it sealed by the first.
    outside = source.names["outside"]
    with sandboxed_connection(source.db) as first, sandboxed_connection(source.db) as second:
        for con in (first, second):
            assert con.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
            with pytest.raises(duckdb.Error):
                con.execute(f"COPY calls TO '{outside}/stolen.csv'").fetchall()
            assert con.execute("SELECT count(*) FROM calls").fetchall() == [(3,)]
