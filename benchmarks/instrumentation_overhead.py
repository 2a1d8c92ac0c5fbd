"""Per-call time clauditor adds to anthropic SDK calls, side by side with the alternatives.

One process, interleaved blocks, paired differences: each round runs one block of calls per
configuration in a shuffled order, and a configuration's cost in that round is its block median
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

Run: ``python benchmarks/instrumentation_overhead.py [--rounds 30] [--block 200]
[--no-loopback] [--compare-with DIR] [--opcodes]`` (DIR holds ``instrumentation/``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import inspect
import json
import random
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
    args = parser.parse_args()
    print(f"anthropic {anthropic.__version__}, python {sys.version.split()[0]}")
    if args.opcodes:
        count_opcodes(args.compare_with)
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
