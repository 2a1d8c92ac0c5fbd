"""``alerts check`` and ``alerts backtest`` over a 10M-call month, against an earlier checkout.

Run:  python benchmarks/alerts_10m.py --baseline /work/wt-base [--calls 10000000]
          [--workdir benchmarks/out]

The calls are those of benchmarks/report_10m.py (30 days ending 2026-10-31 00:00 UTC, made
once and reused): the whole of October, the month a budget rule reads at that moment. Each
operation runs in a fresh process, by the baseline checkout's code (its ``.venv``) and by this
one's, alternating: ``check_alerts`` at 2026-10-31 00:00 (a dry run: nothing written or sent)
and ``backtest --since 30d --step 1h``, with a monthly budget of $1 per 1,000 calls and the
default rules. The table gives wall and CPU seconds, peak RSS, and whether both codes found the
same firing incidents (check) and the same incidents (backtest).

Targets (issue 15): each at most 10 s and 2 GB over a 10M-call month.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from report_10m import make_database, measure


def main() -> None:
    """Measure, print a small table (paste it into benchmarks/RESULTS.md)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--baseline", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = make_database(args.workdir, args.calls)
    here = Path(__file__).resolve().parents[1]
    trees = [("baseline", str(args.baseline / ".venv/bin/python"), args.baseline),
             ("this tree", sys.executable, here)]  # fmt: skip
    print("| operation | code | wall | CPU | peak RSS | found |")
    print("|---|---|---:|---:|---:|---|")
    for what, key in (("check", "firing"), ("backtest", "incidents")):
        found = {}
        for name, python, cwd in trees:
            r = measure(python, cwd, what, db, args.workdir / "unused.html", args.calls)
            found[name] = r[key]
            print(
                f"| {what} | {name} | {r['wall']:.1f} s | {r['cpu']:.1f} s | "
                f"{r['rss_mb']:,.0f} MB | {len(r[key])} {key} |"
            )
        same = found["baseline"] == found["this tree"]
        print(f"| {what} | same {key} in both | {'yes' if same else 'NO: ' + str(found)} | | | |")


if __name__ == "__main__":
    main()
