"""Per-call cost clauditor adds to anthropic SDK calls, side by side with the alternatives.

**As the user pays** (the first section, ``--as-paid-rounds``): each configuration runs in a
fresh app process, the configurations alternated in a shuffled order each round, against the
fake server of tests/fakeanthropic.py in another process. Each process makes ``--warm`` calls,
then ``--calls`` measured non-streaming calls and a flush, and reports the process CPU time per
measured call (``time.process_time``: every thread, so the batch processor's export is in it)
and its resident memory at the end. Configurations: ``plain`` (the SDK, no TracerProvider),
``sdk-null`` (a TracerProvider with a batch processor and a null exporter: the SDK's own spans
switch on, and this is what they cost), ``clauditor`` (``clauditor.instrument()``, default
sink), ``openllmetry`` (opentelemetry-instrumentation-anthropic with the real OTLP/HTTP exporter
to a sink server on 127.0.0.1 that answers every export and drops it), and ``clauditor@base``
(the default sink of the checkout at ``--baseline``, run by that checkout's own interpreter).
Differences are paired per round.

**The catch-up** (``--catch-up SPANS``): span files holding SPANS spans (one span per line, as
an app making one call at a time writes them, cut from a real call's line) from ``--apps``
processes, then the first ``clauditor costs``: its wall and CPU time and the peak resident
memory of its process tree, and a second run for comparison.

**In one process** (the earlier figures, kept; ``--skip-in-process`` leaves them out):
interleaved blocks, paired differences: each round runs one block of calls per configuration
in a shuffled order, and a configuration's cost in that round is its block median
minus the same round's baseline median. The reported figure is the median over rounds, so drift
(CPU frequency, GC, other load) hits both sides of each difference alike.

Configurations (whichever the installed packages allow):

* ``baseline``      - no instrumentation, SDK spans off;
* ``sdk-spans``     - the SDK's own spans only (anthropic >= 1.17);
* ``clauditor``     - clauditor making its own span (SDK spans off: the 0.x path);
* ``clauditor+sdk`` - clauditor enriching the SDK's span (reported against ``sdk-spans``);
* ``openllmetry``   - opentelemetry-instrumentation-anthropic, SDK spans off;
* ``clauditor@ref`` / ``clauditor@ref+sdk`` - with ``--compare-with DIR``, another copy of
  clauditor's instrumentation package (e.g. ``git archive <ref> instrumentation | tar -x -C DIR``)
  in the same two modes, so a change is measured against its predecessor in one run; the output
  then also gives each new figure minus the copy's, paired per round.

Transport: an in-process ``MockTransport`` (no sockets: the figure is pure instrumentation
cost) and, for sync calls, loopback HTTP to the fake server in tests/fakeanthropic.py.
Streams: the per-event cost is a slope paired within each round, ((cost on a 404-chunk stream)
- (cost on a 4-chunk stream)) / 400, so every fixed per-call cost cancels; its median over rounds
is reported. Every figure comes with the interquartile range of its per-round values: the noise.
Metrics go to the global meter provider (a no-op unless the app sets one), for every tool alike.

``--opcodes`` instead counts the Python bytecode instructions each configuration adds to one
sync non-streaming call (in-process transport, ``sys.settrace`` opcode events), split into
clauditor's own code, OpenTelemetry's and the rest: a deterministic figure, unmoved by other
load on the machine, to set beside the timings.

Run: ``python benchmarks/instrumentation_overhead.py [--as-paid-rounds 10] [--calls 400]
[--warm 50] [--baseline DIR] [--skip-in-process] [--rounds 30] [--block 200] [--no-loopback]
[--compare-with DIR] [--opcodes]`` (DIR holds ``instrumentation/``), or
``python benchmarks/instrumentation_overhead.py --catch-up 200000 [--apps 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import inspect
import json
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clauditor.instrumentation import AnthropicInstrumentor  # noqa: E402
from tests import fakeanthropic as fa  # noqa: E402

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]
SDK_SPANS = "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters
_httpx = __import__("httpx2") if importlib.util.find_spec("httpx2") else __import__("httpx")


class NullExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _sse(n_chunks: int) -> bytes:
    events = fa.stream_events(chunks=tuple("x" for _ in range(n_chunks)), ping=False)
    return "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events).encode()


_JSON = json.dumps(fa.message_body()).encode()
N_EVENTS_SHORT, N_EVENTS_LONG = 4, 404  # text chunks; each stream also has 5 framing events
_STREAMS = {n: _sse(n) for n in (N_EVENTS_SHORT, N_EVENTS_LONG)}


def _handler(request: Any) -> Any:
    body = json.loads(request.content or b"{}")
    headers = {"request-id": "req_bench"}
    if body.get("stream"):
        n = int(body.get("metadata", {}).get("user_id", "4"))
        headers["content-type"] = "text/event-stream"
        return _httpx.Response(200, content=_STREAMS[n], headers=headers)
    headers["content-type"] = "application/json"
    return _httpx.Response(200, content=_JSON, headers=headers)


def _clients(provider: TracerProvider, sdk_spans: bool, base_url: str | None = None) -> tuple:
    kw: dict[str, Any] = {"api_key": "sk-ant-bench", "max_retries": 0}
    if SDK_SPANS:
        kw["open_telemetry"] = {"tracer_provider": provider} if sdk_spans else False
    if base_url:
        return anthropic.Anthropic(base_url=base_url, **kw), None
    transport = _httpx.MockTransport(_handler)
    sync = anthropic.Anthropic(
        base_url="http://bench.local", http_client=_httpx.Client(transport=transport), **kw
    )
    aclient = anthropic.AsyncAnthropic(
        base_url="http://bench.local", http_client=_httpx.AsyncClient(transport=transport), **kw
    )
    return sync, aclient


class Config:
    """How to switch one configuration on and off around its blocks."""

    def __init__(self, name: str, on: Callable[[], None], off: Callable[[], None], sdk: bool):
        self.name, self.on, self.off, self.sdk_spans = name, on, off, sdk


def _load_copy(directory: str) -> Any:
    """Import the instrumentation package under ``directory`` as a module of its own."""
    path = Path(directory).resolve() / "instrumentation"
    spec = importlib.util.spec_from_file_location(
        "clauditor_compared", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no instrumentation package under {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _configs(provider: TracerProvider, compare_with: str | None = None) -> list[Config]:
    nothing = lambda: None  # noqa: E731
    clauditor_on = lambda: AnthropicInstrumentor().instrument(  # noqa: E731
        tracer_provider=provider, skip_dep_check=True
    )
    clauditor_off = AnthropicInstrumentor().uninstrument
    configs = [Config("baseline", nothing, nothing, False)]
    configs.append(Config("clauditor", clauditor_on, clauditor_off, False))
    if SDK_SPANS:
        configs.append(Config("sdk-spans", nothing, nothing, True))
        configs.append(Config("clauditor+sdk", clauditor_on, clauditor_off, True))
    if compare_with:
        other = _load_copy(compare_with).AnthropicInstrumentor()
        other_on = lambda: other.instrument(tracer_provider=provider, skip_dep_check=True)  # noqa: E731
        configs.append(Config("clauditor@ref", other_on, other.uninstrument, False))
        if SDK_SPANS:
            configs.append(Config("clauditor@ref+sdk", other_on, other.uninstrument, True))
    try:
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor as Ollm

        ollm = Ollm()
        configs.append(
            Config(
                "openllmetry",
                lambda: ollm.instrument(tracer_provider=provider, skip_dep_check=True),
                ollm.uninstrument,
                False,
            )
        )
    except ImportError:
        pass
    return configs


def _time_block(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0  # microseconds


def _workloads(sync: Any, aclient: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Callable]:
    def create() -> Any:
        return sync.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    def stream(n: int) -> Callable[[], Any]:
        def run() -> None:
            for _ in sync.messages.create(
                model=MODEL, max_tokens=8, messages=MESSAGES, stream=True,
                metadata={"user_id": str(n)},
            ):  # fmt: skip
                pass

        return run

    work = {"sync": create, "stream4": stream(4), "stream404": stream(404)}
    if aclient is not None:

        def acreate() -> Any:
            return loop.run_until_complete(
                aclient.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
            )

        work["async"] = acreate
    return work


# Figures reported against another configuration than ``baseline``.
_REFERENCE = {
    "clauditor+sdk": "sdk-spans",
    "clauditor@ref+sdk": "sdk-spans",
}
# Extra paired comparisons: the figure of the first minus that of the second.
_VERSUS = (("clauditor", "clauditor@ref"), ("clauditor+sdk", "clauditor@ref+sdk"))


def run(
    rounds: int, block: int, loopback: bool, compare_with: str | None = None
) -> dict[str, dict[str, Figure]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    loop = asyncio.new_event_loop()
    configs = _configs(provider, compare_with)
    server = fa.FakeAnthropic() if loopback else None
    per_config = {}
    for cfg in configs:
        sync, aclient = _clients(provider, cfg.sdk_spans, server.base_url if server else None)
        work = _workloads(sync, aclient, loop) if not server else {"loopback-sync": None}
        if server:
            work = {"loopback-sync": lambda s=sync: s.messages.create(
                model=MODEL, max_tokens=8, messages=MESSAGES)}  # fmt: skip
        per_config[cfg.name] = work
    medians: dict[str, dict[str, list[float]]] = {c.name: {} for c in configs}
    rng = random.Random(7)
    for _ in range(rounds):
        order = configs[:]
        rng.shuffle(order)
        for cfg in order:
            cfg.on()
            try:
                for wname, fn in per_config[cfg.name].items():
                    n = block if "404" not in wname else max(block // 10, 5)
                    medians[cfg.name].setdefault(wname, []).append(_time_block(fn, n))
            finally:
                cfg.off()
    if server:
        server.close()
    out: dict[str, dict[str, Figure]] = {}
    pairs = [(c.name, _REFERENCE.get(c.name, "baseline")) for c in configs]
    pairs += [(a, b) for a, b in _VERSUS if a in medians and b in medians]
    for name, ref in pairs:
        if name == ref:
            continue
        mine, theirs = medians[name], medians[ref]
        result: dict[str, Figure] = {}
        for wname, values in mine.items():
            result[wname] = Figure.of([v - b for v, b in zip(values, theirs[wname], strict=True)])
        if "stream404" in mine:
            # The per-event cost is a slope, paired within each round: (extra time on a 404-event
            # stream - extra time on a 4-event one) / 400. Fixed per-call costs cancel out.
            slopes = [
                ((m404 - b404) - (m4 - b4)) / (N_EVENTS_LONG - N_EVENTS_SHORT)
                for m404, b404, m4, b4 in zip(
                    mine["stream404"], theirs["stream404"], mine["stream4"], theirs["stream4"],
                    strict=True,
                )
            ]  # fmt: skip
            result["per-event"] = Figure.of(slopes)
        out[f"{name} vs {ref}"] = result
    return out


def _opcodes_per_call(fn: Callable[[], Any], calls: int = 5) -> collections.Counter[str]:
    # Opcode events per call, by whose code ran them (a file path tells: clauditor's package,
    # or a copy of it loaded by --compare-with, OpenTelemetry's, or anything else).
    counts: collections.Counter[str] = collections.Counter()

    def owner(path: str) -> str:
        if "instrumentation" in path and "opentelemetry" not in path:
            return "clauditor"
        return "opentelemetry" if "opentelemetry" in path else "other"

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts[owner(frame.f_code.co_filename)] += 1
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return local

    for _ in range(3):
        fn()  # warm caches (code locations, request attributes, the SDK's own)
    sys.settrace(start)
    try:
        for _ in range(calls):
            fn()
    finally:
        sys.settrace(None)
    return collections.Counter({k: v // calls for k, v in counts.items()})


def count_opcodes(compare_with: str | None = None) -> None:
    """Print the Python opcodes each configuration adds to one sync call, against its reference."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    loop = asyncio.new_event_loop()
    counted: dict[str, collections.Counter[str]] = {}
    for cfg in _configs(provider, compare_with):
        sync, aclient = _clients(provider, cfg.sdk_spans)
        work = _workloads(sync, aclient, loop)["sync"]
        cfg.on()
        try:
            counted[cfg.name] = _opcodes_per_call(work)
        finally:
            cfg.off()
    print("\n## Python opcodes added per sync call (in-process transport; deterministic)")
    for name, counts in counted.items():
        ref = _REFERENCE.get(name, "baseline")
        if name == ref:
            continue
        added = {k: counts[k] - counted[ref][k] for k in ("clauditor", "opentelemetry", "other")}
        parts = ", ".join(f"{k} {v:+d}" for k, v in added.items())
        print(f"{name} vs {ref}: {sum(added.values()):+d} ({parts})")


class Figure:
    """The median of per-round paired differences (microseconds) and its interquartile range."""

    def __init__(self, median: float, q1: float, q3: float, rounds: int) -> None:
        self.median, self.q1, self.q3, self.rounds = median, q1, q3, rounds

    @classmethod
    def of(cls, values: list[float]) -> Figure:
        if len(values) < 4:
            m = statistics.median(values)
            return cls(m, min(values), max(values), len(values))
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(med, q1, q3, len(values))

    def __str__(self) -> str:
        return f"{self.median:.2f} (IQR {self.q1:.2f}..{self.q3:.2f})"


# --- as the user pays: fresh app processes, process CPU time, RSS ------------------------------

# One app process of one configuration: ``warm`` calls, then ``calls`` measured ones and a
# flush (so the export of every measured span is inside the measurement), all against the
# fake server in another process. Prints one JSON line. Standard library, the SDK and
# OpenTelemetry only, run from an empty folder: the clauditor it imports is the one installed
# in the interpreter's environment (this checkout's, or the baseline's).
APP = r"""
import json, sys, time
config, base_url, db, sink_url, warm, calls = sys.argv[1:7]
warm, calls = int(warm), int(calls)
import anthropic
flush = lambda: None
if config == "sdk-null":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    class Null(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Null()))
    trace.set_tracer_provider(provider)
    flush = provider.force_flush
elif config.startswith("clauditor"):
    import clauditor
    handle = clauditor.instrument(service="bench", db=db)
    flush = handle.flush
elif config == "openllmetry":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sink_url)))
    trace.set_tracer_provider(provider)
    AnthropicInstrumentor().instrument()
    flush = provider.force_flush
client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-bench", max_retries=0)
def call():
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
for _ in range(warm):
    call()
flush()
cpu0 = time.process_time()
for _ in range(calls):
    call()
flush()
cpu = time.process_time() - cpu0
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
heavy = sorted(m for m in ("duckdb", "polars", "pyarrow") if m in sys.modules)
print(json.dumps({
    "cpu_us": cpu / calls * 1e6,
    "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    "heavy": heavy,
}))
"""

# Answers every OTLP/HTTP export with success and drops it: what a Collector or `clauditor
# serve` costs is theirs, not the app's.
SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

FAKE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.fakeanthropic import FakeAnthropic
server = FakeAnthropic()
print(server.base_url, flush=True)
sys.stdin.read()
"""

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path("/work/wt-base")  # the starting commit's checkout and its environment


def _server(code: str, *args: str) -> tuple[Any, str]:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _as_paid_configs(baseline: Path | None) -> dict[str, str]:
    """Configuration name -> interpreter that runs it."""
    configs = {n: sys.executable for n in ("plain", "sdk-null", "clauditor")}
    if importlib.util.find_spec("opentelemetry.instrumentation.anthropic"):
        configs["openllmetry"] = sys.executable
    if baseline is not None and (baseline / ".venv/bin/python").exists():
        configs["clauditor@base"] = str(baseline / ".venv/bin/python")
    return configs


def export_per_span(base_url: str, sink_url: str, n: int = 3000) -> dict[str, float]:
    """CPU microseconds for each exporter to export one real call span (one span a batch, as
    an app making one call a second exports): the part of the all-in figure that is the sink."""
    import tempfile

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from clauditor.instrumentation._span_file import SpanFileExporter

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    AnthropicInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        options: dict[str, Any] = {"tracer_provider": provider}
        extra: dict[str, Any] = {"open_telemetry": options} if SDK_SPANS else {}
        client = anthropic.Anthropic(
            base_url=base_url, api_key="sk-ant-bench", max_retries=0, **extra
        )
        client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        AnthropicInstrumentor().uninstrument()
    span = memory.get_finished_spans()[-1]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        exporters: dict[str, Any] = {
            "clauditor span file": SpanFileExporter(tmp, rotate_bytes=1 << 40),
            "OTLP/HTTP (OpenLLMetry's)": OTLPSpanExporter(endpoint=sink_url),
        }
        for name, exporter in exporters.items():
            for _ in range(100):
                exporter.export([span])
            cpu0 = time.process_time()
            for _ in range(n):
                exporter.export([span])
            out[name] = (time.process_time() - cpu0) / n * 1e6
            exporter.shutdown()
    return out


def as_paid(rounds: int, calls: int, warm: int, baseline: Path | None) -> None:
    """Fresh app processes per configuration, alternated in a shuffled order each round."""
    import subprocess
    import tempfile

    configs = _as_paid_configs(baseline)
    fake, base_url = _server(FAKE, str(ROOT))
    sink, port = _server(SINK)
    sink_url = f"http://127.0.0.1:{port}/v1/traces"
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    rng = random.Random(18)
    wall0 = time.perf_counter()
    try:
        for _ in range(rounds):
            order = list(configs)
            rng.shuffle(order)
            for name in order:
                with tempfile.TemporaryDirectory() as tmp:
                    done = subprocess.run(
                        [configs[name], "-c", APP, name, base_url, f"{tmp}/app.duckdb",
                         sink_url, str(warm), str(calls)],
                        capture_output=True, text=True, cwd=tmp, timeout=600,
                    )  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{done.stderr}")
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        exports = export_per_span(base_url, sink_url)
    finally:
        fake.kill()
        sink.kill()
    print(
        f"\n## As the user pays ({rounds} rounds, fresh processes alternated, {warm} warm-up + "
        f"{calls} measured non-streaming calls each, fake server in another process; "
        f"{time.perf_counter() - wall0:.0f} s)"
    )
    print("process CPU time per call, all threads, export included (median over rounds, IQR):")
    for name, runs in results.items():
        cpu = Figure.of([r["cpu_us"] for r in runs])
        rss = statistics.median(r["rss_mb"] for r in runs)
        heavy = ",".join(sorted({m for r in runs for m in r["heavy"]})) or "none"
        print(f"    {name:15s} {cpu} us/call   RSS {rss:6.1f} MB   heavy modules: {heavy}")

    def paired(a: str, b: str, key: str) -> Figure:
        return Figure.of([x[key] - y[key] for x, y in zip(results[a], results[b], strict=True)])

    print("paired per round (same round's processes):")
    for a, b in (
        ("sdk-null", "plain"),
        ("clauditor", "sdk-null"),
        ("clauditor", "plain"),
        ("openllmetry", "plain"),
        ("clauditor@base", "plain"),
    ):
        if a in results and b in results:
            print(
                f"    {a} - {b}: CPU {paired(a, b, 'cpu_us')} us/call, "
                f"RSS {paired(a, b, 'rss_mb')} MB"
            )
    for other in ("openllmetry", "clauditor@base"):
        if other in results:
            ratios = [
                (o["cpu_us"] - p["cpu_us"]) / max(c["cpu_us"] - p["cpu_us"], 1e-9)
                for o, c, p in zip(
                    results[other], results["clauditor"], results["plain"], strict=True
                )
            ]
            print(f"    ({other} - plain) / (clauditor - plain), all-in: {Figure.of(ratios)}x")
    print("one real call span exported alone, this process's CPU per span:")
    for name, us in exports.items():
        print(f"    {name:26s} {us:7.1f} us")


# --- the catch-up: the first command after a day of span files ----------------------------------


def _tree_rss_mb(root: int) -> float:
    """Resident memory of process ``root`` and all its descendants, in MB (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(ln.split(":", 1) for ln in status.read().splitlines() if ":" in ln)
        except OSError:
            continue
        parents[int(entry)] = int(fields["PPid"])
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0])
    tree, grew = {root}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(rss.get(p, 0) for p in tree) / 1024


def _sample_peak(proc: Any, peak: list[float]) -> None:
    """Keep the largest resident memory of ``proc``'s process tree in ``peak[0]`` until it ends."""
    while proc.poll() is None:
        peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
        time.sleep(0.05)


def catch_up_bench(spans: int, apps: int) -> None:
    """``clauditor costs`` after ``spans`` spans from ``apps`` processes' span files."""
    import subprocess
    import tempfile
    import threading

    from clauditor.span_files import MARKER_LINE, new_stem, span_folder

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "clauditor.duckdb"
        fake, base_url = _server(FAKE, str(ROOT))
        try:  # one real call through the default sink: the line every span is made from
            subprocess.run(
                [sys.executable, "-c", APP, "clauditor", base_url, str(db), "-", "0", "1"],
                check=True, capture_output=True, cwd=tmp, timeout=120,
            )  # fmt: skip
        finally:
            fake.kill()
        folder = span_folder(db)
        (template_file,) = list(folder.glob("spans-*"))
        template = json.loads(template_file.read_bytes().splitlines()[1])
        template_file.unlink()
        span = template["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        now = time.time_ns()
        day = 86_400 * 10**9
        per_app = spans // apps
        written = 0
        for app_no in range(apps):
            out, size = None, 0
            for i in range(per_app):
                if out is None:
                    out = open(folder / (new_stem(10_000 + app_no) + ".jsonl"), "wb")  # noqa: SIM115
                    out.write(MARKER_LINE)
                    size = len(MARKER_LINE)
                n = app_no * per_app + i
                start = now - day + n * day // spans
                span["spanId"] = f"{n + 1:016x}"
                span["traceId"] = f"{app_no + 1:016x}{n + 1:016x}"
                span["startTimeUnixNano"] = str(start)
                span["endTimeUnixNano"] = str(start + 400_000_000)
                for kv in span["attributes"]:
                    if kv["key"] == "gen_ai.response.id":
                        kv["value"] = {"stringValue": f"msg_bench{n:010d}"}
                line = json.dumps(template, separators=(",", ":")).encode() + b"\n"
                out.write(line)
                size += len(line)
                written += 1
                if size >= 16 * 1024 * 1024:  # rotated as the sink rotates
                    out.close()
                    out = None
            if out is not None:
                out.close()
        total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        files = len(list(folder.glob("spans-*")))
        print(
            f"\n## The catch-up: first `clauditor costs` after {written:,} spans in {files} span "
            f"files ({total / 2**20:.0f} MB) from {apps} app processes"
        )
        cli = str(Path(sys.executable).with_name("clauditor"))
        for label in ("first (catches up)", "second (nothing new)"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall0 = time.perf_counter()
            proc = subprocess.Popen(
                [cli, "costs", "--db", str(db), "--period", "7d"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp,
            )  # fmt: skip
            peak = [0.0]
            sampler = threading.Thread(target=_sample_peak, args=(proc, peak))
            sampler.start()
            stdout, stderr = proc.communicate(timeout=1800)
            sampler.join()
            wall = time.perf_counter() - wall0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise SystemExit(stderr.decode())
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(
                f"    {label:22s} {wall:6.1f} s wall, {cpu:6.1f} s CPU (command and its "
                f"workers), peak RSS of the process tree {peak[0]:.0f} MB"
            )
        con = __import__("duckdb").connect(str(db), read_only=True)
        stored = con.execute("SELECT count(*), count(DISTINCT span_id) FROM calls").fetchone()
        con.close()
        left = len(list(folder.glob("spans-*")))
        print(f"    stored {stored[0]:,} calls ({stored[1]:,} distinct); span files left: {left}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--no-loopback", action="store_true", help="in-process transport only")
    parser.add_argument(
        "--compare-with", metavar="DIR", help="also measure the instrumentation package in DIR"
    )
    parser.add_argument(
        "--opcodes", action="store_true", help="count opcodes per call instead of timing"
    )
    parser.add_argument("--as-paid-rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=400, help="measured calls per process")
    parser.add_argument("--warm", type=int, default=50, help="warm-up calls per process")
    parser.add_argument(
        "--baseline", type=Path, default=BASELINE, help="a checkout with its own .venv"
    )
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--catch-up", type=int, metavar="SPANS", help="only the catch-up")
    parser.add_argument("--apps", type=int, default=4)
    args = parser.parse_args()
    print(f"anthropic {anthropic.__version__}, python {sys.version.split()[0]}")
    if args.opcodes:
        count_opcodes(args.compare_with)
        return
    if args.catch_up:
        catch_up_bench(args.catch_up, args.apps)
        return
    if args.as_paid_rounds:
        as_paid(args.as_paid_rounds, args.calls, args.warm, args.baseline)
    if args.skip_in_process:
        return
    for loopback in (False,) if args.no_loopback else (False, True):
        label = "loopback HTTP" if loopback else "in-process transport"
        rounds = args.rounds if not loopback else max(args.rounds // 3, 5)
        block = args.block if not loopback else max(args.block // 4, 20)
        print(
            f"\n## {label} ({rounds} rounds x {block} calls): microseconds added per call, "
            "median of per-round paired differences (IQR over rounds)"
        )
        wall0, cpu0 = time.perf_counter(), time.process_time()
        results = run(rounds, block, loopback, args.compare_with)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        print(f"(this section: {wall:.1f} s wall, {cpu:.1f} s CPU of this process)")
        for name, result in results.items():
            print(f"{name}")
            for wname, fig in result.items():
                print(f"    {wname:14s} {fig}")
        ours = results.get("clauditor vs baseline", {})
        theirs = results.get("openllmetry vs baseline", {})
        for wname in ours:
            if wname in theirs and ours[wname].median > 0:
                ratio = theirs[wname].median / ours[wname].median
                print(f"openllmetry / clauditor, {wname}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
