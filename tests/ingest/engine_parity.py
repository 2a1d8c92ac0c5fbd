"""Helpers for the engine-parity tests: ingest the same input with two engines into two real
DuckDB files and compare the ``calls`` tables row for row (all columns; the JSON columns as
parsed JSON), the summaries (rejection reasons and their order included), the quarantine and
the ingested-files tables; and a set of lines on every edge of the readers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clauditor.ingest import ingest_paths
from clauditor.store import load_calls, read_connection

from .otlp_fixtures import SDK_CACHED_CALL, kv, line, request, span


def _table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with read_connection(db) as con:
        return con.execute(sql).fetchall()


def _calls(db: Path) -> list[dict[str, Any]]:
    frame = load_calls(db).sort("span_id")
    out = []
    for row in frame.iter_rows(named=True):
        row["attributes"] = json.loads(row["attributes"])
        row["resource"] = json.loads(row["resource"])
        out.append(row)
    return out


def assert_same(paths: list[Path], tmp_path: Path, engine: str = "parallel", **options: Any) -> Any:
    """Ingest ``paths`` with the Python engine and ``engine``; assert identical outcomes
    (rows, summaries, quarantine, ingested files); return the summary."""
    dbs = {e: tmp_path / f"{e}.duckdb" for e in ("python", engine)}
    summaries = {e: ingest_paths(paths, db, engine=e, **options) for e, db in dbs.items()}
    assert summaries[engine] == summaries["python"]
    assert _calls(dbs[engine]) == _calls(dbs["python"])
    quarantine = "SELECT origin, reason, payload FROM quarantine ORDER BY ALL"
    assert _table(dbs[engine], quarantine) == _table(dbs["python"], quarantine)
    files = "SELECT path, size, mtime_ns, spans, rejected FROM ingested_files ORDER BY path"
    assert _table(dbs[engine], files) == _table(dbs["python"], files)
    return summaries["python"]


WEEKDAYS_END = datetime(2026, 11, 27, tzinfo=UTC)


def _own_id_span(span_id: str, attributes: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A fixture span whose response id is its own: distinct calls, as in real telemetry
    (ingest merges rows of different instrumentations that share a response id)."""
    if "gen_ai.response.id" in attributes:
        attributes = {**attributes, "gen_ai.response.id": f"msg_{span_id}"}
    return span(span_id, attributes, **kwargs)


def hostile_lines() -> list[str]:
    """Lines on every edge a reader must get exactly right."""
    span = _own_id_span
    good = span("00f067aa0ba90201", SDK_CACHED_CALL)
    text = line(good).rstrip("\n")
    count = span(
        "00f067aa0ba90202",
        {"gen_ai.request.model": "claude-haiku-4-5", "gen_ai.usage.input_tokens": 42},
        name="anthropic.messages.count_tokens",
    )
    weird_values = span("00f067aa0ba90203", SDK_CACHED_CALL)
    weird_values["attributes"] += [
        {"key": "empty", "value": {}},
        {"key": "two", "value": {"stringValue": "a", "intValue": "1"}},
    ]
    dup_attr = span("00f067aa0ba90204", SDK_CACHED_CALL)
    dup_attr["attributes"].append(kv("gen_ai.request.model", "claude-opus-4-1"))
    array = span("00f067aa0ba90205", SDK_CACHED_CALL)
    array["attributes"].append(
        {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": []}}}
    )
    status_name = span("00f067aa0ba90206", SDK_CACHED_CALL, status={"code": "STATUS_CODE_ERROR"})
    error = span(
        "00f067aa0ba90207",
        {**SDK_CACHED_CALL, "error.type": "client_timeout_error", "x.note": 'quote " and \\'},
        status={"code": 2, "message": "boom"},
    )
    other = span(
        "00f067aa0ba90208",
        {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5"},
        name="chat gpt-5",
    )
    genai = span(
        "00f067aa0ba90209",
        {
            "gen_ai.system": "Anthropic",
            "gen_ai.operation.name": "text_completion",
            "gen_ai.request.model": "claude-3-haiku-20240307",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read_input_tokens": 150,
            "llm.headers.Authorization": "x",
            "my.api_key": "y",
            "plain": 1.25,
            "flag": True,
            "n": -7,
        },
        name="chat claude",
    )
    return [
        text,
        line(count, scope="clauditor").rstrip("\n"),
        line(weird_values).rstrip("\n"),
        line(dup_attr).rstrip("\n"),
        line(array).rstrip("\n"),
        line(status_name).rstrip("\n"),
        line(error, resource={"service.name": "svc", "deployment.environment": "old"}).rstrip(),
        line(other, genai, scope="some.other.lib").rstrip("\n"),
        text.replace("}]}]}]}", "},]}]}]}"),  # trailing comma
        text.replace('"boolValue":false', '"boolValue":null'),
        text.replace('"doubleValue"', '"doubleValue"').replace(
            '"1024"', "1024"
        ),  # int as JSON number
        text.replace("resourceSpans", "resource_spans").replace("scopeSpans", "scope_spans"),
        text.replace('"spanId":"00f067aa0ba90201"', '"spanId":"zz"'),
        text.replace('"spanId":"00f067aa0ba90201"', '"span\\u0049d":"00f067aa0ba90211"'),
        text.replace("claude-sonnet-4-5", "claude-sonnet-4-5-é"),
        text.replace('"standard"', '"Bearer abcdefghijkl"'),
        text.replace('"end_turn"', '"sk-ant-api03-secret"'),
        text.replace('"500"', '"-5"'),
        text.replace('"500"', '"5e2"'),
        text.replace('"500"', '"999999999999"'),
        text.replace('"claude-sonnet-4-5"', "7", 1),
        text.replace('"startTimeUnixNano":"', '"startTimeUnixNano":"x'),
        text.replace('"name":"anthropic.messages.create"', '"name":5'),
        json.dumps({"resourceSpans": [5]}),
        json.dumps({"resourceSpans": [{"scopeSpans": ["x"]}]}),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [7, good]}]}]}),
        json.dumps({"resourceSpans": [{}]}),
        json.dumps({"resourceSpans": []}),
        json.dumps(request()),
        json.dumps([1, 2]),
        '{"resourceSpans": NaN}',
        "not json at all",
        text.replace('"kind":3', '"kind":"SPAN_KIND_CLIENT"'),
        text.replace('"kind":3', '"kind":3,"kind":4'),  # harmless: kind is not stored
        "   ",
        "",
    ]
