"""messages.create / messages.stream through the real SDK against the fake server."""

from __future__ import annotations

import asyncio

import pytest

import clauditor
from clauditor import semconv as sc
from tests import fakeanthropic as fa

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_create_records_usage_in_both_meanings(make_client, fake, pipeline) -> None:
    # uncached 100 + cache read 2000 + cache writes (300 5m + 50 1h) = 2450 inclusive
    fake.enqueue(
        fa.message(usage_=fa.usage(100, 40, cache_read=2000, cache_5m=300, cache_1h=50)),
    )
    client = make_client()
    msg = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert msg.usage.output_tokens == 40
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 2450
    assert a[sc.INPUT_TOKENS_UNCACHED] == 100
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 40
    assert a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2000
    assert a[sc.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS] == 350
    assert a[sc.ANTHROPIC_CACHE_5M_INPUT_TOKENS] == 300
    assert a[sc.ANTHROPIC_CACHE_1H_INPUT_TOKENS] == 50
    assert a[sc.ANTHROPIC_RESPONSE_SERVICE_TIER] == "standard"
    assert a[sc.ANTHROPIC_STOP_REASON] == "end_turn"
    assert a[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert a[sc.GEN_AI_RESPONSE_MODEL] == "claude-haiku-4-5-20251001"
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert a[sc.GEN_AI_REQUEST_STREAM] is False
    assert a[sc.HTTP_RESPONSE_STATUS_CODE] == 200
    assert a[sc.OPERATION] == "chat"
    assert sc.HTTP_REQUEST_RESEND_COUNT not in a
    assert a[sc.GEN_AI_RESPONSE_ID] == msg.id
    assert a[sc.ANTHROPIC_REQUEST_ID].startswith("req_fake")


def test_inference_geo_and_speed_from_usage(make_client, fake, pipeline) -> None:
    # Usage fields the SDK's own span leaves out reach the span, whole or streamed.
    extra = {"inference_geo": "us", "speed": "fast"}
    fake.enqueue(fa.message(usage_=fa.usage(10, 5, **extra)))
    fake.enqueue(fa.stream(start_usage=fa.usage(10, 1, **extra), final_usage={"output_tokens": 9}))
    client = make_client()
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    for _ in client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES, stream=True):
        pass
    whole, streamed = (dict(s.attributes or {}) for s in pipeline.call_spans())
    for a in (whole, streamed):
        assert a[sc.INFERENCE_GEO] == "us"
        assert a[sc.SPEED] == "fast"
        assert a[sc.INPUT_TOKENS_UNCACHED] == 10
    assert streamed[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 9


def test_exactly_one_span_carries_usage(make_client, pipeline) -> None:
    make_client().messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    with_usage = [
        s for s in pipeline.spans() if sc.GEN_AI_USAGE_OUTPUT_TOKENS in (s.attributes or {})
    ]
    assert len(with_usage) == 1
    assert len(pipeline.spans()) == 1


def test_feature_user_and_code_location(make_client, pipeline) -> None:
    client = make_client()
    with clauditor.feature("summarize", user_id="u-42", team="growth"):
        client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    tagged, untagged = (dict(s.attributes or {}) for s in pipeline.call_spans())
    assert tagged[sc.FEATURE] == "summarize"
    assert tagged[sc.USER_ID] == "u-42"
    assert tagged[sc.TAG_PREFIX + "team"] == "growth"
    assert sc.FEATURE not in untagged
    here = f"{__name__}:test_feature_user_and_code_location"
    assert untagged[sc.CODE_LOCATION] == here


def test_max_tokens_absent_when_not_set(make_client, pipeline) -> None:
    # count_tokens has no max_tokens: the attribute must be absent, not 0
    make_client().messages.count_tokens(model=MODEL, messages=MESSAGES)
    a = pipeline.one()
    assert sc.GEN_AI_REQUEST_MAX_TOKENS not in a
    assert a[sc.OPERATION] == "count_tokens"
    assert a[sc.ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS] == 42


def test_async_create(make_async_client, fake, pipeline) -> None:
    fake.enqueue(fa.message(usage_=fa.usage(7, 9)))

    async def main() -> int:
        client = make_async_client()
        async with clauditor.feature("async-feature"):
            msg = await client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        return msg.usage.output_tokens

    assert asyncio.run(main()) == 9
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 9
    assert a[sc.INPUT_TOKENS_UNCACHED] == 7
    assert a[sc.FEATURE] == "async-feature"


def test_stream_counts_final_delta_not_placeholder(make_client, fake, pipeline) -> None:
    # message_start says output_tokens=1 (placeholder); message_delta says 201 (cumulative): 201
    fake.enqueue(
        fa.stream(start_usage=fa.usage(50, 1, cache_read=10), final_usage={"output_tokens": 201})
    )
    client = make_client()
    text = ""
    for event in client.messages.create(
        model=MODEL, max_tokens=300, messages=MESSAGES, stream=True
    ):
        if event.type == "content_block_delta":
            text += event.delta.text
    assert text == "Hello!"
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 201
    assert a[sc.INPUT_TOKENS_UNCACHED] == 50
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 60  # 50 uncached + 10 cache read
    assert a[sc.GEN_AI_REQUEST_STREAM] is True
    assert a[sc.STREAM_OUTCOME] == "completed"
    assert a[sc.TTFT_MS] >= 0
    assert pipeline.call_spans()[0].status.is_ok


def test_stream_helper_text_stream_and_final_message(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.stream(final_usage={"output_tokens": 77}))
    client = make_client()
    with (
        clauditor.feature("helper"),
        client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream,
    ):
        assert "".join(stream.text_stream) == "Hello!"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 77
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 77
    assert a[sc.FEATURE] == "helper"
    assert a[sc.STREAM_OUTCOME] == "completed"


def test_stream_abandoned_early_still_ends_span(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.stream(chunks=tuple("abcdefgh")))
    client = make_client()
    with client.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
    a = pipeline.one()
    assert a[sc.STREAM_OUTCOME] == "abandoned"
    assert sc.GEN_AI_USAGE_OUTPUT_TOKENS not in a  # only the placeholder was seen


def test_stream_error_event_mid_stream(make_client, fake, pipeline) -> None:
    events = fa.stream_events()[:3] + [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    ]
    fake.enqueue(fa.Reply(kind="sse", events=events))
    client = make_client()
    import anthropic

    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in client.messages.create(
            model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
        ):
            pass
    assert "overloaded_error" in str(info.value)
    a = pipeline.one()
    assert a[sc.ERROR_TYPE] == "overloaded_error"
    assert a[sc.STREAM_OUTCOME] == "error"
    assert not pipeline.call_spans()[0].status.is_ok


def test_async_stream_helper(make_async_client, fake, pipeline) -> None:
    fake.enqueue(fa.stream(final_usage={"output_tokens": 201}))

    async def main() -> str:
        client = make_async_client()
        async with client.messages.stream(model=MODEL, max_tokens=9, messages=MESSAGES) as s:
            return "".join([t async for t in s.text_stream])

    assert asyncio.run(main()) == "Hello!"
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 201
    assert a[sc.STREAM_OUTCOME] == "completed"
