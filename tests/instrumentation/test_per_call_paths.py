"""The per-call shortcuts give the spans the general code gives.

clauditor reads the SDK's usual Message in bulk, reuses the request attributes of a repeated
(model, max_tokens, ...) combination and the attributes of a ``feature`` block: each test here
holds one of those shortcuts to the answer of the plain, field-by-field path.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

import clauditor
from clauditor import semconv as sc
from clauditor.instrumentation import _attributes
from tests import fakeanthropic as fa

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]


def _message(body: dict[str, Any], *, validate: bool = True) -> Any:
    # model_construct keeps malformed values (a negative or bool count) exactly as given.
    cls = anthropic.types.Message
    if validate:
        return cls.model_validate(body)
    message = cls.model_construct(**{k: v for k, v in body.items() if k != "usage"})
    object.__setattr__(message, "usage", anthropic.types.Usage.model_construct(**body["usage"]))
    return message


def _both_paths(message: Any) -> tuple[list[Any], list[Any]]:
    fast: dict[str, Any] = {}
    general: dict[str, Any] = {}
    fast_id = _attributes.add_message_attributes(fast, message)
    general_id = _attributes._add_any_message_attributes(general, message)
    assert fast_id == general_id
    return list(fast.items()), list(general.items())


@pytest.mark.parametrize(
    "usage",
    [
        fa.usage(12, 34),
        fa.usage(100, 40, cache_read=2000, cache_5m=300, cache_1h=50),
        fa.usage(7, 3, inference_geo="us", speed="fast"),
        fa.usage(7, 3, server_tool_use={"web_search_requests": 2, "web_fetch_requests": 1}),
        {"input_tokens": 5, "output_tokens": 6},  # no cache fields, no TTL split, no tier
    ],
)
def test_sdk_message_read_in_bulk_matches_field_by_field(usage: dict[str, Any]) -> None:
    fast, general = _both_paths(_message(fa.message_body(usage_=usage)))
    assert fast == general  # same attributes, same values, same order
    assert dict(fast)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == usage["output_tokens"]


@pytest.mark.parametrize(
    "usage",
    [
        {**fa.usage(12, 34), "input_tokens": -1},  # a negative count is left out
        {**fa.usage(12, 34), "output_tokens": True},  # a bool is not a count
        {**fa.usage(12, 34), "cache_read_input_tokens": None},
        {**fa.usage(12, 34), "cache_creation_input_tokens": "9"},
    ],
)
def test_malformed_counts_are_left_out_as_before(usage: dict[str, Any]) -> None:
    fast, general = _both_paths(_message(fa.message_body(usage_=usage), validate=False))
    assert fast == general
    assert not any(value is True or value == -1 or value == "9" for _, value in fast)


def test_message_with_a_code_execution_container() -> None:
    body = fa.message_body(
        usage_=fa.usage(
            12, 34, server_tool_use={"web_search_requests": 1, "web_fetch_requests": 0}
        ),
        tool_uses=("code_execution", "web_search", "text_editor_code_execution"),
        container_=fa.container("container_x"),
    )
    fast, general = _both_paths(_message(body))
    assert fast == general
    assert dict(fast)[sc.CONTAINER_ID] == "container_x"
    assert dict(fast)[sc.CODE_EXECUTION_REQUESTS] == 2


def test_message_without_stop_reason_or_with_extra_usage_fields() -> None:
    body = fa.message_body(usage_={**fa.usage(12, 34), "a_future_field": 1})
    body["stop_reason"] = None
    fast, general = _both_paths(_message(body))
    assert fast == general
    assert sc.ANTHROPIC_STOP_REASON not in dict(fast)


def test_request_attributes_are_not_shared_between_requests(make_client, pipeline, mode) -> None:
    client = make_client()
    client.messages.create(model=MODEL, max_tokens=1, messages=MESSAGES)
    client.messages.create(model=MODEL, max_tokens=1, messages=MESSAGES)
    # True equals 1 in Python but is not a max_tokens: left out, as when first seen.
    client.messages.create(model=MODEL, max_tokens=True, messages=MESSAGES)
    client.messages.create(model="claude-other-model", max_tokens=1, messages=MESSAGES)
    with clauditor.feature("search", user_id="u-1", conversation_id="c-9"):
        client.messages.create(model=MODEL, max_tokens=1, messages=MESSAGES)
    first, second, as_bool, other_model, tagged = (
        dict(s.attributes or {}) for s in pipeline.call_spans()
    )
    assert first[sc.GEN_AI_REQUEST_MAX_TOKENS] == second[sc.GEN_AI_REQUEST_MAX_TOKENS] == 1
    assert first[sc.GEN_AI_RESPONSE_ID] != second[sc.GEN_AI_RESPONSE_ID]
    if mode == "own":  # the SDK's own span (native mode) records max_tokens its own way
        assert sc.GEN_AI_REQUEST_MAX_TOKENS not in as_bool
    assert other_model[sc.GEN_AI_REQUEST_MODEL] == "claude-other-model"
    assert first[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert sc.FEATURE not in second
    assert tagged[sc.FEATURE] == "search"
    assert tagged[sc.USER_ID] == "u-1"
    assert tagged[sc.GEN_AI_CONVERSATION_ID] == "c-9"
