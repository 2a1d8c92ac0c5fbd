"""No secret reaches the database through any door: columns, nested or JSON-string attributes,
resource attributes, rejection reasons."""

from __future__ import annotations

import json
from pathlib import Path

from clauditor.ingest import ingest_paths
from clauditor.store import read_connection

KEY = "sk-ant-test-KEYfake-1234"
PROXY = "proxy-key-PLAIN123"


def kv(key: str, value: object) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def span(span_id: str, *attributes: dict) -> dict:
    return {
        "traceId": "a" * 32, "spanId": span_id, "name": "anthropic.messages.create", "kind": 3,
        "startTimeUnixNano": "1790000000000000000", "endTimeUnixNano": "1790000001000000000",
        "attributes": [kv("gen_ai.request.model", "claude-haiku-4-5"), *attributes],
    }  # fmt: skip


def test_no_secret_in_any_stored_byte(tmp_path: Path) -> None:
    headers = json.dumps({"extra_headers": {"x-api-key": PROXY, "Authorization": "Basic QUJD"}})
    good = span(
        "b" * 16,
        kv("clauditor.feature", f"search {KEY}"),
        kv("clauditor.user_id", KEY),
        kv("gen_ai.usage.input_tokens", 10),
        kv("llm.invocation_parameters", headers),
        {"key": "deep", "value": {"kvlistValue": {"values": [
            kv("inner", f"token={KEY}"), kv("authorization", "Basic QUJD")]}}},
    )  # fmt: skip
    bad = span("c" * 16, kv("gen_ai.usage.input_tokens", KEY))
    request = {"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", f"svc {KEY}")]},
        "scopeSpans": [{"scope": {"name": "app"}, "spans": [good, bad]}],
    }]}  # fmt: skip
    source = tmp_path / "secrets.jsonl"
    source.write_text(json.dumps(request) + "\n")
    db = tmp_path / "s.duckdb"
    summary = ingest_paths([source], db)
    assert (summary.calls_written, summary.rejected) == (1, 1)
    assert all(KEY not in r.reason for r in summary.rejections)
    with read_connection(db) as con:
        # Every table as text (through Polars: TIMESTAMPTZ to Python objects would need pytz).
        dump = "".join(
            con.sql(f"SELECT * FROM {table}").pl().write_csv() for table in ("calls", "quarantine")
        )
        feature = con.execute("SELECT feature FROM calls").fetchall()[0][0]
    for secret in (KEY, PROXY, "Basic QUJD", "KEYfake"):
        assert secret not in dump
        for path in tmp_path.glob("s.duckdb*"):
            assert secret.encode() not in path.read_bytes()
    assert feature == "search [REDACTED]"
