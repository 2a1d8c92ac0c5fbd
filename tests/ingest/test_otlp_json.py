"""Reading OTLP/JSON ExportTraceServiceRequests into span records."""

from __future__ import annotations

import pytest

from clauditor.ingest import SpanRecord, SpanRejected, flatten_attributes, iter_otlp_json_spans

from .otlp_fixtures import START_NS, TRACE_ID, request, span


def test_attribute_values_of_every_kind_are_flattened() -> None:
    attrs = flatten_attributes(
        [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "i", "value": {"intValue": "9007199254740993"}},  # beyond a double
            {"key": "d", "value": {"doubleValue": 1.5}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
            {
                "key": "kv",
                "value": {"kvlistValue": {"values": [{"key": "n", "value": {"intValue": "2"}}]}},
            },
            {"key": "empty", "value": {}},
            {"key": "novalue"},
        ]
    )
    assert attrs == {
        "s": "x",
        "i": 9007199254740993,
        "d": 1.5,
        "b": True,
        "a": ["stop"],
        "kv": {"n": 2},
        "empty": None,
        "novalue": None,
    }


def test_span_fields_and_shared_resource() -> None:
    req = request(
        span("00f067aa0ba902b7", {"k": "v"}, status={"code": 2, "message": "boom"}),
        span("00f067aa0ba902b8"),
    )
    first, second = iter_otlp_json_spans(req)
    assert isinstance(first, SpanRecord) and isinstance(second, SpanRecord)
    assert first.trace_id == TRACE_ID and first.span_id == "00f067aa0ba902b7"
    assert first.parent_span_id is None
    assert (first.start_ns, first.end_ns) == (START_NS, START_NS + 1_500_000_000)
    assert (first.status_code, first.status_message) == (2, "boom")
    assert first.kind == 3
    assert first.attributes == {"k": "v"}
    assert first.resource == {"service.name": "support-bot", "deployment.environment.name": "prod"}
    assert (first.scope_name, first.scope_version) == ("com.anthropic.sdk.python", "2.12.0")
    assert second.resource is first.resource


def test_snake_case_spelling_is_accepted() -> None:
    req = {
        "resource_spans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"string_value": "a"}}]
                },
                "scope_spans": [
                    {
                        "scope": {"name": "clauditor"},
                        "spans": [
                            {
                                "trace_id": TRACE_ID,
                                "span_id": "00f067aa0ba902b7",
                                "name": "anthropic.messages.create",
                                "kind": "SPAN_KIND_CLIENT",
                                "start_time_unix_nano": START_NS,
                                "end_time_unix_nano": START_NS + 1,
                                "attributes": [{"key": "n", "value": {"int_value": "3"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (rec,) = iter_otlp_json_spans(req)
    assert isinstance(rec, SpanRecord)
    assert rec.span_id == "00f067aa0ba902b7" and rec.kind == 3 and rec.attributes == {"n": 3}
    assert rec.resource == {"service.name": "a"} and rec.end_ns == START_NS + 1


@pytest.mark.parametrize(
    "req",
    [[], {"resourceMetrics": []}, {"resourceSpans": {"not": "a list"}}, {"resourceSpans": [3]}],
)
def test_a_request_of_the_wrong_shape_raises(req: object) -> None:
    with pytest.raises(SpanRejected):
        list(iter_otlp_json_spans(req))  # type: ignore[arg-type]


def test_an_unreadable_span_is_yielded_as_a_rejection() -> None:
    bad_time = span("00f067aa0ba902b7")
    bad_time["startTimeUnixNano"] = "soon"
    bad_attrs = span("00f067aa0ba902b8")
    bad_attrs["attributes"] = "k=v"
    items = list(iter_otlp_json_spans(request(bad_time, "not a span", bad_attrs, span())))
    reasons = [item.reason for item in items if isinstance(item, SpanRejected)]
    assert reasons == [
        "startTimeUnixNano is not an integer: 'soon'",
        "span is not a JSON object",
        "attributes is not a list of key/value pairs",
    ]
    assert isinstance(items[-1], SpanRecord)
    assert items[0].payload is bad_time  # type: ignore[union-attr]
