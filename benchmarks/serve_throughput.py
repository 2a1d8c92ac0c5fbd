"""`clauditor serve` throughput: 4 sender processes using the real OTLP/HTTP exporter.

Run:  python benchmarks/serve_throughput.py [--senders 4] [--spans 50000] [--batch 512]
          [--compression none|gzip] [--mode exporter|preencoded] [--workdir benchmarks/out]

The receiver runs as its own process (``python -m clauditor.ingest.serve``) on free ports.
Each sender process first records its ``--spans`` spans with the real OTel SDK (a
TracerProvider with attributes as clauditor's instrumentation writes them; not timed), waits
for the others, then exports them in batches of ``--batch`` through the real
``OTLPSpanExporter`` from ``opentelemetry.exporter.otlp.proto.http`` (protobuf encoding, HTTP,
its own retries on 503/Retry-After), timed. Throughput is all spans over the wall time from the
common start to the last sender's last acknowledgement: every acknowledged span is committed
in DuckDB at that point (the receiver answers only after the commit).

It also reports the receiver's own CPU time, so that its capacity can be told apart from the
senders' (the exporter's encoding costs the senders more CPU per span than the receiver spends
storing it; on a small machine the senders are the bottleneck).

It then stops the receiver and checks that the number of rows in ``calls`` equals the number
of spans sent (zero lost, zero duplicated), and prints one JSON line of figures.

``--against PYTHON`` runs the same benchmark with the receiver of another checkout (the
interpreter of its virtualenv) and this one's, alternating ``--rounds`` times, and prints the
receiver's CPU per span for each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb


def _record_spans(sender: int, count: int) -> list[Any]:
    """``count`` finished SDK spans of Claude calls, as the instrumentation records them."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"bench-{sender}", "deployment.environment.name": "bench"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("com.anthropic.sdk.python", "2.12.0")
    features = ("search", "summarize", "chat", "classify")
    for i in range(count):
        with tracer.start_as_current_span("anthropic.messages.create") as span:
            span.set_attributes(
                {
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "claude-sonnet-4-5",
                    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                    "gen_ai.response.id": f"msg_{sender:02d}{i:010d}",
                    "gen_ai.request.max_tokens": 1024,
                    "gen_ai.request.stream": i % 3 == 0,
                    "gen_ai.usage.input_tokens": 1500 + i % 700,
                    "gen_ai.usage.output_tokens": 200 + i % 300,
                    "gen_ai.usage.cache_read.input_tokens": 1000,
                    "gen_ai.usage.cache_write.input_tokens": 0,
                    "clauditor.usage.input_tokens": 500 + i % 700,
                    "anthropic.response.service_tier": "standard",
                    "anthropic.message.stop_reason": "end_turn",
                    "http.response.status_code": 200,
                    "clauditor.feature": features[i % len(features)],
                    "clauditor.user_id": f"u-{i % 97}",
                    "clauditor.code_location": "app.handlers:answer",
                    "clauditor.operation": "chat",
                }
            )
    provider.shutdown()
    return list(memory.get_finished_spans())


def _preencoded_sender(spans: list[Any], batch: int, endpoint: str, start: Any) -> int:
    """Encode every request first with the exporter's own encoder, then only POST them (the
    exporter's transport, requests, with its retry rule): the receiver's capacity, without
    the senders' encoding cost in the way. Returns the spans that failed."""
    import requests
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    bodies = [
        (len(spans[o : o + batch]), encode_spans(spans[o : o + batch]).SerializePartialToString())
        for o in range(0, len(spans), batch)
    ]
    session = requests.Session()
    headers = {"Content-Type": "application/x-protobuf"}
    start.wait()
    cpu = time.process_time()
    failed = 0
    for size, body in bodies:
        for _ in range(100):
            response = session.post(endpoint, data=body, headers=headers, timeout=60)
            if response.status_code == 200:
                break
            time.sleep(float(response.headers.get("Retry-After", "0.1")))
        else:
            failed += size
    return failed, time.process_time() - cpu


def _sender(
    sender: int,
    count: int,
    batch: int,
    endpoint: str,
    compression: str,
    start: Any,
    out: Any,
    mode: str = "exporter",
) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = _record_spans(sender, count)
    if mode == "preencoded":
        failed, cpu = _preencoded_sender(spans, batch, endpoint, start)
        out.put((sender, time.perf_counter(), len(spans), failed, cpu))
        return
    exporter = OTLPSpanExporter(
        endpoint=endpoint,
        compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
        timeout=60,
    )
    start.wait()
    cpu = time.process_time()
    failed = 0
    for offset in range(0, len(spans), batch):
        chunk = spans[offset : offset + batch]
        if exporter.export(chunk) is not SpanExportResult.SUCCESS:
            failed += len(chunk)
    out.put((sender, time.perf_counter(), len(spans), failed, time.process_time() - cpu))
    exporter.shutdown()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    senders: int,
    spans: int,
    batch: int,
    compression: str,
    workdir: Path,
    mode: str = "exporter",
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run the benchmark once (the receiver under ``python``); the figures as a dict."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "serve-bench.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    server = subprocess.Popen(
        [python, "-m", "clauditor.ingest.serve", "--db", str(db)]
        + ["--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        endpoint = f"http://127.0.0.1:{ports['http_port']}/v1/traces"
        ctx = mp.get_context("spawn")
        start = ctx.Barrier(senders + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=_sender, args=(i, spans, batch, endpoint, compression, start, out, mode)
            )
            for i in range(senders)
        ]
        for proc in procs:
            proc.start()
        start.wait()  # every sender has recorded its spans
        began = time.perf_counter()
        cpu_before = _cpu_seconds(server.pid)
        results = [out.get(timeout=600) for _ in procs]
        cpu_used = _cpu_seconds(server.pid) - cpu_before
        for proc in procs:
            proc.join()
        ended = max(r[1] for r in results)
    finally:
        server.terminate()  # SIGTERM: drains and exits
        server.wait(60)
    sent = sum(r[2] for r in results)
    failed = sum(r[3] for r in results)
    con = duckdb.connect(str(db), read_only=True)
    stored, distinct = con.execute(
        "SELECT count(*), count(DISTINCT span_id) FROM calls"
    ).fetchall()[0]
    con.close()
    seconds = ended - began
    sender_cpu = sum(r[4] for r in results)
    cpus = os.cpu_count() or 1
    return {
        "benchmark": "serve_throughput",
        "mode": mode,
        "senders": senders,
        "spans_per_sender": spans,
        "batch": batch,
        "compression": compression,
        "spans_sent": sent,
        "export_failures": failed,
        "rows_in_db": stored,
        "distinct_span_ids": distinct,
        "lost_or_duplicated": sent - failed - stored,
        "seconds": round(seconds, 3),
        "spans_per_s": round(sent / seconds),
        # What the receiver would sustain with one CPU to itself: spans per CPU-second it used.
        "receiver_cpu_s": round(cpu_used, 2),
        "receiver_spans_per_cpu_s": round(sent / cpu_used) if cpu_used else None,
        # The senders' own CPU for the export phase (encoding + HTTP), all four together.
        "sender_cpu_s": round(sender_cpu, 2),
        "sender_cpu_us_per_span": round(sender_cpu / sent * 1e6, 1),
        # The most this machine could carry if senders and receiver used every core fully:
        # cores / (sender + receiver CPU per span).
        "machine_ceiling_spans_per_s": round(cpus * sent / (sender_cpu + cpu_used))
        if sender_cpu + cpu_used
        else None,
        "cpus": cpus,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--spans", type=int, default=50_000, help="spans per sender")
    parser.add_argument("--batch", type=int, default=512, help="spans per export request")
    parser.add_argument("--compression", choices=["none", "gzip"], default="none")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument(
        "--mode",
        choices=["exporter", "preencoded"],
        default="exporter",
        help="exporter: OTLPSpanExporter.export per batch (the target figure); preencoded: "
        "bodies encoded by the exporter's encoder beforehand, then only POSTed",
    )
    parser.add_argument(
        "--against",
        help="another checkout's python: its receiver and this one's, alternating --rounds "
        "times, receiver CPU per span side by side",
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.against:
        return _against(args)
    figures = run(args.senders, args.spans, args.batch, args.compression, args.workdir, args.mode)
    print(json.dumps(figures))
    ok = figures["export_failures"] == 0 and figures["lost_or_duplicated"] == 0
    ok = ok and figures["distinct_span_ids"] == figures["rows_in_db"] == figures["spans_sent"]
    return 0 if ok else 1


def _against(args: argparse.Namespace) -> int:
    cpu = {"new": 0.0, "base": 0.0}
    sent = {"new": 0, "base": 0}
    ok = True
    for round_ in range(args.rounds):
        for label, python in (("new", sys.executable), ("base", args.against)):
            figures = run(
                args.senders,
                args.spans,
                args.batch,
                args.compression,
                args.workdir,
                args.mode,
                python,
            )
            ok = ok and figures["lost_or_duplicated"] == 0 and figures["export_failures"] == 0
            cpu[label] += figures["receiver_cpu_s"]
            sent[label] += figures["spans_sent"]
            per_span = figures["receiver_cpu_s"] / figures["spans_sent"] * 1e6
            print(
                f"round {round_ + 1} {label:<4}: receiver {figures['receiver_cpu_s']:.2f} CPU-s, "
                f"{per_span:.2f} us/span, {figures['spans_per_s']:,} spans/s"
            )
    new, base = cpu["new"] / sent["new"], cpu["base"] / sent["base"]
    print(
        f"receiver CPU per span, all rounds: new {new * 1e6:.2f} us, base {base * 1e6:.2f} us, "
        f"new/base {new / base:.3f}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
