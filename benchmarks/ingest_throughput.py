"""File ingest throughput on simulator output, side by side with DuckDB's own JSON reader.

Run:  python benchmarks/ingest_throughput.py [--spans 1000000] [--workdir benchmarks/out]

It writes (once, then reuses) a simulator file of about ``--spans`` spans, then in one run:

1. ceiling A: DuckDB ``read_json`` of the same OTLP file, unnested into one flat row per span
   with the attribute list kept as JSON (parsing and unnesting only: no normalization, no
   pricing, no index);
2. ceiling B: DuckDB ``read_json`` of a pre-flattened copy (one JSON object per span, the
   columns already extracted) into a table;
3. clauditor: ``clauditor.ingest.ingest_paths`` into a fresh DuckDB file (parse, normalize,
   redact, price, write with the span_id primary key).

It prints spans/s (wall and per CPU-second, worker processes' CPU included: the machine may
be shared, and DuckDB uses every core) for each and clauditor's ratio to the ceilings.
``--engines parallel,python`` picks the engines timed (default: parallel and python);
``parallel-general``/``python-general`` are those engines with the fast path of
:mod:`clauditor.ingest.fastpath` turned off, the baseline it is measured against;
``parallel-checked``/``python-checked`` store every batch with DuckDB's per-row conflict
check (``ON CONFLICT DO NOTHING``), the baseline of the unchecked first-ingest insert
(:func:`clauditor.store.insert_in_transaction`);
``--no-ceilings`` skips the two DuckDB ceilings. ``--rss`` instead runs only the ingest (the
first engine named) in a child process and prints the peak RSS of the whole process tree,
worker processes included (``--spans 5000000 --rss`` is the memory check of issue 4).
``--against PYTHON`` instead times the ingest of the same file in child processes, this
checkout's and the checkout whose interpreter ``PYTHON`` is (its virtualenv imports its own
clauditor), alternating ``--rounds`` times, and prints the CPU per span of each (child and its
workers) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (ingest workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def make_input(workdir: Path, spans: int) -> tuple[Path, int]:
    """A simulator file with about ``spans`` spans (cached by size in ``workdir``)."""
    from clauditor.simulator import simulate

    target = workdir / f"sim-{spans}.jsonl"
    marker = workdir / f"sim-{spans}.count"
    if target.exists() and marker.exists():
        return target, int(marker.read_text())
    probe = simulate(workdir / "probe.jsonl", days=30, seed=11, scale=1.0)
    scale = spans / probe.spans
    summary = simulate(target, days=30, seed=11, scale=scale)
    (workdir / "probe.jsonl").unlink()
    marker.write_text(str(summary.spans))
    return target, summary.spans


def flatten_copy(source: Path, target: Path) -> None:
    """One JSON object per span with the interesting fields lifted: the ceiling-B input."""
    with source.open() as fin, target.open("w") as fout:
        for line in fin:
            request = json.loads(line)
            for rs in request["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        flat = {
                            "span_id": span["spanId"],
                            "trace_id": span["traceId"],
                            "name": span["name"],
                            "start": int(span["startTimeUnixNano"]),
                            "end": int(span["endTimeUnixNano"]),
                        }
                        for kv in span.get("attributes", []):
                            value = kv["value"]
                            flat[kv["key"]] = next(iter(value.values())) if value else None
                        fout.write(json.dumps(flat) + "\n")


def bench_duckdb_nested(path: Path) -> tuple[float, float]:
    con = duckdb.connect()
    cpu = _cpu_s()
    started = time.perf_counter()
    con.execute(
        f"""
        CREATE TABLE flat AS
        SELECT s.spanId AS span_id, s.traceId AS trace_id, s.name AS name,
               s.startTimeUnixNano AS start_ns, s.endTimeUnixNano AS end_ns,
               to_json(s.attributes) AS attributes
        FROM (
            SELECT unnest(ss.spans) AS s FROM (
                SELECT unnest(rs.scopeSpans) AS ss FROM (
                    SELECT unnest(resourceSpans) AS rs
                    FROM read_json('{path}', format = 'newline_delimited',
                                   maximum_object_size = 1073741824)
                )
            )
        )
        """
    ).fetchall()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, _cpu_s() - cpu


def bench_duckdb_flat(path: Path) -> tuple[float, float]:
    con = duckdb.connect()
    cpu = _cpu_s()
    started = time.perf_counter()
    con.execute(
        f"CREATE TABLE flat AS SELECT * FROM read_json('{path}', format = 'newline_delimited')"
    ).fetchall()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, _cpu_s() - cpu


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_clauditor(path: Path, db: Path, engine: str) -> tuple[float, float, int]:
    """One ingest; ``engine`` may end in ``-general``: the same engine with the fast path off
    (every span through normalize's general path: the baseline of the fast path), or in
    ``-checked``: every batch inserted with the conflict check."""
    from clauditor.ingest import fastpath, files, ingest_paths

    name, _, variant = engine.partition("-")
    general = variant == "general"
    files._Batcher.OPTIMISTIC = variant != "checked"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    cpu = _cpu_s()
    own = _own_cpu_s()
    started = time.perf_counter()
    fast = fastpath.FAST_SOURCES
    if general:  # no convention decided in one pass; forked workers inherit it
        fastpath.FAST_SOURCES = frozenset()
    try:
        summary = ingest_paths([path], db, engine=name)
    finally:
        fastpath.FAST_SOURCES = fast
        files._Batcher.OPTIMISTIC = True
    wall = time.perf_counter() - started
    total, parent = _cpu_s() - cpu, _own_cpu_s() - own
    # The parent (pricing, DuckDB writes) and the workers (parsing, normalizing) apart: on two
    # cores the parent's share bounds the speed however many workers there are.
    print(f"  {engine}: parent {parent:.1f} CPU-s, workers {total - parent:.1f} CPU-s")
    return wall, total, summary.calls_written


# Run in the child: the ingest, with a thread that samples the RSS of the child and all its
# descendants (the ingest workers) from /proc every 50 ms and keeps the largest sum.
_RSS_CHILD = """
import os, resource, sys, threading, time
from pathlib import Path
from clauditor.ingest import ingest_paths

def tree_rss_kb(pid):
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += tree_rss_kb(int(child))
    except OSError:
        pass
    return total

peak = [0]
done = threading.Event()
def sample():
    while not done.wait(0.05):
        peak[0] = max(peak[0], tree_rss_kb(os.getpid()))
threading.Thread(target=sample, daemon=True).start()

if __name__ == "__main__":
    t = time.perf_counter()
    s = ingest_paths([sys.argv[1]], sys.argv[2], engine=sys.argv[3])
    seconds = time.perf_counter() - t
    done.set()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(s.calls_written, seconds, peak[0] / 1024, own / 1024, child / 1024)
"""


def rss_check(path: Path, db: Path, engine: str) -> None:
    """Peak RSS of a child process (and its workers) that only runs the ingest of ``path``."""
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    script = db.with_name("rss_child.py")
    script.write_text(_RSS_CHILD)
    out = subprocess.run(
        [sys.executable, str(script), str(path), str(db), engine], check=True, capture_output=True
    )
    written, seconds, tree_mb, own_mb, child_mb = out.stdout.split()
    print(f"{engine} ingest in a child: {int(written):,} rows in {float(seconds):.1f} s")
    print(
        f"peak RSS of the process tree (sampled every 50 ms): {float(tree_mb):,.0f} MB; "
        f"ingest process alone {float(own_mb):,.0f} MB, largest worker {float(child_mb):,.0f} MB"
    )


# Run in the child of --against: one ingest; prints the rows written and where clauditor is.
_AGAINST_CHILD = """
import sys
import clauditor
from clauditor.ingest import ingest_paths

if __name__ == "__main__":
    s = ingest_paths([sys.argv[1]], sys.argv[2], engine=sys.argv[3])
    print(s.calls_written, clauditor.__file__)
"""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def against(path: Path, spans: int, workdir: Path, base: str, engine: str, rounds: int) -> None:
    """CPU per span of this checkout's ingest and ``base``'s, in alternating child processes."""
    script = workdir / "against_child.py"
    script.write_text(_AGAINST_CHILD)
    totals = {"new": [0.0, 0.0], "base": [0.0, 0.0]}  # CPU-s, wall-s
    for round_ in range(rounds):
        for label, python in (("new", sys.executable), ("base", base)):
            db = workdir / f"against-{label}.duckdb"
            for leftover in (db, db.with_name(db.name + ".wal")):
                leftover.unlink(missing_ok=True)
            cpu = _children_cpu_s()
            started = time.perf_counter()
            out = subprocess.run(
                [python, str(script), str(path), str(db), engine],
                check=True,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - started
            used = _children_cpu_s() - cpu
            written, where = out.stdout.split()
            assert int(written) == spans, f"{label}: wrote {written} of {spans:,} spans"
            totals[label][0] += used
            totals[label][1] += wall
            print(
                f"round {round_ + 1} {label:<4} ({where}): {used:7.2f} CPU-s "
                f"{used / spans * 1e6:6.2f} us/span, {wall:6.2f} s wall"
            )
    new, old = totals["new"][0], totals["base"][0]
    print(
        f"CPU per span, all rounds: new {new / rounds / spans * 1e6:.2f} us, "
        f"base {old / rounds / spans * 1e6:.2f} us, new/base {new / old:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--engines", default="parallel,python", help="engines to time, in order")
    parser.add_argument("--no-ceilings", action="store_true", help="skip the DuckDB ceilings")
    parser.add_argument(
        "--no-nested",
        action="store_true",
        help="skip ceiling A (DuckDB unnesting the OTLP file: minutes, and no real ceiling)",
    )
    parser.add_argument("--rss", action="store_true", help="only the child-process RSS check")
    parser.add_argument("--against", help="another checkout's python: CPU per span side by side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --against")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    source, spans = make_input(args.workdir, args.spans)
    print(f"input: {source} ({source.stat().st_size / 1e6:.0f} MB, {spans:,} spans)")
    engines = args.engines.split(",")
    if args.rss:
        rss_check(source, args.workdir / "rss.duckdb", engines[0])
        return
    if args.against:
        against(source, spans, args.workdir, args.against, engines[0], args.rounds)
        return

    rows = []
    if not args.no_ceilings:
        flat = args.workdir / f"flat-{args.spans}.jsonl"
        if not flat.exists():
            flatten_copy(source, flat)
        nested = (0.0, 0.0) if args.no_nested else bench_duckdb_nested(source)  # 0: skipped
        rows += [
            ("DuckDB read_json, OTLP file unnested (ceiling A)", *nested),
            ("DuckDB read_json, pre-flattened copy (ceiling B)", *bench_duckdb_flat(flat)),
        ]
    for engine in engines:
        wall, cpu, written = bench_clauditor(source, args.workdir / "bench.duckdb", engine)
        assert written == spans, f"{engine}: wrote {written:,} of {spans:,} spans"
        rows.append((f"clauditor ingest, engine={engine} (all of it)", wall, cpu))

    for label, wall, cpu in rows:
        if not wall:
            continue
        print(
            f"{label:<52} {wall:7.2f} s  {spans / wall:>10,.0f} spans/s wall"
            f"  {cpu:7.2f} s CPU  {spans / cpu:>10,.0f} spans/CPU-s"
        )
    if not args.no_ceilings:
        ours = rows[2][1]
        for name, (_, ceiling, _) in zip("AB", rows[:2], strict=True):
            if ceiling:
                print(f"clauditor {engines[0]} / ceiling {name}: {ceiling / ours:.2f}x (wall)")
    print(f"peak RSS of this process: {_peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
