"""Span -> `calls` row: hand-written spans with hand-computed expected rows."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from clauditor.ingest import SpanRecord, SpanRejected, iter_otlp_json_spans, normalize

from .otlp_fixtures import SDK_CACHED_CALL, START_NS, TRACE_ID, request, span


def record(
    attributes: dict[str, Any] | None = None,
    *,
    scope: str = "com.anthropic.sdk.python",
    resource: dict[str, Any] | None = None,
    **span_kwargs: Any,
) -> SpanRecord:
    """The one record of a one-span request, read through the OTLP/JSON reader."""
    (item,) = iter_otlp_json_spans(
        request(span(attributes=attributes, **span_kwargs), scope=scope, resource=resource)
    )
    assert isinstance(item, SpanRecord)
    return item


def row_of(attributes: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    row = normalize(record(attributes, **kwargs))
    assert row is not None
    return row


def test_inclusive_input_is_converted_to_uncached() -> None:
    row = row_of(SDK_CACHED_CALL)
    # 5000 inclusive - 3000 cache read - 1000 cache write = 1000 uncached.
    assert row["input_tokens"] == 1000
    assert row["output_tokens"] == 500
    assert row["cache_read_input_tokens"] == 3000
    assert row["cache_creation_input_tokens"] == 1000
    assert row["cache_creation_5m_input_tokens"] == 600
    assert row["cache_creation_1h_input_tokens"] == 400
    assert row["source"] == "anthropic-sdk"
    assert row["operation"] == "chat"
    assert row["request_model"] == "claude-sonnet-4-5"
    assert row["response_model"] == "claude-sonnet-4-5-20250929"
    assert row["max_tokens"] == 1024
    assert row["stream"] is False
    assert row["service_tier"] == "standard"
    assert row["stop_reason"] == "end_turn"
    assert row["status"] == "ok"
    assert row["http_status"] == 200
    assert row["retries"] == 0
    assert row["feature"] is None


def test_ids_times_and_resource() -> None:
    row = row_of(
        SDK_CACHED_CALL,
        resource={
            "service.name": "billing",
            "deployment.environment": "staging",
            "host.name": "h1",
        },
    )
    assert row["span_id"] == "00f067aa0ba902b7"
    assert row["trace_id"] == TRACE_ID
    assert row["parent_span_id"] is None
    assert row["start_time"] == dt.datetime(2025, 11, 3, 9, 30, tzinfo=dt.UTC)
    assert row["end_time"] == dt.datetime(2025, 11, 3, 9, 30, 1, 500_000, tzinfo=dt.UTC)
    assert row["duration_ms"] == 1500.0
    assert row["service"] == "billing"
    assert row["environment"] == "staging"  # the older attribute name, as a fallback
    assert json.loads(row["resource"]) == {"host.name": "h1"}
    assert row["cost_usd"] is None and row["price_version"] is None  # pricing is not its job


def test_cache_counts_never_make_input_negative() -> None:
    attrs = {**SDK_CACHED_CALL, "gen_ai.usage.input_tokens": 100}
    assert row_of(attrs)["input_tokens"] == 0


def test_older_cache_attribute_names() -> None:
    attrs = {
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.cache_read_input_tokens": 500,
        "gen_ai.usage.cache_creation_input_tokens": 300,
    }
    row = row_of(attrs, scope="opentelemetry.instrumentation.anthropic")
    assert (row["input_tokens"], row["cache_read_input_tokens"]) == (100, 500)
    assert row["cache_creation_input_tokens"] == 300
    assert row["source"] == "openllmetry"  # OpenLLMetry's scope


def test_sdk_span_without_input_count_leaves_input_null() -> None:
    attrs = {k: v for k, v in SDK_CACHED_CALL.items() if k != "gen_ai.usage.input_tokens"}
    row = row_of(attrs)
    assert row["input_tokens"] is None
    assert row["cache_read_input_tokens"] == 3000
    assert row["output_tokens"] == 500


def test_clauditor_attributes_take_precedence() -> None:
    attrs = {
        **SDK_CACHED_CALL,
        "gen_ai.request.stream": True,
        "clauditor.usage.input_tokens": 700,  # exact, from the SDK's usage object
        "clauditor.feature": "summarization",
        "clauditor.user_id": "u-42",
        "user.id": "someone-else",
        "clauditor.code_location": "app.summaries:summarize",
        "clauditor.ttft_ms": 312.5,
        "clauditor.operation": "chat",
        "clauditor.usage.inference_geo": "us",
        "clauditor.usage.speed": "fast",
        "gen_ai.conversation.id": "conv-7",
    }
    row = row_of(attrs)
    assert row["input_tokens"] == 700
    assert row["source"] == "clauditor"
    assert row["feature"] == "summarization"
    assert row["user_id"] == "u-42"
    assert row["code_location"] == "app.summaries:summarize"
    assert row["ttft_ms"] == 312.5
    assert row["stream"] is True
    assert (row["inference_geo"], row["speed"]) == ("us", "fast")
    assert row["conversation_id"] == "conv-7"
    leftover = json.loads(row["attributes"])
    assert "clauditor.feature" not in leftover and "gen_ai.usage.input_tokens" not in leftover
    assert leftover["gen_ai.response.id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_feature_from_configured_attributes_then_baggage() -> None:
    attrs = {**SDK_CACHED_CALL, "app.feature": "search", "baggage.clauditor.feature": "via-bag"}
    rec = record(attrs)
    assert normalize(rec)["feature"] == "via-bag"  # type: ignore[index]
    row = normalize(rec, feature_attributes=["app.feature", "clauditor.feature"])
    assert row is not None and row["feature"] == "search"
    assert "app.feature" not in json.loads(row["attributes"])


def test_user_id_fallbacks() -> None:
    assert row_of({**SDK_CACHED_CALL, "enduser.id": "e-1"})["user_id"] == "e-1"
    assert row_of({**SDK_CACHED_CALL, "user.id": "u-1", "enduser.id": "e-1"})["user_id"] == "u-1"


def test_overloaded_error_span() -> None:
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "error.type": "overloaded_error",
        "http.response.status_code": 529,
        "http.request.resend_count": 2,
    }
    row = row_of(attrs, status={"code": 2, "message": "Overloaded"})
    assert row["status"] == "error"
    assert row["error_type"] == "overloaded_error"
    assert row["http_status"] == 529
    assert row["retries"] == 2
    assert row["input_tokens"] is None and row["output_tokens"] is None


def test_client_timeout_maps_to_timeout_and_marks_error() -> None:
    attrs = {"gen_ai.request.model": "claude-sonnet-4-5", "error.type": "client_timeout_error"}
    row = row_of(attrs)  # no status at all: error.type alone makes it an error
    assert (row["status"], row["error_type"]) == ("error", "timeout")


def test_status_code_as_enum_name() -> None:
    attrs = {"gen_ai.request.model": "claude-sonnet-4-5"}
    assert row_of(attrs, status={"code": "STATUS_CODE_ERROR"})["status"] == "error"


def test_count_tokens_keeps_token_columns_null() -> None:
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1234,
    }
    row = row_of(attrs, name="anthropic.messages.count_tokens")
    assert row["operation"] == "count_tokens"
    for column in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
        assert row[column] is None
    assert json.loads(row["attributes"])["anthropic.message.count_tokens.input_tokens"] == 1234


def test_batch_result_span() -> None:
    attrs = {**SDK_CACHED_CALL, "clauditor.operation": "batch"}
    row = row_of(attrs, name="anthropic.messages.batches.results")
    assert row["operation"] == "batch"


@pytest.mark.parametrize(
    ("name", "attributes"),
    [
        ("GET /health", {"http.request.method": "GET", "http.response.status_code": 200}),
        ("handle_request", {"app.feature": "search"}),
        ("chat gpt-4o", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}),
    ],
)
def test_spans_that_are_not_claude_calls_are_ignored(name: str, attributes: dict[str, Any]) -> None:
    assert normalize(record(attributes, name=name, scope="opentelemetry.instrumentation")) is None


def test_claude_on_bedrock_is_kept() -> None:
    attrs = {"gen_ai.system": "aws.bedrock", "gen_ai.request.model": "anthropic.claude-sonnet-4-5"}
    assert normalize(record(attrs, scope="x")) is not None


def test_secrets_never_reach_the_stored_attributes() -> None:
    attrs = {
        **SDK_CACHED_CALL,
        "app.note": "called with sk-ant-test-abc123DEF456 by mistake",
        "http.request.header.authorization": "Bearer abcdefghijklmnop",
        "http.request.header.x-api-key": "sk-ant-test-xyz",
    }
    row = row_of(attrs)
    assert "sk-ant" not in row["attributes"]
    assert "abcdefghijklmnop" not in row["attributes"]
    stored = json.loads(row["attributes"])
    assert stored["app.note"] == "called with [REDACTED] by mistake"
    assert not any("authorization" in key or "api-key" in key for key in stored)


def test_numeric_string_counts_are_accepted() -> None:
    rec = record({**SDK_CACHED_CALL})
    rec.attributes["gen_ai.usage.output_tokens"] = "500"
    assert normalize(rec)["output_tokens"] == 500  # type: ignore[index]


def _rejected(rec: SpanRecord) -> str:
    with pytest.raises(SpanRejected) as info:
        normalize(rec)
    return info.value.reason


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"span_id": "abc123"}, "span_id is not 16 hex"),
        ({"span_id": "zzzzzzzzzzzzzzzz"}, "span_id is not 16 hex"),
        ({"span_id": "0000000000000000"}, "span_id is not 16 hex"),
        ({"trace_id": "4bf92f3577b34da6"}, "trace_id is not 32 hex"),
        ({"trace_id": "0" * 32}, "trace_id is not 32 hex"),
        ({"start_ns": 0}, "no start time"),
        ({"end_ns": START_NS - 1}, "ends before it starts"),
    ],
)
def test_malformed_ids_and_times_are_rejected(change: dict[str, Any], expected: str) -> None:
    rec = record(SDK_CACHED_CALL)
    for field, value in change.items():
        setattr(rec, field, value)
    assert expected in _rejected(rec)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("gen_ai.usage.output_tokens", "lots", "gen_ai.usage.output_tokens is not an integer"),
        ("gen_ai.usage.output_tokens", 12.5, "is not an integer"),
        ("gen_ai.usage.cache_read.input_tokens", -3, "is negative"),
        ("gen_ai.usage.input_tokens", 100_000_001, "absurdly large"),
        ("clauditor.usage.input_tokens", [1, 2], "is not an integer"),
        ("gen_ai.request.model", 4, "gen_ai.request.model is not a string"),
        ("gen_ai.response.model", ["claude"], "gen_ai.response.model is not a string"),
    ],
)
def test_malformed_values_are_rejected(key: str, value: Any, expected: str) -> None:
    rec = record(SDK_CACHED_CALL)
    rec.attributes[key] = value
    assert expected in _rejected(rec)


def test_unparsable_informative_numbers_stay_in_attributes() -> None:
    rec = record(SDK_CACHED_CALL)
    rec.attributes["gen_ai.request.max_tokens"] = "plenty"
    row = normalize(rec)
    assert row is not None and row["max_tokens"] is None
    assert json.loads(row["attributes"])["gen_ai.request.max_tokens"] == "plenty"
