"""Every field of a convention's ``Markers`` detector reaches the view's SQL.

The convention corpus never decides a span by a key prefix alone, nor offers a span that only
``scope_means_call`` keeps out of ``calls``; these spans do, through both paths (the view in
chDB, the Python file ingest), and the rows must agree and be the ones the table says.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from clauditor import semconv as sc
from clauditor.clickhouse import ClickHouse, init

from .test_view import CONFIG, _clickhouse_rows, _differences, _insert_spans, _python_rows

_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, in nanoseconds


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": value}


def _span(n: int, name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "traceId": f"{n:032x}",
        "spanId": f"{n:016x}",
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(_START + n * 10**9),
        "endTimeUnixNano": str(_START + n * 10**9 + 5 * 10**8),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attributes.items()],
        "status": {},
    }


def _line(scope: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
    return {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": scope}, "spans": spans}]}
        ]
    }


def _fixture(path: Path) -> Path:
    usage = {
        sc.GEN_AI_REQUEST_MODEL: "claude-haiku-4-5",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
    }
    lines = [
        # An app's own scope: only a clauditor.* key outside the clauditor key list (the
        # detector's key prefix) makes it clauditor's, not the generic gen_ai convention's.
        _line("my.app", [_span(1, "chat claude-haiku-4-5", {**usage, "clauditor.team": "t"})]),
        # Our scope and the SDK's do not make a span a call by themselves
        # (scope_means_call=False): no model, no operation, not a call span name.
        _line(sc.CLAUDITOR_SCOPE, [_span(2, "clauditor.setup", {"clauditor.team": "t"})]),
        _line(sc.ANTHROPIC_SCOPE, [_span(3, "anthropic.messages.batches.retrieve", {})]),
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_key_prefix_and_scope_means_call_decide_alike(ch: ClickHouse, tmp_path: Path) -> None:
    files = [_fixture(tmp_path / "detectors.jsonl")]
    init(ch, feature_attributes=CONFIG.feature_attributes)
    _insert_spans(ch, files)
    python, clickhouse = _python_rows(tmp_path, files), _clickhouse_rows(ch)
    assert set(python) == set(clickhouse) == {f"{1:016x}"}
    row = clickhouse[f"{1:016x}"]
    assert row["source"] == "clauditor"
    assert _differences(python[f"{1:016x}"], row) == []


def test_a_markers_field_the_view_does_not_know_stops_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clauditor.clickhouse import _rules, view

    @dataclasses.dataclass(frozen=True)
    class Markers(_rules.Markers):
        span_names: frozenset[str] = frozenset()  # a field added to the table's detectors

    odd = _rules.Convention("named", Markers(span_names=frozenset({"x"})))
    monkeypatch.setattr(_rules, "Markers", Markers)
    monkeypatch.setattr(_rules, "CONVENTIONS", (odd, *_rules.CONVENTIONS))
    with pytest.raises(ValueError, match=r"'named'.*no ClickHouse SQL.*\['span_names'\]"):
        view.spans_select("default.otel_traces")
