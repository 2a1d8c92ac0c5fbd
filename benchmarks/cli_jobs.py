"""What a job command costs over a big database: whole rows, the lean frame, aggregates.

Run:  python benchmarks/cli_jobs.py --db FILE [--period 2026-10-01..2026-10-31]

For each job the CLI runs (costs, cache, latency, errors, failures, audit) it starts child
processes on the same period of ``--db`` (a clauditor database, say the one
`ingest_throughput.py --rss` leaves in benchmarks/out/rss.duckdb: 5M calls over one month):

* baseline: ``load_calls_in`` (whole ``calls`` rows, what the commands read at first), then
  the per-call job;
* lean: the lean analytics frame (``load_analytics_frame``; for costs only the
  ``cost_columns``), then the same per-call job (what the commands did before they ran on
  aggregates);
* clauditor: what the command runs now with its default options: the runner's function for
  the command (:mod:`clauditor.analytics.runner`);

and prints wall seconds and peak RSS of each child, and whether it gave the baseline's table
(equal up to float summation order).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
job, mode, db, period = sys.argv[1:5]
started = time.perf_counter()
from clauditor.analytics import load_calls_in, resolve_period
from clauditor.analytics.costs import cost_columns
from clauditor.analytics.frame import load_analytics_frame
from clauditor.analytics import runner
from clauditor.config import Config
span = resolve_period(period, tz="UTC")
if job == "costs" and mode == "clauditor":  # rollups of both periods
    table = runner.costs_table(db, span, ["feature", "model"], sources=None)
elif job == "costs":  # whole rows, or only the columns a breakdown reads
    from clauditor.analytics.costs import cost_breakdown
    from clauditor.analytics.trends import change_table
    keys = ["feature", "model"]
    columns = None if mode == "baseline" else cost_columns(keys)
    now = load_calls_in(db, span, columns=columns)
    before = load_calls_in(db, span.previous(), columns=columns)
    table = change_table(cost_breakdown(now, keys), cost_breakdown(before, keys), keys)
elif mode != "clauditor":  # per-call jobs on whole rows (baseline) or on the lean frame
    calls = load_calls_in(db, span) if mode == "baseline" else load_analytics_frame(db, span)
    if job == "cache":
        from clauditor.analytics.cache import cache_economics
        table = cache_economics(calls, by=["feature", "model"])
    elif job == "latency":
        from clauditor.analytics.latency import latency_percentiles
        table = latency_percentiles(calls, by=["feature", "model"], every="1d")
    elif job == "errors":
        from clauditor.analytics.errors import error_episodes
        table = error_episodes(calls)
    elif job == "failures":
        from clauditor.analytics.failure import cost_of_failure
        table = cost_of_failure(calls)
    else:
        from clauditor.analytics.audit import audit
        table = audit(calls, config=Config())
elif job == "cache":  # what the commands run now: the runner
    table = runner.cache_tables(db, span, ["feature", "model"], candidates=False)[0]
elif job == "latency":
    table = runner.latency_table(db, span, ["feature", "model"])
elif job == "errors":
    table = runner.errors_tables(db, span)[0]
elif job == "failures":
    table = runner.failures_table(db, span, ["feature"])
else:
    table = runner.audit_table(db, span, config=Config(), as_of=span.end)
wall = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "rss": rss, "table": table.write_csv()}))
"""


def _run(job: str, mode: str, db: Path, period: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, job, mode, str(db), period],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _same(a: str, b: str) -> bool:
    """CSV tables equal, numbers compared to 1e-9 relative (sums in another order)."""
    rows_a, rows_b = a.splitlines(), b.splitlines()
    if len(rows_a) != len(rows_b):
        return False
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for x, y in zip(ra.split(","), rb.split(","), strict=False):
            if x == y:
                continue
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                return False
            if abs(fx - fy) > 1e-9 * max(abs(fx), abs(fy), 1.0):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--period", default="2026-10-01..2026-10-31")
    parser.add_argument("--jobs", default="costs,cache,latency,errors,failures,audit")
    args = parser.parse_args()
    print(f"{args.db} ({args.db.stat().st_size / 1e6:,.0f} MB), period {args.period}")
    print(f"{'job':<16}{'baseline wall':>15}{'RSS':>10}{'clauditor wall':>16}{'RSS':>10}  same")
    for job in args.jobs.split(","):
        base = _run(job, "baseline", args.db, args.period)
        # the lean per-call frame too (what the commands read before they were planned)
        for mode in ("lean", "clauditor"):
            ours = _run(job, mode, args.db, args.period)
            same = _same(str(base["table"]), str(ours["table"]))
            print(
                f"{job if mode == 'clauditor' else job + ' (lean)':<16}"
                f"{base['wall']:>13.1f} s{base['rss']:>7,.0f} MB"
                f"{ours['wall']:>14.1f} s{ours['rss']:>7,.0f} MB  {'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
