"""The HTML report over 10M calls: how long ``write_report`` takes and how big the file is.

Run:  python benchmarks/report_10m.py [--calls 10000000] [--workdir benchmarks/out]
          [--baseline /work/wt-base]

With ``--baseline`` (a checkout of an earlier commit with its own ``.venv``), each report is
written twice in the same run, alternating, each in a fresh process: by that checkout's code
(its Python) and by this one's; the table gives wall and CPU seconds (CPU: every thread of the
process, the fairer figure on a shared machine), the process's peak RSS and the file size, and
whether the page carries estimates (the "≈" of a sampled section).

The calls are generated directly in DuckDB SQL (``range()`` plus hash-derived columns in the
``calls`` schema, in a table created by :func:`clauditor.store.write_connection`), 30 days of
them ending at the report's ``as_of``, so every call is inside the report's ``30d`` period:
the worst case. The database is made once per row count and reused.

The traffic is shaped like the committed sample's, at scale: 16 features (one untagged share),
6 models (one unpriced), 4 services, office-hours load, ~3 % errors with a 529 storm, retries,
streamed calls with time to first token, prompt caching. Costs are computed in SQL from the
models' base prices (cache read 0.1x, write 1.25x), close enough to the real pricing for a
benchmark of the report, which only aggregates them.

Targets (issue 6, issue 15): ``write_report`` over 10M calls, exact, in at most 15 s and 2 GB
peak memory; the file at most 6 MB whatever the row count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

AS_OF = dt.datetime(2026, 10, 31, tzinfo=dt.UTC)
DAYS = 30

# (model, input $/MTok, output $/MTok); NULL prices make unpriced calls.
_MODELS = [
    ("claude-sonnet-4-5", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-sonnet-4-6", 3.0, 15.0),
    ("claude-opus-4-6", 5.0, 25.0),
    ("claude-experimental-2026", None, None),
]


def _generate_sql(calls: int) -> str:
    """INSERT … SELECT building ``calls`` rows of the ``calls`` table from ``range()``."""
    models = ", ".join(f"'{m}'" for m, _, _ in _MODELS)
    price_in = ", ".join("NULL" if p is None else str(p) for _, p, _ in _MODELS)
    price_out = ", ".join("NULL" if p is None else str(p) for _, _, p in _MODELS)
    seconds = DAYS * 86400
    start = (AS_OF - dt.timedelta(days=DAYS)).strftime("%Y-%m-%d %H:%M:%S")
    # h(k): a deterministic pseudo-random integer in [0, 1e6) per row and salt k.
    return f"""
    INSERT INTO calls BY NAME
    WITH base AS (
        SELECT
            i,
            TIMESTAMPTZ '{start}+00' + to_microseconds(
                -- office-hours shape: two thirds of the calls folded into 08:00-20:00 UTC
                CAST(
                    CASE WHEN hash(i, 1) % 3 = 0 THEN (hash(i, 2) % {seconds})
                    ELSE ((hash(i, 2) % {DAYS}) * 86400 + 28800 + hash(i, 3) % 43200)
                    END AS BIGINT) * 1000000 + CAST(hash(i, 4) % 1000000 AS BIGINT)
            ) AS start_time,
            CAST(hash(i, 5) % 16 AS INTEGER) AS f,
            CAST(hash(i, 6) % 100 AS INTEGER) AS m,
            CAST(hash(i, 7) % 1000 AS INTEGER) AS e,
            CAST(hash(i, 8) % 1000000 AS INTEGER) AS r
        FROM range({calls}) t(i)
    ), shaped AS (
        SELECT *,
            CASE WHEN m < 40 THEN 1 WHEN m < 65 THEN 2 WHEN m < 80 THEN 3 WHEN m < 92 THEN 4
                 WHEN m < 99 THEN 5 ELSE 6 END AS mi,
            -- the 529 storm on day 9, 14:00-14:45: a third of the calls fail
            (start_time >= TIMESTAMPTZ '2026-10-09 14:00:00+00'
             AND start_time < TIMESTAMPTZ '2026-10-09 14:45:00+00') AS storm,
            100 + r % 4000 AS in_tok,
            20 + (r * 7) % 900 AS out_tok,
            CASE WHEN f % 3 = 0 THEN 0 ELSE (r * 13) % 6000 END AS read_tok,
            CASE WHEN f % 3 = 0 THEN 0 WHEN r % 10 = 0 THEN 3000 ELSE 0 END AS write_tok
        FROM base
    ), failing AS (
        SELECT *,
            CASE WHEN storm AND e < 330 THEN 'overloaded_error'
                 WHEN e < 8 THEN 'rate_limit_error'
                 WHEN e < 12 THEN 'api_error'
                 WHEN e < 14 THEN 'invalid_request_error'
                 WHEN e < 15 THEN 'client_timeout_error'
                 ELSE NULL END AS err
        FROM shaped
    ), priced AS (
        SELECT *,
            list_extract([{models}], mi) AS model,
            list_extract([{price_in}], mi) / 1e6 AS pin,
            list_extract([{price_out}], mi) / 1e6 AS pout
        FROM failing
    )
    SELECT
        printf('%016x', i) AS span_id,
        printf('%032x', i // 4) AS trace_id,
        NULL AS parent_span_id,
        start_time,
        start_time + to_milliseconds(CAST(300 + r % 9000 AS BIGINT)) AS end_time,
        CAST(300 + r % 9000 AS DOUBLE) AS duration_ms,
        CASE WHEN f % 2 = 0 THEN CAST(150 + (r * 3) % 1500 AS DOUBLE) END AS ttft_ms,
        'service-' || (f % 4) AS service,
        CASE WHEN e > 980 THEN 'staging' ELSE 'prod' END AS environment,
        CASE WHEN f = 15 THEN NULL ELSE 'feature-' || lpad(CAST(f AS VARCHAR), 2, '0') END
            AS feature,
        'user-' || (r % 5000) AS user_id,
        'conv-' || (i // 8) AS conversation_id,
        'app.module' || (f % 5) || ':handler' || (r % 3) AS code_location,
        CASE WHEN f = 7 THEN 'batch' ELSE 'chat' END AS operation,
        model AS request_model,
        model || '-20250929' AS response_model,
        CASE WHEN f = 15 THEN NULL ELSE 1024 END AS max_tokens,
        f % 2 = 0 AS stream,
        CASE WHEN f = 7 THEN 'batch' ELSE 'standard' END AS service_tier,
        NULL AS inference_geo,
        NULL AS speed,
        CASE WHEN err IS NULL THEN in_tok ELSE 0 END AS input_tokens,
        CASE WHEN err IS NULL THEN out_tok ELSE 0 END AS output_tokens,
        CASE WHEN err IS NULL THEN read_tok ELSE 0 END AS cache_read_input_tokens,
        CASE WHEN err IS NULL THEN write_tok ELSE 0 END AS cache_creation_input_tokens,
        CASE WHEN err IS NULL THEN write_tok ELSE 0 END AS cache_creation_5m_input_tokens,
        0 AS cache_creation_1h_input_tokens,
        CASE WHEN err IS NOT NULL THEN NULL WHEN r % 50 = 0 THEN 'max_tokens'
             ELSE 'end_turn' END AS stop_reason,
        CASE WHEN err IS NULL THEN 'ok' ELSE 'error' END AS status,
        CASE err WHEN 'overloaded_error' THEN 529 WHEN 'rate_limit_error' THEN 429
                 WHEN 'api_error' THEN 500 WHEN 'invalid_request_error' THEN 400
                 WHEN 'client_timeout_error' THEN NULL ELSE 200 END AS http_status,
        err AS error_type,
        CASE WHEN err IN ('overloaded_error', 'rate_limit_error') THEN 2
             WHEN e BETWEEN 900 AND 919 THEN 1 ELSE 0 END AS retries,
        CASE WHEN err IS NULL THEN
            in_tok * pin + out_tok * pout + read_tok * pin * 0.1 + write_tok * pin * 1.25
            ELSE (CASE WHEN pin IS NULL THEN NULL ELSE 0.0 END) END AS cost_usd,
        CASE WHEN err IS NULL THEN in_tok * pin ELSE pin * 0 END AS cost_input_usd,
        CASE WHEN err IS NULL THEN out_tok * pout ELSE pin * 0 END AS cost_output_usd,
        CASE WHEN err IS NULL THEN read_tok * pin * 0.1 ELSE pin * 0 END AS cost_cache_read_usd,
        CASE WHEN err IS NULL THEN write_tok * pin * 1.25 ELSE pin * 0 END
            AS cost_cache_write_usd,
        CASE WHEN pin IS NULL THEN NULL ELSE 'benchmark' END AS price_version,
        'clauditor' AS source,
        NULL AS attributes,
        NULL AS resource,
        NULL AS response_id
    FROM priced
    """


def make_database(workdir: Path, calls: int) -> Path:
    """A DuckDB file with ``calls`` generated rows (made once, then reused)."""
    from clauditor.store import write_connection

    path = workdir / f"report-{calls}.duckdb"
    if path.exists():
        return path
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    with write_connection(tmp) as con:
        con.execute("SET enable_progress_bar = false").fetchall()
        con.execute(_generate_sql(calls)).fetchall()
        con.execute("CHECKPOINT").fetchall()
    tmp.rename(path)
    print(f"generated {calls:,} calls in {time.perf_counter() - started:.1f} s -> {path}")
    return path


# Run in a fresh process by either checkout's Python: one measured operation, one JSON line out.
_CHILD = """
import datetime as dt, json, sys, time
from pathlib import Path
db, out, calls, what = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
as_of = dt.datetime.fromisoformat(sys.argv[5])
from clauditor.config import BudgetConfig, Config
config = Config(budget=BudgetConfig(monthly_usd=calls / 1000.0))
wall, cpu = time.perf_counter(), time.process_time()
extra = {}
if what == "report":
    from clauditor.dashboards.report import write_report
    summary = write_report(db, out, period="30d", as_of=as_of, config=config)
    page = out.read_text(encoding="utf-8")
    extra = {"mb": summary.bytes / 1e6, "calls": summary.calls, "estimates": "≈" in page}
elif what == "check":
    from clauditor.alerts import check_alerts
    result = check_alerts(db, config, as_of=as_of, dry_run=True)
    extra = {"firing": sorted(f"{i.rule}:{i.key}" for i in result.firing)}
else:
    from clauditor.alerts import backtest
    replay = backtest(db, config, since="30d", as_of=as_of, step="1h")
    extra = {"incidents": sorted(f"{r}:{k}" for r, k in replay.select("rule", "key").rows())}
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "rss_mb": hwm / 1024, **extra}))
"""


def measure(python: str, cwd: Path, what: str, db: Path, out: Path, calls: int) -> dict:
    """``what`` (report, check, backtest) over ``db`` by the code that ``python`` imports,
    run in ``cwd`` in a fresh process: wall and CPU seconds, peak RSS (MB) and its figures."""
    args = [python, "-c", _CHILD, str(db.resolve()), str(out.resolve()), str(calls), what,
            AS_OF.isoformat()]  # fmt: skip
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(calls: int, workdir: Path) -> dict[str, float]:
    """Write the 30-day report over ``calls`` generated calls; seconds, MB and calls seen."""
    from clauditor.config import BudgetConfig, Config
    from clauditor.dashboards.report import write_report

    db = make_database(workdir, calls)
    config = Config(budget=BudgetConfig(monthly_usd=float(calls) / 1000.0))
    out = workdir / f"report-{calls}.html"
    started = time.perf_counter()
    summary = write_report(db, out, period="30d", as_of=AS_OF, config=config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "mb": summary.bytes / 1e6, "calls": summary.calls}


def main() -> None:
    """Measure, print a small table (paste it into benchmarks/RESULTS.md)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.baseline is None:
        small = run(max(args.calls // 10, 1), args.workdir)
        big = run(args.calls, args.workdir)
        print("| calls in period | write_report | file size |")
        print("|---:|---:|---:|")
        for row in (small, big):
            print(f"| {row['calls']:,.0f} | {row['seconds']:.1f} s | {row['mb']:.2f} MB |")
        print(f"peak RSS {_peak_rss_mb():,.0f} MB")
        verdict = "OK" if big["seconds"] <= 15 and big["mb"] <= 6 else "MISSED"
        print(f"targets (<= 15 s, <= 6 MB): {verdict}")
        return
    db = make_database(args.workdir, args.calls)
    here = Path(__file__).resolve().parents[1]
    trees = [("baseline", str(args.baseline / ".venv/bin/python"), args.baseline),
             ("this tree", sys.executable, here)]  # fmt: skip
    print("| code | wall | CPU | peak RSS | file | calls | estimates (≈) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, python, cwd in trees:
        out = args.workdir / f"report-{args.calls}-{name.replace(' ', '-')}.html"
        r = measure(python, cwd, "report", db, out, args.calls)
        print(
            f"| {name} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['rss_mb']:,.0f} MB | "
            f"{r['mb']:.2f} MB | {r['calls']:,} | {'yes' if r['estimates'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
