"""`clauditor query` on ClickHouse: the read-only statement (on chDB, through the client a
server uses) reads and sees one row per call; the sandbox corpus of tests/test_sql_sandbox.py
and ClickHouse's own ways out are refused by the engine's read-only setting, and nothing inside
or outside the database changes. `INTO OUTFILE` is the exception on chDB (the local engine
writes it itself), so `clauditor query` refuses chdb:// URLs."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.clickhouse import connect
from clauditor.clickhouse.ddl import init
from clauditor.clickhouse.engine import insert_calls
from clauditor.clickhouse.query import read_only_query
from clauditor.errors import ClauditorError, ReadOnlyQueryError
from tests.test_sql_sandbox import BYPASSES

SECRET = "s3cr3t-outside"

# ClickHouse's own ways to reach files, the network, programs, writes and settings.
CLICKHOUSE_BYPASSES = (
    "SELECT * FROM file('{outside}/secret.csv', CSV)",
    "SELECT * FROM url('http://127.0.0.1:9/x.csv', CSV, 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', CSV, 'a String')",
    "SELECT * FROM executable('cat {outside}/secret.csv', CSV, 'a String')",
    "INSERT INTO FUNCTION file('{outside}/stolen.csv', CSV) SELECT * FROM calls",
    "INSERT INTO calls (span_id, start_time, end_time) VALUES ('x', now(), now())",
    "ALTER TABLE calls DELETE WHERE 1",
    "DROP TABLE calls",
    "TRUNCATE TABLE calls",
    "CREATE TABLE stolen (x String) ENGINE = File(CSV)",
    "OPTIMIZE TABLE calls FINAL",
    "SET readonly = 0",
    "SELECT * FROM file('{outside}/secret.csv', CSV) SETTINGS readonly = 0",
    "SYSTEM DROP DNS CACHE",
    "BACKUP TABLE calls TO File('{outside}/backup')",
)


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"secret\n{SECRET}\n")
    url = f"chdb://{tmp_path / 'chdb'}"
    calls = pl.DataFrame(
        {
            "span_id": ["a", "b", "c"],
            "start_time": [dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)] * 3,
            "feature": ["x", "x", "y"],
            "cost_usd": [1.0, 2.0, 4.0],
        }
    )
    with connect(url) as client:
        init(client)
        insert_calls(client, calls)
        insert_calls(client, calls.head(1))  # a re-sent call: one row when read
    return url, outside


def _state(url: str) -> tuple[object, ...]:
    with connect(url) as client:
        count = client.rows("SELECT count() FROM clauditor.calls FINAL")[0][0]
        tables = client.rows(
            "SELECT database, name FROM system.tables "
            "WHERE database IN ('clauditor', 'default') ORDER BY database, name"
        )
    return count, tuple(tables)


def test_reads_see_one_row_per_call(store: tuple[str, Path]) -> None:
    url, _ = store
    with connect(url) as client:
        sql = "SELECT feature, count() AS n, sum(cost_usd) AS usd FROM calls GROUP BY feature"
        got = read_only_query(client, sql + " ORDER BY feature")
        assert got.rows() == [("x", 2, 3.0), ("y", 1, 4.0)]


@pytest.mark.parametrize(
    "sql", [sql for _, sql, _ in BYPASSES] + list(CLICKHOUSE_BYPASSES), ids=lambda s: s[:40]
)
def test_the_corpus_changes_nothing_and_reads_nothing_outside(
    store: tuple[str, Path], sql: str
) -> None:
    url, outside = store
    before, files = _state(url), _files(outside)
    text = sql.format(
        spool=outside, data=outside / "secret.csv", data_dir=outside, outside=outside,
        catalog="clauditor",
    )  # fmt: skip
    try:
        with connect(url) as client:
            got = read_only_query(client, text, timeout_s=10)
    except ClauditorError:
        pass
    else:  # a statement ClickHouse may run read-only (EXPLAIN of a read...) shows no secret
        assert SECRET not in got.write_csv()
    assert _state(url) == before
    assert _files(outside) == files


def test_a_read_outside_is_refused_as_read_only(store: tuple[str, Path]) -> None:
    url, outside = store
    with connect(url) as client, pytest.raises(ReadOnlyQueryError, match="read-only"):
        read_only_query(client, f"SELECT * FROM file('{outside}/secret.csv', CSV)")


def test_query_refuses_embedded_chdb_naming_why(store: tuple[str, Path]) -> None:
    url, outside = store
    query = f"SELECT * FROM calls INTO OUTFILE '{outside}/stolen.csv'"
    result = CliRunner().invoke(app, ["query", query, "--db", url])
    assert result.exit_code == 2
    assert "chDB" in result.output and "INTO OUTFILE" in result.output
    assert not (outside / "stolen.csv").exists()
