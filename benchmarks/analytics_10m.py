"""Benchmark: every analytics job over 10M simulated calls, against one plain SQL rollup.

    python benchmarks/analytics_10m.py [--rows 10000000] [--db PATH] [--keep]
                                      [--breakdown] [--against CHECKOUT [--rounds 2]]

Rows are generated directly in DuckDB with SQL (``range()`` plus hashed pseudo-random columns:
30 days, a dozen features, four models, caching, streaming, errors with retries, conversations),
in a child process so that the generator's memory is not counted. A second child process then:

1. times the plain per-feature-per-day rollup as one DuckDB SQL statement;
2. times :func:`clauditor.analytics.runner.run_jobs_on`: every job of
   :mod:`clauditor.analytics`, the engine reducing the calls first (the one path; the per-call
   jobs are gone);

With ``--breakdown`` the same child also times, before ``run_jobs``, the rollup with its
day computed from integer microseconds (``CAST(start_time AS DATE)`` on a TIMESTAMPTZ goes
through ICU even in UTC) and each reduction of the engine on its own, so the parts can be set
against both forms of the baseline in one run. Those rows are not added to "all jobs together".

With ``--against CHECKOUT`` (a checkout of an older commit with its own ``.venv``) the parent
measures the same database with that checkout's own benchmark child and with this one,
alternating, ``--rounds`` times, and prints both side by side (wall, CPU, peak RSS).

The child reports wall and CPU seconds of each step (the machine may be shared: CPU time says what
the work cost when wall time is inflated by other processes) and its own peak RSS
(``ru_maxrss``). The parent prints the table and the ratios to the SQL rollup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

# Hashed uniform in [0, 1) per row and salt: deterministic, no RNG state.
_U = "((hash(i, {salt}) % 1000000) / 1000000.0)"

GENERATE = f"""
CREATE TABLE calls AS
WITH base AS (
    SELECT
        i,
        TIMESTAMPTZ '2026-10-01 00:00:00+00'
            + to_microseconds(CAST(i * (30 * 86400 * 1e6 / $n) AS BIGINT)) AS start_time,
        CAST(floor({_U.format(salt=1)} * 12) AS INTEGER) AS f,
        {_U.format(salt=2)} AS u_err,
        {_U.format(salt=3)} AS u_cache,
        {_U.format(salt=4)} AS u_tok,
        {_U.format(salt=5)} AS u_out
    FROM range($n) t(i)
), shaped AS (
    SELECT *,
        CASE WHEN f < 6 THEN 'claude-haiku-4-5' WHEN f < 10 THEN 'claude-sonnet-4-5'
             WHEN f < 11 THEN 'claude-opus-4-5' ELSE 'claude-sonnet-4-6' END AS model,
        CASE WHEN f = 11 THEN NULL ELSE 'feature-' || f END AS feature,
        u_err < 0.015 AS failed,
        f IN (0, 6, 7) AS streamed,
        f IN (6, 7, 8) AS caches,
        CAST(500 + u_tok * 6000 AS BIGINT) AS fresh,
        CAST(20 + u_out * 600 AS BIGINT) AS out_tok
    FROM base
), tokens AS (
    SELECT *,
        CASE WHEN failed THEN 0 ELSE fresh END AS input_tokens,
        CASE WHEN failed THEN 0 ELSE out_tok END AS output_tokens,
        CASE WHEN failed OR NOT caches OR u_cache >= 0.85 THEN 0 ELSE 3000 END AS cache_read,
        CASE WHEN failed OR NOT caches OR u_cache < 0.85 THEN 0 ELSE 3000 END AS cache_write,
        CASE WHEN model LIKE '%haiku%' THEN 1.0 WHEN model LIKE '%opus%' THEN 5.0 ELSE 3.0 END
            * 1e-6 AS p_in
    FROM shaped
)
SELECT
    printf('%016x', i) AS span_id,
    start_time,
    CAST(CASE WHEN failed THEN 400.0 ELSE 300.0 + output_tokens * 12.0 END AS DOUBLE)
        AS duration_ms,
    CAST(CASE WHEN streamed AND NOT failed THEN 250.0 + u_tok * 400 END AS DOUBLE) AS ttft_ms,
    feature,
    CASE WHEN f < 8 THEN 'u-' || (hash(i, 6) % 5000) END AS user_id,
    CASE WHEN f = 8 THEN 'conv-' || (i // 64) END AS conversation_id,
    'app.mod' || f || ':handler' AS code_location,
    'chat' AS operation,
    model AS request_model,
    CASE WHEN failed THEN NULL ELSE model END AS response_model,
    CASE WHEN f = 11 THEN NULL ELSE 1024 END AS max_tokens,
    streamed AS stream,
    'standard' AS service_tier,
    input_tokens, output_tokens,
    CAST(cache_read AS BIGINT) AS cache_read_input_tokens,
    CAST(cache_write AS BIGINT) AS cache_creation_input_tokens,
    CAST(0 AS BIGINT) AS cache_creation_1h_input_tokens,
    CASE WHEN failed THEN NULL WHEN output_tokens >= 600 THEN 'max_tokens' ELSE 'end_turn' END
        AS stop_reason,
    CASE WHEN failed THEN 'error' ELSE 'ok' END AS status,
    CASE WHEN NOT failed THEN 200 WHEN u_err < 0.007 THEN 429 WHEN u_err < 0.011 THEN 500
         ELSE 400 END AS http_status,
    CASE WHEN NOT failed THEN NULL WHEN u_err < 0.007 THEN 'rate_limit_error'
         WHEN u_err < 0.011 THEN 'api_error' ELSE 'invalid_request_error' END AS error_type,
    CASE WHEN u_err < 0.007 THEN 2 WHEN u_err < 0.035 THEN 1 ELSE 0 END AS retries,
    input_tokens * p_in + output_tokens * p_in * 5 + cache_read * p_in * 0.1
        + cache_write * p_in * 1.25 AS cost_usd,
    input_tokens * p_in AS cost_input_usd,
    output_tokens * p_in * 5 AS cost_output_usd,
    cache_read * p_in * 0.1 AS cost_cache_read_usd,
    cache_write * p_in * 1.25 AS cost_cache_write_usd,
    CAST(NULL AS DOUBLE) AS cost_tools_usd,
    CAST(0 AS BIGINT) AS web_search_requests,
    p_in * 1e6 AS rate_input, p_in * 5e6 AS rate_output, p_in * 1e5 AS rate_cache_read,
    p_in * 1.25e6 AS rate_cache_write_5m, p_in * 2e6 AS rate_cache_write_1h,
    'sdk' AS source
FROM tokens
"""

# The calls columns the simulation leaves NULL (the jobs read a few of them).
NULL_COLUMNS = {
    "service": "VARCHAR", "environment": "VARCHAR", "inference_geo": "VARCHAR",
    "speed": "VARCHAR", "cache_creation_5m_input_tokens": "BIGINT",
    "cache_ttl_assumed": "VARCHAR",
}  # fmt: skip

ROLLUP = """
SELECT CAST(start_time AS DATE) AS day, feature, count(*) AS calls,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_usd) AS cost_usd
FROM calls GROUP BY ALL
"""

# The same rollup with days from integer microseconds: no ICU conversion per row.
ROLLUP_INTEGER_DAYS = ROLLUP.replace(
    "CAST(start_time AS DATE)", "epoch_us(start_time) // 86400000000"
)

# Latency quantiles per day, feature and model as plain SQL, exact or by t-digest: is
# approximating a way to make the quantiles cheaper? (No: see RESULTS.md.)
QUANTILES = """
SELECT epoch_us(start_time) // 86400000000 AS day, feature, request_model,
       {q}(duration_ms, [0.5, 0.95, 0.99]), {q}(ttft_ms, [0.5, 0.95, 0.99])
FROM calls GROUP BY ALL
"""

# Rows the parent does not add to "all jobs together": the baselines and the breakdown.
_BASELINE = "SQL rollup"
_PART = "  part: "
_ALTERNATIVE = "  alt: "


def generate(db: Path, rows: int) -> None:
    """Write ``rows`` simulated calls to a fresh DuckDB file ``db``."""
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'").fetchall()
    con.execute("SET enable_progress_bar = false").fetchall()
    con.execute(GENERATE, {"n": rows}).fetchall()
    for name, sql_type in NULL_COLUMNS.items():
        con.execute(f"ALTER TABLE calls ADD COLUMN {name} {sql_type}").fetchall()
    con.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _timed(timings: list[tuple[str, float, float]], name: str, job: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = job()
    timings.append((name, time.perf_counter() - wall, time.process_time() - cpu))
    return out


def measure_planned(db: Path, breakdown: bool = False) -> list[tuple[str, float, float]]:
    """Time the SQL rollup and :func:`clauditor.analytics.runner.run_jobs_on` (the engine's
    reductions, finished in Polars) in one process; with ``breakdown``, the integer-day rollup
    and each reduction on its own too."""
    from clauditor.analytics.engine import DuckDBEngine
    from clauditor.analytics.runner import run_jobs_on
    from clauditor.config import BudgetConfig, Config

    timings: list[tuple[str, float, float]] = []
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'").fetchall()
    _timed(timings, "SQL rollup (feature x day, DuckDB)", lambda: con.execute(ROLLUP).fetchall())
    config = Config(budget=BudgetConfig(monthly_usd=1e6, features={"feature-1": 1e5}))
    as_of = dt.datetime(2026, 10, 24, tzinfo=dt.UTC)
    if breakdown:
        _statements(con, timings, config, as_of)
    _timed(
        timings,
        "run_jobs (all jobs, incl. reads)",
        lambda: run_jobs_on(DuckDBEngine(con), None, config=config, as_of=as_of),
    )
    con.close()
    return timings


def _statements(
    con: duckdb.DuckDBPyConnection,
    timings: list[tuple[str, float, float]],
    config: Any,
    as_of: dt.datetime,
) -> None:
    """The integer-day rollup, then each reduction ``run_jobs`` asks for, one by one."""
    from clauditor.analytics.engine import DuckDBEngine

    engine = DuckDBEngine(con)

    _timed(
        timings,
        f"{_BASELINE}, integer days",
        lambda: con.execute(ROLLUP_INTEGER_DAYS).fetchall(),
    )
    hours = _timed(timings, f"{_PART}hourly rollup", lambda: engine.rollup(None, as_of=as_of))
    parts = {
        "error minutes": lambda: engine.error_minutes(None),
        "latency quantiles": lambda: engine.latency(
            None, hours, tz="UTC", by=["feature", "model"], every="1d"
        ),
        "cache read/write sequence": lambda: engine.cache_economics(
            None, hours, by=["feature", "model"]
        ),
        "caching candidates": lambda: engine.caching_candidates(None, hours),
        "audit statements": lambda: engine.audit_figures(None, hours, config=config),
    }
    for name, job in parts.items():
        _timed(timings, _PART + name, job)
    for function in ("quantile_cont", "approx_quantile"):
        query = QUANTILES.format(q=function)
        _timed(
            timings,
            f"{_ALTERNATIVE}{function}, plain SQL",
            lambda q=query: con.execute(q).fetchall(),
        )


def _child(python: str, script: Path, db: Path) -> dict[str, tuple[float, float]]:
    """One measuring child: ``script --measure-only db`` under ``python``."""
    out = subprocess.run(
        [python, str(script), "--measure-only", str(db)],
        check=True,
        capture_output=True,
        text=True,
        cwd=script.parents[1],
    )
    rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
    return {name: (float(wall), float(cpu)) for name, wall, cpu in rows}


def _against(checkout: Path, db: Path, rounds: int) -> None:
    """Every job over ``db`` by ``checkout``'s code and by this one, alternating."""
    sides = {
        "before": (str(checkout / ".venv" / "bin" / "python"),
                   checkout / "benchmarks" / "analytics_10m.py"),
        "now": (sys.executable, Path(__file__).resolve()),
    }  # fmt: skip
    print(f"{'round':<6} {'code':<7} {'all jobs wall s':>16} {'CPU s':>8} {'peak RSS MB':>12}")
    for r in range(1, rounds + 1):
        for side, (python, script) in sides.items():
            results = _child(python, script, db)
            rss = results.pop("peak_rss_mb")[0]
            wall, cpu = next(v for k, v in results.items() if k.startswith("run_"))
            print(f"{r:<6} {side:<7} {wall:>16.3f} {cpu:>8.3f} {rss:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the integer-day rollup and each reduction of run_jobs on its own",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="a checkout of an older commit (with its .venv): measure both, alternating",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --against")
    parser.add_argument("--planned", action="store_true", help=argparse.SUPPRESS)  # the default
    parser.add_argument("--measure-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        timings = measure_planned(args.measure_only, args.breakdown)
        for name, wall, cpu in timings:
            print(f"{name}\t{wall:.3f}\t{cpu:.3f}")
        print(f"peak_rss_mb\t{peak_rss_mb():.0f}\t0")
        return

    tmp = Path(tempfile.mkdtemp(prefix="clauditor-bench-"))
    db = args.db or tmp / "calls.duckdb"
    if not db.exists():
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c",
             f"from benchmarks.analytics_10m import generate; from pathlib import Path; "
             f"generate(Path({str(db)!r}), {args.rows})"],
            check=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s -> {db}")
    if args.against is not None:
        _against(args.against, db, args.rounds)
        if not args.keep and args.db is None:
            db.unlink(missing_ok=True)
        return
    out = subprocess.run(
        [sys.executable, __file__, "--measure-only", str(db)]
        + (["--breakdown"] if args.breakdown else []),
        check=True,
        capture_output=True,
        text=True,
    )
    rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
    results = {name: (float(wall), float(cpu)) for name, wall, cpu in rows}
    rss = results.pop("peak_rss_mb")[0]
    sql = results["SQL rollup (feature x day, DuckDB)"]
    skipped = (_BASELINE, _PART, _ALTERNATIVE)
    job_rows = [v for k, v in results.items() if not k.startswith(skipped)]
    jobs = (sum(w for w, _ in job_rows), sum(c for _, c in job_rows))
    print(f"{'step':<44} {'wall s':>8} {'CPU s':>8}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<44} {wall:>8.3f} {cpu:>8.3f}")
    print(f"{'all jobs together':<44} {jobs[0]:>8.3f} {jobs[1]:>8.3f}")
    for label, i in (("wall", 0), ("CPU", 1)):
        print(f"{label}: jobs / SQL rollup {jobs[i] / sql[i]:.1f}x")
    if args.breakdown:
        fast = results[f"{_BASELINE}, integer days"]
        print("wall, each part / SQL rollup (as written; with integer days):")
        for name, (wall, _) in results.items():
            if name.startswith((_PART, _ALTERNATIVE, "run_jobs")):
                print(f"  {name.strip():<42} {wall / sql[0]:>5.1f}x {wall / fast[0]:>6.1f}x")
    print(
        f"peak RSS of the measuring process (rollup + jobs): {rss:,.0f} MB; cores: {os.cpu_count()}"
    )
    if not args.keep and args.db is None:
        db.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
