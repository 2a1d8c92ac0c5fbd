"""Benchmark: what storing one ingested row costs, against plain DuckDB inserts, in one run.

    python benchmarks/store_write.py [--source benchmarks/out/bench.duckdb] [--rows 1000000]

File ingest spends most of its parent process on the store (RESULTS.md). This takes the calls
an ingest already wrote (``--source``: by default the database ``ingest_throughput.py``
leaves behind), holds them as one Polars frame, and writes them into a fresh database per
variant, batch after batch, each batch in its own transaction, as the ingest engines do:

* ``plain INSERT, no key``: a copy of the ``calls`` columns without the PRIMARY KEY;
* ``plain INSERT, span_id key``: the ``calls`` table as clauditor creates it;
* ``ON CONFLICT DO NOTHING``: the same, duplicate-safe;
* ``insert_calls``: what ingest runs (:func:`clauditor.store.insert_calls`: dedupe, the
  cross-batch merge probe, the insert, counts), with the engine's checkpoint threshold and
  memory limit, at 50k rows a batch (the default) and at other sizes and thresholds; and
  unchecked (no ``ON CONFLICT``), as a first ingest writes until it meets a stored span.

Each variant runs in a child process of its own (a fresh DuckDB buffer pool). CPU time is
the child's, DuckDB's threads included: insert, commit and closing (the last checkpoint) are
reported apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "plain INSERT, no key": ("plain-nokey", 50_000, "64MB"),
    "plain INSERT, span_id key": ("plain-key", 50_000, "64MB"),
    "ON CONFLICT DO NOTHING": ("on-conflict", 50_000, "64MB"),
    "insert_calls, 50k rows a batch": ("insert-calls", 50_000, "64MB"),
    "insert_calls unchecked, 50k (first ingest)": ("insert-calls-unchecked", 50_000, "64MB"),
    "insert_calls, 50k, checkpoint at 1 GB": ("insert-calls", 50_000, "1GB"),
    "insert_calls, 130k (over one row group)": ("insert-calls", 130_000, "64MB"),
    "insert_calls, 250k": ("insert-calls", 250_000, "64MB"),
}


def run_variant(source: Path, rows: int, how: str, batch: int, threshold: str) -> dict[str, float]:
    """Write ``rows`` calls of ``source`` to a fresh database the way ``how`` says."""
    import duckdb

    from clauditor.ingest.files import WRITE_MEMORY_LIMIT
    from clauditor.store import insert_calls, write_connection

    with duckdb.connect(str(source), read_only=True) as src:
        frame = src.sql(f"SELECT * FROM calls ORDER BY start_time LIMIT {rows}").pl()
    work = Path(tempfile.mkdtemp(prefix="clauditor-store-"))
    db = work / "calls.duckdb"
    insert = commit = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with write_connection(db) as con:
        con.execute(f"SET checkpoint_threshold = '{threshold}'").fetchall()
        con.execute(f"SET memory_limit = '{WRITE_MEMORY_LIMIT}'").fetchall()
        if how == "plain-nokey":
            con.execute("CREATE TABLE plain AS SELECT * FROM calls LIMIT 0").fetchall()
        table = "plain" if how == "plain-nokey" else "calls"
        conflict = " ON CONFLICT (span_id) DO NOTHING" if how == "on-conflict" else ""
        for offset in range(0, frame.height, batch):
            part = frame.slice(offset, batch)
            con.execute("BEGIN TRANSACTION").fetchall()
            t = time.process_time()
            if how.startswith("insert-calls"):
                insert_calls(con, part, checked=not how.endswith("-unchecked"))
            else:
                arrow = part.to_arrow()  # noqa: F841  (DuckDB reads the local by name)
                con.execute(f"INSERT INTO {table} SELECT * FROM arrow{conflict}").fetchall()
            insert += time.process_time() - t
            t = time.process_time()
            con.execute("COMMIT").fetchall()
            commit += time.process_time() - t
        closing = time.process_time()
    closing = time.process_time() - closing
    total = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return {
        "rows": frame.height,
        "wall": wall,
        "cpu": total,
        "insert": insert,
        "commit": commit,
        "close": closing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("benchmarks/out/bench.duckdb"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.variant:
        how, batch, threshold = VARIANTS[args.variant]
        print(json.dumps(run_variant(args.source, args.rows, how, batch, threshold)))
        return
    if not args.source.exists():
        sys.exit(
            f"{args.source} not found: run benchmarks/ingest_throughput.py first, "
            "or give --source a database of ingested calls"
        )
    print(f"{'variant':<42} {'rows':>9} {'wall s':>7} {'CPU s':>7} {'µs/row':>7} "
          f"{'insert':>7} {'commit':>7} {'close':>6}")  # fmt: skip
    for name in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--source", str(args.source), "--rows", str(args.rows),
             "--variant", name],
            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:<42} {r['rows']:>9,} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
            f"{r['cpu'] / r['rows'] * 1e6:>7.1f} {r['insert']:>7.2f} {r['commit']:>7.2f} "
            f"{r['close']:>6.2f}"
        )


if __name__ == "__main__":
    main()
