"""`clauditor clickhouse init` and `clauditor clickhouse reprice` from the command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.clickhouse import connect

from .exporter_rows import COLUMNS, records, row

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "sample_logs"
    / "conventions"
    / "otel-genai"
    / "opentelemetry-util-genai-1.3b0.jsonl"
)


def test_init_twice_then_reprice(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'chdb'}"
    runner = CliRunner()
    first = runner.invoke(app, ["clickhouse", "init", "--db", url])
    assert first.exit_code == 0, first.output
    assert "migrations applied: 1;" in first.output and "view created" in first.output
    again = runner.invoke(app, ["clickhouse", "init", "--db", url])
    assert again.exit_code == 0, again.output
    assert "migrations applied: none;" in again.output and "view unchanged" in again.output

    with connect(url) as client:
        client.insert("default.otel_traces", [row(s) for s in records([FIXTURE])], COLUMNS)
        stored = client.rows("SELECT count() FROM clauditor.calls FINAL")[0][0]
    assert stored > 0
    repriced = runner.invoke(app, ["clickhouse", "reprice", "--db", url])
    assert repriced.exit_code == 0, repriced.output
    assert f"repriced {stored} call" in repriced.output


def test_a_password_on_the_command_line_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["clickhouse", "init", "--db", "clickhouse://admin:s3cret-pw@127.0.0.1:1/x"]
    )
    assert result.exit_code == 2
    assert "CLAUDITOR_CLICKHOUSE_PASSWORD" in result.output
    assert "s3cret-pw" not in result.output
