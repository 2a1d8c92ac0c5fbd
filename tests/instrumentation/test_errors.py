"""Failed calls: recorded with their error type, and the app sees exactly the SDK's exception."""

from __future__ import annotations

import re
import socket

import anthropic
import pytest

from clauditor import semconv as sc
from clauditor.instrumentation import AnthropicInstrumentor
from tests import fakeanthropic as fa

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]


def _call(client: anthropic.Anthropic) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)


def test_429_with_retry_after_then_success(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.error(429, "rate_limit_error", "slow down", retry_after=0.001), fa.message())
    msg = _call(make_client())
    assert msg.type == "message"
    a = pipeline.one()
    assert a[sc.HTTP_REQUEST_RESEND_COUNT] == 1
    assert a[sc.HTTP_RESPONSE_STATUS_CODE] == 200
    assert sc.ERROR_TYPE not in a
    assert pipeline.call_spans()[0].status.is_ok


def test_529_exhausted(make_client, fake, pipeline) -> None:
    fake.enqueue(*[fa.error(529, "overloaded_error", "Overloaded", retry_after=0.001)] * 3)
    with pytest.raises(anthropic.APIStatusError) as info:
        _call(make_client(max_retries=2))
    assert info.value.status_code == 529
    a = pipeline.one()
    assert a[sc.ERROR_TYPE] == "overloaded_error"
    assert a[sc.HTTP_RESPONSE_STATUS_CODE] == 529
    assert a[sc.HTTP_REQUEST_RESEND_COUNT] == 2
    span = pipeline.call_spans()[0]
    assert not span.status.is_ok and span.status.status_code.name == "ERROR"


def test_400_invalid_request(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.error(400, "invalid_request_error", "max_tokens: too large"))
    with pytest.raises(anthropic.BadRequestError):
        _call(make_client())
    a = pipeline.one()
    assert a[sc.ERROR_TYPE] == "invalid_request_error"
    assert a[sc.HTTP_RESPONSE_STATUS_CODE] == 400


def test_timeout(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.Reply(body=fa.message_body(), delay_s=1.0))
    with pytest.raises(anthropic.APITimeoutError):
        _call(make_client(timeout=0.2, max_retries=0))
    assert pipeline.one()[sc.ERROR_TYPE] == "client_timeout_error"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused(make_client, pipeline) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=0)
    with pytest.raises(anthropic.APIConnectionError):
        _call(client)
    assert pipeline.one()[sc.ERROR_TYPE] == "connection_error"


def _failure(client_factory, reply) -> tuple[type, str, object, object]:
    try:
        _call(client_factory())
    except anthropic.APIError as exc:
        # The fake server numbers its request ids, and SDK 2.17 quotes the id in the message:
        # two calls differ there, whatever the instrumentation does.
        message = re.sub(r"req_fake\d+", "req_fake<n>", str(exc))
        return type(exc), message, getattr(exc, "status_code", None), getattr(exc, "body", None)
    raise AssertionError("expected an error")


@pytest.mark.parametrize(
    "reply",
    [
        fa.error(529, "overloaded_error", "Overloaded"),
        fa.error(400, "invalid_request_error", "bad"),
        fa.error(500, "api_error", "Internal"),
    ],
    ids=["529", "400", "500"],
)
def test_app_sees_the_same_exception_as_uninstrumented(make_client, fake, pipeline, reply) -> None:
    fake.enqueue(reply)
    instrumented = _failure(lambda: make_client(max_retries=0), reply)
    AnthropicInstrumentor().uninstrument()
    fake.enqueue(reply)
    plain = _failure(lambda: make_client(max_retries=0), reply)
    assert instrumented == plain
