"""Migration 8: the column for a source's own cost (Claude Code's ``cost_usd``)."""

from __future__ import annotations

from pathlib import Path

from clauditor.pricing import price_calls
from clauditor.schema import CALLS_COLUMNS, frame_from_rows
from clauditor.store import (
    SCHEMA_VERSION,
    load_calls,
    schema_version,
    write_connection,
)
from tests.conftest import call_row, database_at_version


def test_a_version_6_file_gets_reported_cost_usd_and_keeps_its_rows(db_path: Path) -> None:
    con = database_at_version(db_path, 6)
    old_columns = [n for n, _, _ in CALLS_COLUMNS if n != "reported_cost_usd"]
    rows = price_calls(frame_from_rows([call_row(span_id="a" * 16)]))
    old = rows.select(old_columns)  # noqa: F841  (DuckDB reads the local by name)
    con.execute(f"INSERT INTO calls ({', '.join(old_columns)}) SELECT * FROM old").fetchall()
    con.close()

    with write_connection(db_path) as con:
        assert schema_version(con) == SCHEMA_VERSION
    (stored,) = load_calls(db_path).to_dicts()
    assert stored["reported_cost_usd"] is None
    assert stored["cost_usd"] == rows["cost_usd"][0]
