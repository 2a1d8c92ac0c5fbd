"""The job commands with ``--db chdb:///path`` print what they print on the DuckDB file of the
same calls."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.clickhouse import connect
from clauditor.clickhouse.ddl import init
from clauditor.clickhouse.engine import insert_calls
from clauditor.config import load_config
from clauditor.ingest.files import ingest_paths
from clauditor.store import load_calls

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"
WHEN = ["--as-of", "2026-11-20T12:30:00+00:00", "--config", str(SAMPLE / "clauditor.toml")]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("cli-jobs")
    db = root / "clauditor.duckdb"
    ingest_paths(
        [SAMPLE / "sample-30d.jsonl.gz"], db, config=load_config(SAMPLE / "clauditor.toml")
    )
    url = f"chdb://{root / 'chdb'}"
    with connect(url) as client:
        init(client)
        insert_calls(client, load_calls(db))
    return str(db), url


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def same(a: Any, b: Any) -> bool:
    """JSON values equal, numbers to 1e-9 relative."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def test_costs_json_on_chdb_equals_the_duckdb_file(stores: tuple[str, str]) -> None:
    db, url = stores
    expected = json.loads(run("costs", "--db", db, "-f", "json", *WHEN))
    got = json.loads(run("costs", "--db", url, "-f", "json", *WHEN))
    assert expected and same(got, expected)


@pytest.mark.parametrize(
    "command",
    [
        ["costs", "--by", "feature,model", "--period", "7d"],
        ["costs", "--every", "day", "--by", "service"],
        ["cache"],
        ["errors", "--period", "30d"],
        ["latency", "--every", "1h", "--period", "2d"],
        ["budget"],
        ["spikes", "--period", "30d"],
        ["failures", "--by", "feature,model"],
        ["audit"],
    ],
)
def test_each_job_command_on_chdb_prints_the_duckdb_answer(
    stores: tuple[str, str], command: list[str]
) -> None:
    db, url = stores
    expected = json.loads(run(*command, "--db", db, "-f", "json", *WHEN))
    got = json.loads(run(*command, "--db", url, "-f", "json", *WHEN))
    assert same(got, expected)


def test_costs_table_with_its_notes_on_chdb(stores: tuple[str, str]) -> None:
    db, url = stores
    assert run("costs", "--db", url, *WHEN) == run("costs", "--db", db, *WHEN)


def test_a_password_in_the_url_is_refused_by_job_commands() -> None:
    result = CliRunner().invoke(
        app, ["costs", "--db", "clickhouse://admin:s3cret-pw@127.0.0.1:1/x", *WHEN]
    )
    assert result.exit_code == 2
    assert "CLAUDITOR_CLICKHOUSE_PASSWORD" in result.output
    assert "s3cret-pw" not in result.output
