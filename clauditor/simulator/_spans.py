"""Write realistic Claude API telemetry with planted incidents.

:func:`simulate` writes what an OpenTelemetry Collector's file exporter writes when clauditor's
instrumentation runs in a few applications: one ``ExportTraceServiceRequest`` per line in
OTLP/JSON (hex ids, 64-bit integers as strings, camelCase keys), each line holding the spans of
one resource (service and environment) for one ten-minute window, at most
:data:`SPANS_PER_LINE` of them. The traffic itself (services, features, models, load curves,
caching, errors) is described in :mod:`._traffic`.

The default period is the committed sample's: the 30 days ending :data:`SAMPLE_END`,
2026-10-31 00:00 to 2026-11-30 00:00 UTC, so that "as of the end of the last day" is still in
November with a day of the month to go (a sample ending 2026-12-01 would leave a month-to-date
budget view on an empty December). The models are the late-2026 lineup (see
:mod:`._traffic`); in a period before a model's release its workloads call the model
it replaced.

Incidents are planted at fixed offsets from the start of the simulated period, so with the
default ``end`` and 30 days they fall on known November 2026 dates:

* 529 storm, Monday 2026-11-09 14:00-14:45 UTC: about a third of all calls fail with
  ``overloaded_error`` (HTTP 529) after two retries;
* runaway loop, Monday 2026-11-16 01:10-02:40 UTC: ``agent-tools`` sends ~500 calls an hour of
  ~35k tokens to ``claude-opus-5-5``;
* cache regression, from Thursday 2026-11-19 10:00 UTC: ``support-chat`` in prod writes its
  prompt cache on nearly every call and almost never reads it;
* the month-to-date spend crosses 80 % of the sample's monthly budget
  (``sample_logs/clauditor.toml``) on 2026-11-23. That one is a property of the committed
  sample plus its config, so it is only reported for the sample's exact arguments.

The committed sample is ``days=30, seed=30`` (:data:`SAMPLE_SEED`). Other seeds plant the same
incidents, but their background failures (independent per call) often happen to cluster into
a short episode the error detectors report; seed 30 has none, so the demo shows only what was
planted. The default seed stays 7.

The same arguments always give the same bytes: one seeded ``random.Random`` drives everything,
and gzip output (``out`` ending in ``.gz``) carries no file name and a zero timestamp.
"""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from clauditor import semconv as sc
from clauditor.simulator._traffic import (
    RESOURCES,
    RESPONSE_MODEL,
    RUNAWAY,
    Call,
    IncidentWindows,
    TrafficGenerator,
    model_on,
)

__all__ = ["SAMPLE_END", "SPANS_PER_LINE", "Incident", "SimulationSummary", "simulate"]

SAMPLE_END = datetime(2026, 11, 30, tzinfo=UTC)
SAMPLE_DAYS = 30
SAMPLE_SEED = 30  # chosen so that background noise holds no episode the detectors report
SPANS_PER_LINE = 200
LINE_WINDOW_NS = 10 * 60 * 1_000_000_000  # divides an hour: a window never straddles two
SDK_VERSION = "2.12.0"
GZIP_LEVEL = 6  # fixed: the level is part of what makes the bytes reproducible

# Offsets from the start of the simulated period (30 days ending SAMPLE_END start on Saturday
# 2026-10-31: the storm hits a weekday afternoon, the deploy lands on a Thursday morning).
STORM_AT, STORM_FOR = timedelta(days=9, hours=14), timedelta(minutes=45)
RUNAWAY_AT, RUNAWAY_FOR = timedelta(days=16, hours=1, minutes=10), timedelta(minutes=90)
REGRESSION_AT = timedelta(days=19, hours=10)
BUDGET_CROSSING_AT = timedelta(days=23)


@dataclass(frozen=True)
class Incident:
    """A planted incident: what it is, when (UTC, ``[start, end)``) and where it shows."""

    name: str
    start: datetime
    end: datetime
    where: str
    description: str


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote: span and line counts, the period, the incidents in it."""

    spans: int
    lines: int
    start: datetime
    end: datetime
    incidents: tuple[Incident, ...]
    out: Path


def simulate(
    out: Path,
    *,
    days: int = 30,
    seed: int = 7,
    end: datetime | None = None,
    scale: float = 1.0,
) -> SimulationSummary:
    """Write ``days`` days of simulated telemetry ending at ``end`` to ``out``; summarize it.

    ``end`` defaults to :data:`SAMPLE_END` (not "now") so that output depends only on the
    arguments; a naive ``end`` is taken as UTC. ``scale`` multiplies the traffic volume (1.0 is
    about 1,700 calls a weekday, 50k spans in 30 days; 20 gives about a million). ``out``
    ending in ``.gz`` is gzip-compressed; its parent directory is created. Only incidents that
    start inside the period are planted and returned. Raises ValueError for ``days < 1`` or a
    ``scale`` that is not a positive number.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a whole number of at least 1, got {days!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise ValueError(f"scale must be a number greater than 0, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number greater than 0, got {scale!r}")
    end = SAMPLE_END if end is None else end
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    start = end - timedelta(days=days)
    out = Path(out)

    incidents = _incidents(start, end, days=days, seed=seed, scale=scale)
    gen = TrafficGenerator(
        random.Random(seed), start_ns=_ns(start), scale=float(scale), windows=_windows(start, end)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    spans = lines = 0
    with _open_output(out) as sink:
        for index in range(days * 24):
            hour = start + timedelta(hours=index)
            calls = gen.hour(index, hour.hour, hour.weekday() >= 5)
            hour_lines = _lines(calls, _ns(hour))
            if hour_lines:
                sink.write(("\n".join(hour_lines) + "\n").encode())
            spans += len(calls)
            lines += len(hour_lines)
    return SimulationSummary(spans, lines, start, end, incidents, out)


def _ns(moment: datetime) -> int:
    # Exact integer arithmetic: float timestamps would lose nanoseconds.
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _windows(start: datetime, end: datetime) -> IncidentWindows:
    def window(at: timedelta, length: timedelta | None) -> tuple[int, int]:
        begin = start + at
        return _ns(begin), _ns(begin + length if length else max(end, begin))

    return IncidentWindows(
        storm=window(STORM_AT, STORM_FOR),
        runaway=window(RUNAWAY_AT, RUNAWAY_FOR),
        regression=window(REGRESSION_AT, None),
    )


def _incidents(
    start: datetime, end: datetime, *, days: int, seed: int, scale: float
) -> tuple[Incident, ...]:
    found = [
        Incident(
            "529 storm",
            start + STORM_AT,
            start + STORM_AT + STORM_FOR,
            "all services and environments",
            "about a third of all calls fail with overloaded_error (HTTP 529) after 2 retries",
        ),
        Incident(
            "runaway loop",
            start + RUNAWAY_AT,
            start + RUNAWAY_AT + RUNAWAY_FOR,
            "agent-worker/prod, feature agent-tools, model "
            + model_on(RUNAWAY.model, (start + RUNAWAY_AT).date()),
            "an agent loop re-sends a ~35k-token context about 500 times an hour",
        ),
        Incident(
            "cache regression after deploy",
            start + REGRESSION_AT,
            end,
            "support-bot/prod, feature support-chat",
            "a timestamp got into the system prompt: the cache hit ratio falls from ~85% to ~5%",
        ),
    ]
    if (days, seed, end, scale) == (SAMPLE_DAYS, SAMPLE_SEED, SAMPLE_END, 1.0):
        crossing = start + BUDGET_CROSSING_AT
        found.append(
            Incident(
                "budget 80% crossing",
                crossing,
                crossing + timedelta(days=1),
                "all services (monthly_usd in sample_logs/clauditor.toml)",
                "month-to-date spend crosses 80% of the monthly budget",
            )
        )
    return tuple(i for i in found if i.start < end)


@contextmanager
def _open_output(out: Path) -> Iterator[BinaryIO]:
    """A binary sink for ``out``: plain, or gzip with no file name and mtime 0 (reproducible)."""
    with out.open("wb") as raw:
        if not out.name.endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL
        ) as packed:
            yield packed  # type: ignore[misc]


# --- OTLP/JSON ------------------------------------------------------------------------------
# Spans are written with pre-built fragments and f-strings rather than json.dumps: every value
# here is a number or an ASCII identifier we generated, and this is the hot loop of the
# million-span benchmark.


def _kv_str(key: str) -> str:
    return f'{{"key":"{key}","value":{{"stringValue":"'


def _kv_int(key: str) -> str:
    return f'{{"key":"{key}","value":{{"intValue":"'


_SCOPE = f'{{"scope":{{"name":"{sc.ANTHROPIC_SCOPE}","version":"{SDK_VERSION}"}},"spans":['
_LINE_HEAD = [
    '{"resourceSpans":[{"resource":{"attributes":['
    f'{_kv_str(sc.SERVICE_NAME)}{service}"}}}},'
    f'{_kv_str(sc.DEPLOYMENT_ENVIRONMENT_NAME)}{environment}"}}}}'
    f']}},"scopeSpans":[{_SCOPE}'
    for service, environment in RESOURCES
]
_LINE_TAIL = "]}]}]}"
_PROVIDER = f'{_kv_str(sc.GEN_AI_PROVIDER_NAME)}anthropic"}}}}'
_OP_CHAT = f'{_kv_str(sc.GEN_AI_OPERATION_NAME)}chat"}}}}'
_MODEL = _kv_str(sc.GEN_AI_REQUEST_MODEL)
_MAX_TOKENS = _kv_int(sc.GEN_AI_REQUEST_MAX_TOKENS)
_STREAM = {
    flag: f'{{"key":"{sc.GEN_AI_REQUEST_STREAM}","value":{{"boolValue":{str(flag).lower()}}}}}'
    for flag in (True, False)
}
_OPERATION = {op: f'{_kv_str(sc.OPERATION)}{op}"}}}}' for op in ("chat", "count_tokens", "batch")}
_FEATURE = _kv_str(sc.FEATURE)
_USER = _kv_str(sc.USER_ID)
_CONVERSATION = _kv_str(sc.GEN_AI_CONVERSATION_ID)
_CODE = _kv_str(sc.CODE_LOCATION)
_RESPONSE_ID = _kv_str(sc.GEN_AI_RESPONSE_ID)
_RESPONSE_MODEL = {
    model: f'{_kv_str(sc.GEN_AI_RESPONSE_MODEL)}{answer}"}}}}'
    for model, answer in RESPONSE_MODEL.items()
}
_IN = _kv_int(sc.GEN_AI_USAGE_INPUT_TOKENS)
_OUT = _kv_int(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
_CACHE_READ = _kv_int(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)
_CACHE_WRITE = _kv_int(sc.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS)
_CACHE_5M = _kv_int(sc.ANTHROPIC_CACHE_5M_INPUT_TOKENS)
_CACHE_1H = _kv_int(sc.ANTHROPIC_CACHE_1H_INPUT_TOKENS)
_UNCACHED = _kv_int(sc.INPUT_TOKENS_UNCACHED)
_COUNTED = _kv_int(sc.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS)
_TIER = _kv_str(sc.ANTHROPIC_RESPONSE_SERVICE_TIER)
_STOP = _kv_str(sc.ANTHROPIC_STOP_REASON)
_TTFT = f'{{"key":"{sc.TTFT_MS}","value":{{"doubleValue":'
_HTTP_STATUS = _kv_int(sc.HTTP_RESPONSE_STATUS_CODE)
_RESEND = _kv_int(sc.HTTP_REQUEST_RESEND_COUNT)
_ERROR = _kv_str(sc.ERROR_TYPE)
_S_END = '"}}'


def _span(c: Call) -> str:
    """One span of ``c`` in OTLP/JSON."""
    a = [_PROVIDER]
    if c.operation != "count_tokens":
        a.append(_OP_CHAT)
    a.append(f"{_MODEL}{c.model}{_S_END}")
    if c.max_tokens is not None:
        a.append(f"{_MAX_TOKENS}{c.max_tokens}{_S_END}")
    if c.operation == "chat":
        a.append(_STREAM[c.stream])
    a.append(_OPERATION[c.operation])
    if c.feature is not None:
        a.append(f"{_FEATURE}{c.feature}{_S_END}")
    if c.user_id is not None:
        a.append(f"{_USER}{c.user_id}{_S_END}")
    if c.conversation_id is not None:
        a.append(f"{_CONVERSATION}{c.conversation_id}{_S_END}")
    a.append(f"{_CODE}{c.code_location}{_S_END}")
    if c.error_type is None:
        if c.operation == "count_tokens":
            a.append(f"{_COUNTED}{c.input_tokens}{_S_END}")
        else:
            write = c.cache_write_5m + c.cache_write_1h
            a.append(f"{_RESPONSE_ID}{c.response_id}{_S_END}")
            a.append(_RESPONSE_MODEL[c.model])
            a.append(f"{_IN}{c.input_tokens + c.cache_read + write}{_S_END}")
            a.append(f"{_OUT}{c.output_tokens}{_S_END}")
            a.append(f"{_CACHE_READ}{c.cache_read}{_S_END}")
            a.append(f"{_CACHE_WRITE}{write}{_S_END}")
            a.append(f"{_CACHE_5M}{c.cache_write_5m}{_S_END}")
            a.append(f"{_CACHE_1H}{c.cache_write_1h}{_S_END}")
            a.append(f"{_UNCACHED}{c.input_tokens}{_S_END}")
            a.append(f"{_TIER}{c.service_tier}{_S_END}")
            a.append(f"{_STOP}{c.stop_reason}{_S_END}")
            if c.ttft_ms is not None:
                a.append(f"{_TTFT}{c.ttft_ms}}}}}")
    if c.http_status is not None:
        a.append(f"{_HTTP_STATUS}{c.http_status}{_S_END}")
    if c.retries:
        a.append(f"{_RESEND}{c.retries}{_S_END}")
    if c.error_type is None:
        status = "{}"
    else:
        a.append(f"{_ERROR}{c.error_type}{_S_END}")
        where = f"HTTP {c.http_status}" if c.http_status else "no response"
        status = f'{{"code":2,"message":"{c.error_type} ({where})"}}'
    return (
        f'{{"traceId":"{c.trace_id}","spanId":"{c.span_id}","parentSpanId":"{c.parent_span_id}",'
        f'"name":"{c.name}","kind":3,"startTimeUnixNano":"{c.start_ns}",'
        f'"endTimeUnixNano":"{c.end_ns}","attributes":[{",".join(a)}],"status":{status}}}'
    )


def _lines(calls: Iterable[Call], hour_ns: int) -> list[str]:
    """The export lines of one hour's calls: per ten-minute window, per resource, in order."""
    buckets: dict[tuple[int, int], list[str]] = {}
    for c in calls:
        key = ((c.start_ns - hour_ns) // LINE_WINDOW_NS, c.resource)
        buckets.setdefault(key, []).append(_span(c))
    lines = []
    for (_, resource), spans in sorted(buckets.items()):
        head = _LINE_HEAD[resource]
        for i in range(0, len(spans), SPANS_PER_LINE):
            lines.append(f"{head}{','.join(spans[i : i + SPANS_PER_LINE])}{_LINE_TAIL}")
    return lines
