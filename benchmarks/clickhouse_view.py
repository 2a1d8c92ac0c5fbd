"""Ingest CPU per span through the ClickHouse view (issue 21: target <= 25 CPU-µs per span).

The committed 52,109-span sample is written into two ``otel_traces`` tables of one embedded
chDB as the Collector's clickhouseexporter writes them (every attribute value a string): one
with clauditor's materialized view on it, one without. The view's cost per span is the
difference of the two inserts' process CPU time (chDB runs in this process, so its threads are
counted), divided by the spans; the inserts alternate, ``--rounds`` times each, in batches of
10,000 spans. Then the view's SQL once over every stored span (``INSERT ... SELECT``, as
``init``'s backfill runs it), and, for scale, the same spans through clauditor's file ingest
into DuckDB (the Python path: parse, normalize, price, write), in the same run.

    python benchmarks/clickhouse_view.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clauditor.clickhouse import connect, init  # noqa: E402
from clauditor.clickhouse.ddl import Layout, exporter_tables, view_query  # noqa: E402
from clauditor.ingest import SpanRecord, ingest_paths, iter_otlp_json_spans  # noqa: E402
from clauditor.rate_cards import load_price_table  # noqa: E402
from clauditor.semconv import FEATURE  # noqa: E402
from tests.clickhouse.exporter_rows import COLUMNS, row  # noqa: E402

SAMPLE = ROOT / "sample_logs" / "sample-30d.jsonl.gz"
BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ch-bench-"))
    try:
        with gzip.open(SAMPLE, "rt") as f:
            spans = [
                s
                for line in f
                for s in iter_otlp_json_spans(json.loads(line))
                if isinstance(s, SpanRecord)
            ]
        rows = [row(s) for s in spans]
        client = connect(f"chdb://{work / 'chdb'}")
        init(client, otel_database="with_view")
        for statement in exporter_tables(Layout(otel_database="without_view")):
            client.command("CREATE DATABASE IF NOT EXISTS without_view")
            client.command(statement)
        cpu = {"with_view": 0.0, "without_view": 0.0}
        for _ in range(args.rounds):
            for target in ("with_view", "without_view"):
                start = time.process_time()
                for i in range(0, len(rows), BATCH):
                    client.insert(f"{target}.otel_traces", rows[i : i + BATCH], COLUMNS)
                cpu[target] += time.process_time() - start
        calls = client.rows("SELECT count() FROM clauditor.calls FINAL")[0][0]
        # The same SQL run once over every stored span (what `init`'s backfill runs).
        query = view_query(Layout(otel_database="with_view"), load_price_table(), (FEATURE,), True)
        stored = client.rows("SELECT count() FROM with_view.otel_traces")[0][0]
        start = time.process_time()
        client.command(f"INSERT INTO clauditor.calls {query}")
        backfill_us = (time.process_time() - start) / stored * 1e6
        client.close()
        n = len(rows) * args.rounds
        view_us = (cpu["with_view"] - cpu["without_view"]) / n * 1e6
        start = time.process_time()
        ingest_paths([SAMPLE], work / "python.duckdb")
        python_us = (time.process_time() - start) / len(spans) * 1e6
        print(f"spans: {len(spans):,} x {args.rounds} rounds; calls rows: {calls:,}")
        print(f"insert with the view:    {cpu['with_view'] / n * 1e6:8.1f} CPU-µs/span")
        print(f"insert without the view: {cpu['without_view'] / n * 1e6:8.1f} CPU-µs/span")
        print(f"the view's own cost:     {view_us:8.1f} CPU-µs/span (target <= 25)")
        print(f"the same SQL as backfill: {backfill_us:7.1f} CPU-µs/span (INSERT ... SELECT)")
        print(f"file ingest (Python):    {python_us:8.1f} CPU-µs/span")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
