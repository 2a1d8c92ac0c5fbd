"""The fast path decides every span it takes exactly as the general path does.

:func:`clauditor.ingest.fastpath.span_row` either answers GENERIC (the general path decides) or
gives the very row (or the "not a Claude call" None) that ``span_record`` + ``normalize.record_row``
give. Checked span by span on the committed sample, on every convention fixture, and on
thousands of simulator spans with hostile values planted in them; and line by line, through
:func:`clauditor.ingest.lines.read_line`, with the fast path on and off (rows, rejections with
their reasons and payloads, counts).
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from clauditor import semconv as sc
from clauditor.ingest import fastpath
from clauditor.ingest.conventions import CONVENTIONS as TABLE
from clauditor.ingest.fastpath import GENERIC, request_spans, span_row
from clauditor.ingest.lines import read_line, row_tuple
from clauditor.ingest.normalize import SpanRejected, record_row
from clauditor.ingest.otlp_json import span_record

from .hostile.corpus import JSON, cases

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "sample-30d.jsonl.gz"
CONVENTIONS = ROOT / "sample_logs" / "conventions"
FEATURES = (sc.FEATURE,)


def _sample_lines(limit: int | None = None) -> list[bytes]:
    with gzip.open(SAMPLE, "rb") as handle:
        lines = handle.readlines()
    return lines[:limit] if limit else lines


def _general(
    span: Any, resource: dict[str, Any], scope: str, version: str | None, features: tuple[str, ...]
) -> Any:
    try:
        record = span_record(span, resource, scope, version)
        row = record_row(record, features)
    except SpanRejected as exc:
        return ("rejected", exc.reason)
    return None if row is None else row_tuple(row)


def _compare(spans: list[tuple[Any, ...]], features: tuple[str, ...] = FEATURES) -> tuple[int, int]:
    """Assert agreement on every span the fast path decides; return (decided, left)."""
    decided = left = 0
    for span, resource, scope, version in spans:
        fast = span_row(span, resource, scope, features)
        if fast is GENERIC:
            left += 1
            continue
        general = _general(span, resource, scope, version, features)
        # repr: NaN equals itself, and 1 vs 1.0 or True vs 1 would show
        assert repr(fast) == repr(general), json.dumps(span)[:400]
        decided += 1
    return decided, left


def _spans(lines: list[bytes]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for line in lines:
        spans = request_spans(orjson.loads(line))
        assert spans is not None
        out.extend(spans)
    return out


def test_the_fast_path_takes_the_conventions_the_table_reads_by_keys_alone() -> None:
    assert {"clauditor", "anthropic-sdk", "otel-genai"} == fastpath.FAST_SOURCES
    # A refine step given to a convention moves its spans to the general path by itself
    # (the fast path is derived from the table, never switched off as a whole).
    changed = tuple(
        dataclasses.replace(c, refine=lambda *_: None) if c.source == "anthropic-sdk" else c
        for c in TABLE
    )
    assert fastpath.fast_sources(changed) == {"clauditor", "otel-genai"}


def test_the_sample_is_read_by_the_fast_path_with_the_same_rows() -> None:
    decided, left = _compare(_spans(_sample_lines()))
    # The point of the fast path: the common span takes it (error spans with a status
    # message, count_tokens calls and the like are left to the general path).
    assert decided > 0.9 * (decided + left)


def test_custom_feature_keys_give_the_same_rows() -> None:
    spans = _spans(_sample_lines(200))
    decided, _ = _compare(spans, ("team.feature", sc.FEATURE))
    assert decided
    decided, _ = _compare(spans, ("team.feature",))
    assert decided


def test_every_convention_fixture_gives_the_same_rows() -> None:
    files = sorted(CONVENTIONS.glob("*/*.jsonl"))
    assert len(files) >= 5
    for path in files:
        for line in path.read_bytes().splitlines():
            spans = request_spans(orjson.loads(line))
            if spans is not None:
                _compare(spans)


# --- fuzzing: simulator spans with hostile values planted ------------------------------------

_VALUES: list[Any] = [
    {"stringValue": "sk-ant-api03-" + "x" * 30},
    {"stringValue": "Bearer abcdefghijklmnop"},
    {"stringValue": "see https://hooks.slack.com/services/T0/B0/xyz"},
    {"stringValue": '{"api_key": "k", "a": 1}'},
    {"stringValue": "[1, 2]"},
    {"stringValue": "caf\u00e9 \u2603"},
    {"stringValue": "tab\there, del\x7f, nul\x00"},
    {"stringValue": ""},
    {"stringValue": "1234"},
    {"stringValue": "claude-opus-4-6"},
    {"stringValue": "gpt-4o"},
    {"stringValue": "openai"},
    {"stringValue": "count_tokens"},
    {"stringValue": "rate_limit_error"},
    {"stringValue": "us-east5-aiplatform.googleapis.com"},
    {"stringValue": "bedrock-runtime.eu-west-1.amazonaws.com"},
    {"intValue": "-5"},
    {"intValue": "0"},
    {"intValue": "100000001"},
    {"intValue": "9223372036854775808"},
    {"intValue": "99999999999999999999999"},
    {"intValue": 77},
    {"intValue": "12x"},
    {"doubleValue": 3.5},
    {"doubleValue": 1024.0},
    {"doubleValue": 1e300},
    {"doubleValue": "NaN"},
    {"boolValue": True},
    {"boolValue": False},
    {"arrayValue": {"values": [{"stringValue": "end_turn"}]}},
    {"arrayValue": {"values": []}},
    {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}},
    {"bytesValue": "AAEC"},
    {},
    {"stringValue": None},
]
_EXTRA_KEYS = [
    "x-api-key",
    "http.request.header.authorization",
    "llm.request.type",
    sc.OPENINFERENCE_SPAN_KIND,
    "clauditor.note",
    "baggage.clauditor.feature",
    "team.feature",
    "caf\u00e9.key",
    sc.GEN_AI_SYSTEM,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_RESPONSE_FINISH_REASONS,
    sc.OPERATION,
    sc.WEB_SEARCH_REQUESTS,
    sc.CODE_EXECUTION_REQUESTS,
    sc.CONTAINER_ID,
    sc.CLOUD_REGION,
    sc.SERVER_ADDRESS,
]
_SCOPES = [
    "",
    sc.ANTHROPIC_SCOPE,
    sc.CLAUDITOR_SCOPE,
    sc.OPENLLMETRY_SCOPE,
    sc.OPENINFERENCE_SCOPE,
    sc.OPENLIT_SCOPE_PREFIX + "anthropic",
    "some.other.library",
]
_SPAN_FIELDS: list[tuple[str, list[Any]]] = [
    ("spanId", ["00F067AA0BA902B7", "0" * 16, "short", None, 5]),
    ("traceId", ["4BF92F3577B34DA6A3CE929D0E0E4736", "0" * 32, "", None]),
    ("parentSpanId", ["", "0" * 16, "ABCDEF0123456789", None, 7]),
    ("startTimeUnixNano", ["0", "-1", "abc", 1790812859669255084, "1" * 25, "\u0661\u0662"]),
    ("endTimeUnixNano", ["1", "9999999999999999999", 1.5, None]),
    ("name", ["anthropic.messages.count_tokens", "anthropic.messages.create", "", None, 3]),
    ("kind", ["SPAN_KIND_CLIENT", 3, None, True]),
    (
        "status",
        [
            {},
            {"code": 2},
            {"code": 2, "message": "boom"},
            {"code": "STATUS_CODE_ERROR"},
            {"code": True},
            {"message": "x"},
            "bad",
            None,
        ],
    ),
]


def _mutate(span: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    span = copy.deepcopy(span)
    attributes = span["attributes"]
    for _ in range(rng.randint(1, 3)):
        what = rng.random()
        if what < 0.55 and attributes:
            rng.choice(attributes)["value"] = copy.deepcopy(rng.choice(_VALUES))
        elif what < 0.75:
            attributes.append({"key": rng.choice(_EXTRA_KEYS), "value": rng.choice(_VALUES)})
        elif what < 0.8 and attributes:
            del attributes[rng.randrange(len(attributes))]
        elif what < 0.85 and attributes:
            attributes.append(copy.deepcopy(rng.choice(attributes)))  # a repeated key
        else:
            name, choices = rng.choice(_SPAN_FIELDS)
            value = rng.choice(choices)
            if value is None:
                span.pop(name, None)
            else:
                span[name] = copy.deepcopy(value)
    return span


def test_fuzzed_spans_get_the_same_verdict() -> None:
    rng = random.Random(20261124)
    base = _spans(_sample_lines(40))
    mutated = []
    for _ in range(6000):
        span, resource, scope, version = rng.choice(base)
        if rng.random() < 0.15:
            scope = rng.choice(_SCOPES)
        mutated.append((_mutate(span, rng), resource, scope, version))
    decided, left = _compare(mutated)
    _compare(mutated, ("team.feature", sc.FEATURE))
    # Both paths were exercised: plenty of planted values are harmless, plenty are not.
    assert decided > 1000 and left > 1000


# --- whole lines: read_line with the fast path on and off ------------------------------------


@dataclass
class _Counts:
    spans_read: int = 0
    ignored: int = 0


@dataclass
class _Sink:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[tuple[str, str, str]] = field(default_factory=list)
    summary: _Counts = field(default_factory=_Counts)

    def reject(self, origin: str, reason: str, payload: Any) -> None:
        self.rejections.append((origin, reason, repr(payload)[:2000]))


def _read(lines: list[bytes]) -> _Sink:
    sink = _Sink()
    for number, line in enumerate(lines, 1):
        read_line("f.jsonl", number, line, sink, FEATURES)
    return sink


def _hostile_lines() -> list[bytes]:
    out = []
    for case in cases():
        if case.content_type == JSON and not case.encoding and len(case.body) < 2_000_000:
            out.append(case.body.replace(b"\n", b" ") + b"\n")
    return out


@pytest.mark.parametrize("which", ["sample", "hostile", "fuzzed"])
def test_read_line_gives_the_same_outcome_either_way(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if which == "sample":
        lines = _sample_lines(300)
    elif which == "hostile":
        lines = _hostile_lines()
        assert len(lines) >= 5
    else:
        rng = random.Random(7)
        lines = []
        for line in _sample_lines(60):
            request = orjson.loads(line)
            spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
            spans[:] = [_mutate(s, rng) if rng.random() < 0.3 else s for s in spans]
            lines.append(json.dumps(request).encode() + b"\n")
    fast = _read(lines)
    monkeypatch.setattr(fastpath, "FAST_SOURCES", frozenset())
    general = _read(lines)
    assert repr(fast.rows) == repr(general.rows)
    assert fast.rejections == general.rejections
    assert fast.summary == general.summary
    assert fast.rows or fast.rejections
