"""What a job command costs over a big database: the per-call jobs of an older checkout
against the runner.

Run:  python benchmarks/cli_jobs.py --db FILE --against CHECKOUT [--period 2026-10-01..2026-10-31]

For each job the CLI runs (costs, cache, latency, errors, failures, audit) it starts child
processes on the same period of ``--db`` (a clauditor database, say the one
`ingest_throughput.py --rss` leaves in benchmarks/out/rss.duckdb: 5M calls over one month):

* baseline: under ``CHECKOUT``'s ``.venv`` (a checkout of an older commit that still has the
  per-call jobs), ``load_calls_in`` (whole ``calls`` rows), then the per-call job;
* clauditor: under this checkout, what the command runs now with its default options: the
  runner's function for the command (:mod:`clauditor.analytics.runner`; the per-call jobs are
  gone from this code);

and prints wall seconds and peak RSS of each child, and whether it gave the baseline's table
(equal up to float summation order).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_BASELINE_CHILD = r"""
import json, resource, sys, time
job, db, period = sys.argv[1:4]
started = time.perf_counter()
from clauditor.analytics import load_calls_in, resolve_period
from clauditor.config import Config
span = resolve_period(period, tz="UTC")
if job == "costs":
    from clauditor.analytics.costs import cost_breakdown
    from clauditor.analytics.trends import change_table
    keys = ["feature", "model"]
    now = load_calls_in(db, span)
    before = load_calls_in(db, span.previous())
    table = change_table(cost_breakdown(now, keys), cost_breakdown(before, keys), keys)
else:
    calls = load_calls_in(db, span)
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
wall = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "rss": rss, "table": table.write_csv()}))
"""

_CHILD = r"""
import json, resource, sys, time
job, db, period = sys.argv[1:4]
started = time.perf_counter()
from clauditor.analytics import resolve_period, runner
from clauditor.config import Config
span = resolve_period(period, tz="UTC")
if job == "costs":  # rollups of both periods
    table = runner.costs_table(db, span, ["feature", "model"], sources=None)
elif job == "cache":
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


def _run(python: str, child: str, cwd: Path, job: str, db: Path, period: str) -> dict[str, object]:
    out = subprocess.run(
        [python, "-c", child, job, str(db), period],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
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
    parser.add_argument(
        "--against",
        type=Path,
        required=True,
        help="a checkout of an older commit with the per-call jobs (and its .venv)",
    )
    args = parser.parse_args()
    old_python = str(args.against / ".venv" / "bin" / "python")
    here = Path(__file__).resolve().parents[1]
    print(f"{args.db} ({args.db.stat().st_size / 1e6:,.0f} MB), period {args.period}")
    print(f"{'job':<16}{'baseline wall':>15}{'RSS':>10}{'clauditor wall':>16}{'RSS':>10}  same")
    for job in args.jobs.split(","):
        base = _run(old_python, _BASELINE_CHILD, args.against, job, args.db, args.period)
        ours = _run(sys.executable, _CHILD, here, job, args.db, args.period)
        same = _same(str(base["table"]), str(ours["table"]))
        print(
            f"{job:<16}{base['wall']:>13.1f} s{base['rss']:>7,.0f} MB"
            f"{ours['wall']:>14.1f} s{ours['rss']:>7,.0f} MB  {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()
