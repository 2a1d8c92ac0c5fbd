"""Benchmark: every analytics job on embedded ClickHouse (chDB) against DuckDB, same calls.

    python benchmarks/clickhouse_10m.py [--rows 10000000] [--rounds 2] [--dir PATH] [--keep]

The calls are generated in DuckDB by :mod:`analytics_10m`'s generator (30 days, a dozen features,
four models, caching, streaming, errors, conversations), copied once into chDB's ``calls`` (a
Parquet file read by one ``INSERT ... SELECT``: the load is timed and reported, not part of the
jobs), and then each engine runs :func:`clauditor.analytics.runner.run_jobs_on` — every job — in
a child process of its own, alternating DuckDB and chDB ``--rounds`` times. A child reports wall
and CPU seconds (CPU is the process's, every thread's: chDB runs inside the process) and its
peak RSS; the parent prints the table, the chDB/DuckDB ratios, and checks that both engines gave
the same total spend and the same latency quantiles.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics_10m import generate  # noqa: E402

AS_OF = dt.datetime(2026, 10, 24, tzinfo=dt.UTC)


def load_chdb(db: Path, url: str, work: Path) -> tuple[float, float, int]:
    """Copy the DuckDB calls into chDB's ``calls``: (wall s, CPU s, rows)."""
    from clauditor.clickhouse import connect
    from clauditor.clickhouse.ddl import init

    parquet = work / "calls.parquet"
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'").fetchall()
    columns = [r[0] for r in con.execute("DESCRIBE calls").fetchall()]
    con.execute(f"COPY calls TO '{parquet}' (FORMAT parquet)").fetchall()
    con.close()
    wall, cpu = time.perf_counter(), time.process_time()
    with connect(url) as client:
        init(client)
        names = ", ".join(columns)
        key = "coalesce(response_id, span_id)" if "response_id" in columns else "span_id"
        client.command(
            f"INSERT INTO {client.database}.calls ({names}, call_key, source_preference) "
            f"SELECT {names}, {key}, 0 FROM file('{parquet}', Parquet)"
        )
        client.command(f"OPTIMIZE TABLE {client.database}.calls FINAL")
        rows = int(client.rows(f"SELECT count() FROM {client.database}.calls FINAL")[0][0])
    parquet.unlink()
    return time.perf_counter() - wall, time.process_time() - cpu, rows


def child(source: str) -> None:
    """Run every job on ``source`` (a DuckDB file or a chdb:// URL), the connection included in
    the time; print the figures as JSON."""
    from clauditor.analytics.engine import DuckDBEngine, is_clickhouse, open_engine
    from clauditor.analytics.runner import run_jobs_on
    from clauditor.config import BudgetConfig, Config

    config = Config(budget=BudgetConfig(monthly_usd=1e6, features={"feature-1": 1e5}))
    wall, cpu = time.perf_counter(), time.process_time()
    if is_clickhouse(source):
        with open_engine(source, sources=None) as engine:
            results = run_jobs_on(engine, None, config=config, as_of=AS_OF)
    else:  # the generated file is not a clauditor store (no migrations table): open it as is
        engine = DuckDBEngine(duckdb.connect(source, read_only=True))
        results = run_jobs_on(engine, None, config=config, as_of=AS_OF)
        engine.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latency = results["latency_percentiles"]
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "spend": float(results["cost_breakdown"]["cost_usd"].sum()),
                "p99": latency["duration_p99_ms"].fill_null(0.0).to_list(),
                "rows": {name: frame.height for name, frame in results.items()},
            }
        )
    )


def _run_child(source: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", source], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"the child on {source} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated stores")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="clauditor-ch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db, url = work / "calls.duckdb", f"chdb://{work / 'chdb'}"
    try:
        wall = time.perf_counter()
        generate(db, args.rows)
        print(f"generated {args.rows:,} calls in DuckDB in {time.perf_counter() - wall:.1f} s")
        load_wall, load_cpu, rows = load_chdb(db, url, work)
        print(f"loaded {rows:,} calls into chDB: {load_wall:.1f} s wall, {load_cpu:.1f} s CPU")
        runs: dict[str, list[dict[str, Any]]] = {"DuckDB": [], "chDB": []}
        for _ in range(args.rounds):
            runs["DuckDB"].append(_run_child(str(db)))
            runs["chDB"].append(_run_child(url))
        print(f"\nrun_jobs_on, every job, {rows:,} calls ({args.rounds} rounds, alternating)")
        print(f"{'engine':<8} {'wall s':>16} {'CPU s':>16}")
        for name, got in runs.items():
            walls = " / ".join(f"{r['wall']:.2f}" for r in got)
            cpus = " / ".join(f"{r['cpu']:.2f}" for r in got)
            print(f"{name:<8} {walls:>16} {cpus:>16}")
        for what in ("wall", "cpu"):
            duck = min(r[what] for r in runs["DuckDB"])
            ch = min(r[what] for r in runs["chDB"])
            print(f"chDB / DuckDB, best {what}: {ch / duck:.2f}x")
        a, b = runs["DuckDB"][0], runs["chDB"][0]
        same = (
            math.isclose(a["spend"], b["spend"], rel_tol=1e-9)
            and a["rows"] == b["rows"]
            and len(a["p99"]) == len(b["p99"])
            and all(
                math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a["p99"], b["p99"], strict=True)
            )
        )
        print(f"same answers (spend, job row counts, latency p99s): {same}")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
