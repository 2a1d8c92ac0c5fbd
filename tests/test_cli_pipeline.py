"""The pipeline through the CLI: simulate -> ingest -> costs -> report, and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import read_connection

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "two-days.jsonl.gz"
    result = runner.invoke(app, ["simulate", "--days", "2", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    return out


def test_ingest_summary_and_idempotency(small_sample: Path, db_path: Path) -> None:
    first = runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    assert first.exit_code == 0, first.output
    assert "spans read" in first.stderr and "0 rejected" in first.stderr
    with read_connection(db_path) as con:
        count = con.execute("SELECT count(*) FROM calls").fetchall()[0][0]
    second = runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    assert second.exit_code == 0
    assert f"0 calls written, {count:,} duplicates skipped" in second.stderr
    with read_connection(db_path) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchall()[0][0] == count


def test_ingest_reports_bad_lines_and_exits_1(
    small_sample: Path, db_path: Path, tmp_path: Path
) -> None:
    import gzip

    lines = gzip.decompress(small_sample.read_bytes()).decode().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], "{this is not json", *lines[1:3]]) + "\n")
    result = runner.invoke(app, ["ingest", str(broken), "--db", str(db_path)])
    assert result.exit_code == 1
    assert f"rejected {broken}:2" in result.stderr
    assert "1 rejected" in result.stderr
    with read_connection(db_path) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchall()[0][0] > 0
        origins = con.execute("SELECT origin FROM quarantine").fetchall()
    assert origins == [(f"{broken}:2",)]


def test_costs_json_matches_the_database(small_sample: Path, db_path: Path) -> None:
    runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    result = runner.invoke(
        app,
        [
            "costs",
            "--db",
            str(db_path),
            "--by",
            "feature,model",
            "--period",
            "2026-11-28..2026-11-29",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    with read_connection(db_path) as con:
        total = con.execute("SELECT sum(cost_usd) FROM calls").fetchall()[0][0]
        unpriced = con.execute("SELECT count(*) FROM calls WHERE cost_usd IS NULL").fetchall()[0][0]
    assert sum(r["cost_usd"] or 0 for r in rows) == pytest.approx(total)
    assert sum(r["unpriced_calls"] for r in rows) == unpriced
    assert {"feature", "model", "calls", "cost_usd", "share"} <= set(rows[0])


def test_costs_bad_key_is_a_clean_error(small_sample: Path, db_path: Path) -> None:
    runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    result = runner.invoke(app, ["costs", "--db", str(db_path), "--by", "colour"])
    assert result.exit_code == 2
    assert "unknown group key" in result.stderr


def test_report_is_written(small_sample: Path, db_path: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    out = tmp_path / "r.html"
    result = runner.invoke(
        app, ["report", "--db", str(db_path), "--out", str(out), "--as-of", "2026-11-30T00:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<html" in html.lower() and "2026-11-29" in html


@pytest.mark.slow
def test_demo_in_a_fresh_process(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "clauditor.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the demo must find the sample by itself
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "clauditor.duckdb").is_file() and (out / "report.html").is_file()
    assert str(out / "report.html") in proc.stdout
    assert "Spend by feature" in proc.stdout and "agent-tools" in proc.stdout
    with read_connection(out / "clauditor.duckdb") as con:
        calls, unpriced = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE cost_usd IS NULL) FROM calls"
        ).fetchall()[0]
    assert calls > 40_000 and unpriced > 0
    html = (out / "report.html").read_text()
    assert "claude-experimental-2026" in html  # the unpriced model is named, never hidden


def test_costs_per_day_and_change(small_sample: Path, db_path: Path) -> None:
    runner.invoke(app, ["ingest", str(small_sample), "--db", str(db_path)])
    common = ["costs", "--db", str(db_path), "--as-of", "2026-11-30T00:00:00Z", "-f", "json"]
    daily = json.loads(runner.invoke(app, [*common, "--period", "2d", "--every", "day"]).stdout)
    assert {r["bucket"][:10] for r in daily} == {"2026-11-28", "2026-11-29"}
    # The last day against the day before: change = today / yesterday - 1 for the total.
    rows = json.loads(runner.invoke(app, [*common, "--period", "1d", "--by", ""]).stdout)
    totals: dict[str, float] = {}
    for r in daily:
        totals[r["bucket"][:10]] = totals.get(r["bucket"][:10], 0.0) + (r["cost_usd"] or 0.0)
    assert rows[0]["previous_cost_usd"] == pytest.approx(totals["2026-11-28"])
    assert rows[0]["change"] == pytest.approx(totals["2026-11-29"] / totals["2026-11-28"] - 1)
