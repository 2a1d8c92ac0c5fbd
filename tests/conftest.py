"""Shared fixtures: real DuckDB files under tmp_path and small frames of calls."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

UTC = dt.UTC


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI a missing browser is an error, not a skip (CLAUDITOR_REQUIRE_BROWSER=1)."""
    if os.environ.get("CLAUDITOR_REQUIRE_BROWSER") and not shutil.which("chromium"):
        raise pytest.UsageError("CLAUDITOR_REQUIRE_BROWSER is set but chromium is not on PATH")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a fresh DuckDB file (not created yet)."""
    return tmp_path / "clauditor.duckdb"


def call_row(**overrides: Any) -> dict[str, Any]:
    """One plausible `calls` row; override any column."""
    row: dict[str, Any] = {
        "span_id": overrides.pop("span_id", os.urandom(8).hex()),
        "trace_id": os.urandom(16).hex(),
        "start_time": dt.datetime(2026, 10, 1, 12, 0, tzinfo=UTC),
        "end_time": dt.datetime(2026, 10, 1, 12, 0, 2, tzinfo=UTC),
        "duration_ms": 2000.0,
        "service": "support-bot",
        "environment": "prod",
        "feature": "chat",
        "operation": "chat",
        "request_model": "claude-sonnet-4-5",
        "response_model": "claude-sonnet-4-5-20250929",
        "input_tokens": 1000,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "status": "ok",
        "retries": 0,
        "source": "clauditor",
    }
    row.update(overrides)
    return row


@pytest.fixture
def make_calls() -> Callable[..., pl.DataFrame]:
    """Build a priced `calls` frame from row overrides: make_calls(dict(...), dict(...))."""
    from clauditor.pricing import price_calls
    from clauditor.schema import frame_from_rows

    def build(*rows: dict[str, Any]) -> pl.DataFrame:
        return price_calls(frame_from_rows([call_row(**r) for r in rows]))

    return build


def database_at_version(path: Path, version: int) -> duckdb.DuckDBPyConnection:
    """A new database file at ``path`` as clauditor left it after migration ``version``, open
    for the test to add old rows (close it before clauditor opens the file)."""
    from clauditor.store import MIGRATIONS

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR, "
        "applied_at TIMESTAMPTZ)"
    ).fetchall()
    for number, _, sql in MIGRATIONS[:version]:
        if callable(sql):
            sql(con)
        else:
            con.execute(sql).fetchall()
        con.execute("INSERT INTO schema_migrations VALUES (?, 'old', now())", [number]).fetchall()
    return con
