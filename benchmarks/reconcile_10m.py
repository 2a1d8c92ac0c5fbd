"""Benchmark: reconciling a 10M-call month against a year of hourly bill rows.

    python benchmarks/reconcile_10m.py [--calls 10000000] [--workdir benchmarks/out]

The calls are :mod:`benchmarks.analytics_10m`'s (its ``GENERATE`` statement, imported: 30 days
of October 2026, four models, caching, errors), inserted by name into a ``calls`` table that
:func:`clauditor.store.write_connection` created, so the file is a real clauditor database.
Their cache writes are marked 5-minute writes (the generator reports no TTL split).

The bill is written straight into ``bill_usage``, ``bill_costs`` and ``bill_days`` with SQL, in
the stored shape, for the 365 UTC days 2025-10-31..2026-10-30, as hourly rows (24 per day and
dimension: the row count of the Admin API's 1-hour buckets; the store keeps days, so a day's
hours are 24 rows of that day). Every day of the year repeats a day of October's metered
tokens and dollars (per model, key ``apikey_app``), plus what clauditor never saw: an
uninstrumented key's 10M Sonnet input tokens a day ($30), and from 2026-06-01 Opus output
billed at $24/MTok instead of the card's $25 (price drift). Each day is stamped settled.

Then, each in its own child process (peak RSS is the child's ``ru_maxrss``):

1. :func:`clauditor.analytics.reconcile.reconcile_stored` over 2026-10-01..2026-10-30: wall and
   CPU seconds (the machine has 2 shared cores: CPU time says what the work cost);
2. ``clauditor reconcile --period 2026-10-01..2026-10-30 --format json``, under
   ``/usr/bin/time -v`` when it exists (else the child's resource usage): wall, user + system
   CPU seconds and maximum resident set size.

The database is generated once per call count under ``--workdir`` and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 10, 30)
YEAR_FIRST = dt.date(2025, 10, 31)  # 365 days up to LAST
DRIFT_FROM = dt.date(2026, 6, 1)

# October's metered dollars and tokens per UTC day and model, the pattern every bill day takes.
_OCTOBER = """
CREATE TEMP TABLE october AS
SELECT datediff('day', DATE '2026-10-01', CAST(start_time AS DATE)) AS k,
       coalesce(response_model, request_model) AS model,
       CAST(sum(input_tokens) AS BIGINT) AS uncached,
       CAST(sum(cache_read_input_tokens) AS BIGINT) AS cache_read,
       CAST(sum(cache_creation_input_tokens) AS BIGINT) AS write_5m,
       CAST(sum(output_tokens) AS BIGINT) AS output,
       sum(cost_input_usd) AS input_usd, sum(cost_output_usd) AS output_usd,
       sum(cost_cache_read_usd) AS read_usd, sum(cost_cache_write_usd) AS write_usd
FROM calls GROUP BY ALL
"""

# One row per day of the year, its pattern day k in October, and its 24 hours.
_HOURS = f"""
CREATE TEMP TABLE hours AS
SELECT CAST(d AS DATE) AS day, (datediff('day', DATE '{FIRST}', CAST(d AS DATE)) % 30 + 30) % 30
       AS k, h
FROM range(DATE '{YEAR_FIRST}', DATE '{LAST}' + 1, INTERVAL 1 DAY) t(d), range(24) u(h)
"""

# A day's tokens split over its hours exactly (the remainder in hour 0).
_SPLIT = "(({t}) // 24 + CASE WHEN h = 0 THEN ({t}) % 24 ELSE 0 END)"
_DIMS = "'wrkspc_default', 'standard', '0-200k', 'not_available'"

_USAGE = f"""
INSERT INTO bill_usage
SELECT day, model, 'apikey_app', {_DIMS},
       {_SPLIT.format(t="uncached")}, {_SPLIT.format(t="cache_read")},
       {_SPLIT.format(t="write_5m")}, 0, {_SPLIT.format(t="output")}, 0
FROM hours JOIN october USING (k)
UNION ALL
SELECT day, 'claude-sonnet-4-5', 'apikey_batch', {_DIMS},
       {_SPLIT.format(t="10000000")}, 0, 0, 0, 0, 0
FROM hours
"""

_COST_ROW = """
SELECT day, 'wrkspc_default', model || ' ' || '{token_type}', 'tokens', '{token_type}', model,
       'standard', '0-200k', 'not_available', 'USD', printf('%.9f', ({usd}) * 100), {usd}
FROM hours JOIN october USING (k)
"""
_OPUS_OUTPUT = (
    f"output_usd / 24 * CASE WHEN model LIKE '%opus%' AND day >= DATE '{DRIFT_FROM}' "
    "THEN 24.0 / 25.0 ELSE 1.0 END"
)
_COSTS = (
    "INSERT INTO bill_costs "
    + " UNION ALL ".join(
        _COST_ROW.format(token_type=token_type, usd=usd)
        for token_type, usd in (
            ("uncached_input_tokens", "input_usd / 24"),
            ("cache_read_input_tokens", "read_usd / 24"),
            ("cache_creation.ephemeral_5m_input_tokens", "write_usd / 24"),
            ("output_tokens", _OPUS_OUTPUT),
        )
    )
    + """
UNION ALL
SELECT day, 'wrkspc_default', 'claude-sonnet-4-5 uncached_input_tokens', 'tokens',
       'uncached_input_tokens', 'claude-sonnet-4-5', 'standard', '0-200k', 'not_available',
       'USD', '125', 1.25
FROM hours
"""
)
_DAYS = f"""
INSERT INTO bill_days
SELECT report, CAST(d AS DATE), CAST(d AS DATE) + INTERVAL 4 DAY
FROM range(DATE '{YEAR_FIRST}', DATE '{LAST}' + 1, INTERVAL 1 DAY) t(d),
     (VALUES ('usage'), ('cost')) r(report)
"""


def generate(db: Path, calls: int) -> None:
    """A clauditor database at ``db`` with ``calls`` generated calls and a year of bill rows."""
    from benchmarks.analytics_10m import GENERATE
    from clauditor.store import write_connection

    select = GENERATE.split("CREATE TABLE calls AS", 1)[1]
    tmp = db.with_name(db.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with write_connection(tmp) as con:
        con.execute("SET enable_progress_bar = false").fetchall()
        con.execute(f"INSERT INTO calls BY NAME SELECT * FROM ({select})", {"n": calls}).fetchall()
        con.execute(
            "UPDATE calls SET cache_creation_5m_input_tokens = cache_creation_input_tokens"
        ).fetchall()
        for sql in (_OCTOBER, _HOURS, _USAGE, _COSTS, _DAYS):
            con.execute(sql).fetchall()
        counts = {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("calls", "bill_usage", "bill_costs", "bill_days")
        }
    tmp.replace(db)
    print("generated " + ", ".join(f"{t} {n:,} rows" for t, n in counts.items()), flush=True)


def _measure(db: Path) -> None:
    """In a child: time reconcile_stored over the month; print one JSON line."""
    from clauditor.analytics.reconcile import reconcile_stored
    from clauditor.config import Config

    wall, cpu = time.perf_counter(), time.process_time()
    result = reconcile_stored(db, FIRST, LAST, Config())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = result.rows
    verdicts = rows.group_by("verdict").len().sort("verdict").rows()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rows": rows.height,
                "billed_usd": float(rows["billed_usd"].sum()),
                "metered_usd": float(rows["metered_usd"].sum()),
                "unmetered_usd": float(rows["unmetered_usd"].sum()),
                "verdicts": verdicts,
                "drift_rows": result.drift.height,
            }
        )
    )


def _command(db: Path) -> dict[str, Any]:
    """``clauditor reconcile`` over the month in a child process: wall, CPU s, max RSS MB."""
    script = Path(sys.executable).with_name("clauditor")  # the venv's console script
    argv = [
        str(script), "reconcile", "--period", f"{FIRST}..{LAST}",
        "--db", str(db), "--format", "json",
    ]  # fmt: skip
    timer = Path("/usr/bin/time")
    if timer.exists():
        start = time.perf_counter()
        done = subprocess.run(
            [str(timer), "-v", *argv], capture_output=True, text=True, check=True, cwd=ROOT
        )
        wall = time.perf_counter() - start
        stats = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(": ") for line in done.stderr.splitlines())
            if v
        )
        cpu = float(stats["User time (seconds)"]) + float(stats["System time (seconds)"])
        rss = float(stats["Maximum resident set size (kbytes)"]) / 1024
        how = "/usr/bin/time -v"
    else:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        rss = after.ru_maxrss / 1024  # the largest child so far
        how = "RUSAGE_CHILDREN"
    rows = json.loads(done.stdout)
    notes = [line for line in done.stderr.splitlines() if re.match(r"(price drift|days)", line)]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss, "rows": len(rows), "how": how,
            "notes": notes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--measure-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        _measure(args.measure_only)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"reconcile_{args.calls}.duckdb"
    if not db.exists():
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c",
             "import sys; from pathlib import Path; from benchmarks.reconcile_10m import generate; "
             "generate(Path(sys.argv[1]), int(sys.argv[2]))", str(db), str(args.calls)],
            check=True, cwd=ROOT,
        )  # fmt: skip
        print(f"generated in {time.perf_counter() - start:.1f} s -> {db}")
    out = subprocess.run(
        [sys.executable, __file__, "--measure-only", str(db)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    stored = json.loads(out.stdout.strip().splitlines()[-1])
    command = _command(db)
    print(f"{args.calls:,} calls, {FIRST}..{LAST} against the bill of {YEAR_FIRST}..{LAST}")
    print(f"{'step':<36} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for name, r in (("reconcile_stored", stored), (f"clauditor reconcile ({command['how']})",
                                                    command)):  # fmt: skip
        print(f"{name:<36} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['peak_rss_mb']:>12,.0f}")
    print(
        f"rows {stored['rows']} (command: {command['rows']}); billed ${stored['billed_usd']:,.2f}, "
        f"metered ${stored['metered_usd']:,.2f}, unmetered ${stored['unmetered_usd']:,.2f}; "
        f"verdicts {stored['verdicts']}; drift rows {stored['drift_rows']}"
    )
    for note in command["notes"]:
        print(f"  {note}")


if __name__ == "__main__":
    main()
