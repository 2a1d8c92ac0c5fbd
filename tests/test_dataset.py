"""The Parquet dataset: `clauditor export`, and every reader taking the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import read_connection

runner = CliRunner()
AS_OF = "2026-10-03T00:00:00Z"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of two simulated days (2026-10-01 and -02 UTC)."""
    folder = tmp_path_factory.mktemp("dataset")
    sample = folder / "two-days.jsonl"
    db = folder / "clauditor.duckdb"
    end = "2026-10-03T00:00:00+00:00"
    for args in (
        ["simulate", "--days", "2", "--seed", "5", "--end", end, "--out", str(sample)],
        ["ingest", str(sample), "--db", str(db)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return db


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _close(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative: sums over Parquet add in another order."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _count(db: Path, where: str = "true") -> int:
    with read_connection(db) as con:
        return int(con.execute(f"SELECT count(*) FROM calls WHERE {where}").fetchall()[0][0])


def test_export_writes_one_folder_per_utc_day(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls"
    printed = _cli("export", "--db", str(stored), "--out", str(out))
    total = _count(stored)
    assert f"exported {total:,} calls" in printed
    assert sorted(p.name for p in out.iterdir()) == ["day=2026-10-01", "day=2026-10-02"]
    assert _count(out) == total
    assert _count(out, "CAST(start_time AS DATE) = DATE '2026-10-01'") == _count(
        stored, "CAST(start_time AS DATE) = DATE '2026-10-01'"
    )


def test_every_reader_gives_the_same_answer_over_the_folder(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls"
    _cli("export", "--db", str(stored), "--out", str(out))
    for command in (
        ["costs", "--by", "feature,model", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["failures", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["audit", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["latency", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["cache", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["budget", "--as-of", AS_OF, "-f", "json"],
        ["query", "SELECT * FROM daily_costs ORDER BY ALL", "-f", "json"],
        # May find nothing in two days of calls: the same nothing, without an error.
        ["errors", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
        ["spikes", "--period", "2d", "--as-of", AS_OF, "-f", "json"],
    ):
        from_file = json.loads(_cli(*command, "--db", str(stored)))
        from_folder = json.loads(_cli(*command, "--db", str(out)))
        assert _close(from_folder, from_file), command[0]
        assert from_file or command[0] in ("errors", "spikes"), command[0]
    report = tmp_path / "report.html"
    _cli("report", "--db", str(out), "--as-of", AS_OF, "--period", "2d", "--out", str(report))
    assert report.stat().st_size > 100_000


def test_exporting_a_day_again_replaces_it(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls"
    _cli("export", "--db", str(stored), "--out", str(out))
    first_day = _count(out, "CAST(start_time AS DATE) = DATE '2026-10-01'")
    # The second day again: its folder is replaced, the first day is left alone, no row twice.
    printed = _cli(
        "export", "--db", str(stored), "--out", str(out), "--period", "2026-10-02..2026-10-02"
    )
    assert "(2026-10-02..2026-10-02, 1 day(s))" in printed
    assert _count(out) == _count(stored)
    assert _count(out, "CAST(start_time AS DATE) = DATE '2026-10-01'") == first_day
    with read_connection(out) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT span_id) FROM calls").fetchall()
    assert rows[0][0] == rows[0][1]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_folder_is_read_only_and_must_hold_a_dataset(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls"
    _cli("export", "--db", str(stored), "--out", str(out))
    sample = next(stored.parent.glob("*.jsonl"))
    refused = runner.invoke(app, ["ingest", str(sample), "--db", str(out)])
    assert refused.exit_code == 2
    assert "is a folder (a Parquet dataset, read-only)" in refused.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = runner.invoke(app, ["query", "SELECT 1", "--db", str(empty)])
    assert missing.exit_code == 2
    assert "without Parquet day partitions" in missing.stderr
