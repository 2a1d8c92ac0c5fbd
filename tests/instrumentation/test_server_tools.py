"""Server tools (web search, web fetch, code execution) and the cloud region reach the call span.

Through the real SDK against the fake server, in both modes (the SDK's own span enriched, and
clauditor's span): whole, streamed and batch results, beta messages, raw responses, and an
``AnthropicVertex`` client whose region is read from the client.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import anthropic
import pytest

from clauditor import semconv as sc
from clauditor.instrumentation._attributes import client_region
from tests import fakeanthropic as fa

from .conftest import API_KEY, SDK_HAS_SPANS

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "search the web"}]


def _tools_usage(searches: int, fetches: int = 0, **kw: Any) -> dict[str, Any]:
    tools = {"web_search_requests": searches, "web_fetch_requests": fetches}
    return fa.usage(1000, 50, server_tool_use=tools, **kw)


def _assert_tools(a: dict[str, Any], searches: int, fetches: int, code: int | None) -> None:
    assert a[sc.WEB_SEARCH_REQUESTS] == searches
    assert a[sc.WEB_FETCH_REQUESTS] == fetches
    if code is None:
        assert sc.CODE_EXECUTION_REQUESTS not in a
        assert sc.CONTAINER_ID not in a
    else:
        assert a[sc.CODE_EXECUTION_REQUESTS] == code
        assert a[sc.CONTAINER_ID] == "container_fake01"


def test_create_records_server_tool_use_and_container(make_client, fake, pipeline) -> None:
    # 3 searches and 1 fetch from usage; code execution ran twice (two code execution tool
    # uses, the web_search use is not one) in the container the response names.
    fake.enqueue(
        fa.message(
            usage_=_tools_usage(3, 1),
            tool_uses=("web_search", "code_execution", "bash_code_execution"),
            container_=fa.container(),
        )
    )
    msg = make_client().messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert msg.usage.server_tool_use.web_search_requests == 3
    a = pipeline.one()
    _assert_tools(a, 3, 1, 2)
    assert a[sc.INPUT_TOKENS_UNCACHED] == 1000  # the token attributes are untouched
    assert sc.CLOUD_REGION not in a  # the first-party API has no cloud region


def test_plain_call_has_no_server_tool_attributes(make_client, pipeline) -> None:
    make_client().messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    a = pipeline.one()
    for key in (sc.WEB_SEARCH_REQUESTS, sc.WEB_FETCH_REQUESTS, sc.CODE_EXECUTION_REQUESTS):
        assert key not in a
    assert sc.CONTAINER_ID not in a


def test_stream_takes_the_final_cumulative_count(make_client, fake, pipeline) -> None:
    # message_start says 1 search so far; message_delta's cumulative usage says 2 in all: 2, not 3
    fake.enqueue(
        fa.stream(
            start_usage=fa.usage(1000, 1, server_tool_use={"web_search_requests": 1,
                                                           "web_fetch_requests": 0}),
            final_usage={"output_tokens": 40,
                         "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1}},
            tool_uses=("web_search", "code_execution"),
            container_=fa.container(),
        )
    )  # fmt: skip
    for _ in make_client().messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
    ):
        pass
    a = pipeline.one()
    _assert_tools(a, 2, 1, 1)
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 40


def test_stream_helper_and_async(make_client, make_async_client, fake, pipeline) -> None:
    def reply() -> fa.Reply:
        return fa.stream(
            start_usage=fa.usage(1000, 1),
            final_usage={"output_tokens": 9,
                         "server_tool_use": {"web_search_requests": 4, "web_fetch_requests": 0}},
        )  # fmt: skip

    fake.enqueue(reply(), reply())
    with make_client().messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
        s.get_final_message()

    async def main() -> None:
        client = make_async_client()
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
            await s.get_final_message()

    asyncio.run(main())
    spans = pipeline.call_spans()
    assert len(spans) == 2
    for span in spans:
        _assert_tools(dict(span.attributes or {}), 4, 0, None)


def test_beta_raw_and_async_create(make_client, make_async_client, fake, pipeline, mode) -> None:
    body = {
        "usage_": _tools_usage(5),
        "tool_uses": ("code_execution",),
        "container_": fa.container(),
    }
    fake.enqueue(fa.message(**body), fa.message(**body), fa.message(**body))
    client = make_client()
    client.beta.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    raw.parse()

    async def main() -> None:
        await make_async_client().messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    asyncio.run(main())
    beta, raw_span, async_span = (dict(s.attributes or {}) for s in pipeline.call_spans())
    _assert_tools(beta, 5, 0, 1)
    _assert_tools(async_span, 5, 0, 1)
    if mode == "native" and anthropic.__version__.startswith("1."):
        # anthropic 1.x records a raw response's Message on its span without the content: the
        # container is known, the count of its tool uses is not (left out, never a wrong 0).
        assert raw_span[sc.CONTAINER_ID] == "container_fake01"
        assert sc.CODE_EXECUTION_REQUESTS not in raw_span
    else:
        _assert_tools(raw_span, 5, 0, 1)


def test_batch_results_carry_server_tool_use(make_client, fake, pipeline) -> None:
    body = fa.message_body(usage_=_tools_usage(7, 2, service_tier="batch"))
    fake.add_batch("msgbatch_tools", [{"custom_id": "a", "result": {"type": "succeeded",
                                                                    "message": body}}])  # fmt: skip
    list(make_client().messages.batches.results("msgbatch_tools"))
    (span,) = [s for s in pipeline.call_spans() if s.attributes.get(sc.OPERATION) == "batch"]
    _assert_tools(dict(span.attributes or {}), 7, 2, None)


# --- cloud region -----------------------------------------------------------------------------

_VERTEX_TRACES = (
    "open_telemetry" in inspect.signature(anthropic.AnthropicVertex.__init__).parameters
)


def _vertex(fake: fa.FakeAnthropic, pipeline: Any, mode: str, region: str, cls: Any) -> Any:
    kwargs: dict[str, Any] = {
        "region": region,
        "project_id": "proj-1",
        "access_token": "ya29.fake-token-NEVERSTORED",
        "base_url": fake.base_url,  # the host says nothing: the region comes from the client
        "max_retries": 0,
    }
    if SDK_HAS_SPANS and _VERTEX_TRACES:
        kwargs["open_telemetry"] = (
            {"tracer_provider": pipeline.provider} if mode == "native" else False
        )
    elif mode == "native":
        pytest.skip("this SDK's Vertex client makes no spans of its own")
    return cls(**kwargs)


@pytest.mark.parametrize("region", ["us-east5", "global"])
def test_vertex_client_region_reaches_the_span(fake, pipeline, mode, region) -> None:
    client = _vertex(fake, pipeline, mode, region, anthropic.AnthropicVertex)
    fake.enqueue(fa.message(usage_=_tools_usage(1)))
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    for _ in client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES, stream=True):
        pass
    assert fake.requests[0].path.startswith("/projects/proj-1/locations/")
    whole, streamed = (dict(s.attributes or {}) for s in pipeline.call_spans())
    assert whole[sc.CLOUD_REGION] == region
    assert streamed[sc.CLOUD_REGION] == region
    assert whole[sc.WEB_SEARCH_REQUESTS] == 1


def test_async_vertex_client_region(fake, pipeline, mode) -> None:
    client = _vertex(fake, pipeline, mode, "europe-west1", anthropic.AsyncAnthropicVertex)
    asyncio.run(client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES))
    assert pipeline.one()[sc.CLOUD_REGION] == "europe-west1"


def test_client_region_of_each_client_kind() -> None:
    # Read from the client's public attributes: no request needed (Bedrock's signing needs
    # botocore, which the tests do not install).
    bedrock = anthropic.AnthropicBedrock(
        aws_region="eu-west-1", aws_access_key="AKIAFAKE", aws_secret_key="fake-NEVERSTORED"
    )
    assert client_region(bedrock) == "eu-west-1"
    assert client_region(bedrock.with_options(timeout=5.0)) == "eu-west-1"
    vertex = anthropic.AnthropicVertex(region="global", project_id="p", access_token="t")
    assert client_region(vertex) == "global"
    assert client_region(anthropic.Anthropic(api_key=API_KEY)) is None
    assert client_region(None) is None


def test_vertex_web_search_call_is_priced_in_the_database(fake, pipeline, mode, tmp_path) -> None:
    """SDK call -> span -> DuckDB row: the counts, the container and the region are columns,
    and pricing reads them (Haiku 4.5 on a regional endpoint, 3 web searches)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from clauditor.ingest.exporter import DuckDBSpanExporter
    from clauditor.store import read_connection

    db = tmp_path / "calls.duckdb"
    pipeline.provider.add_span_processor(SimpleSpanProcessor(DuckDBSpanExporter(db)))
    client = _vertex(fake, pipeline, mode, "us-east5", anthropic.AnthropicVertex)
    fake.enqueue(
        fa.message(
            usage_=fa.usage(1000, 0, server_tool_use={"web_search_requests": 3,
                                                      "web_fetch_requests": 0}),
            tool_uses=("web_search", "code_execution"),
            container_=fa.container(),
        )
    )  # fmt: skip
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    pipeline.provider.force_flush()
    with read_connection(db) as con:
        rows = con.execute(
            "SELECT web_search_requests, web_fetch_requests, code_execution_requests,"
            " container_id, cloud_region, cost_tools_usd, cost_usd FROM calls"
        ).fetchall()
    assert len(rows) == 1
    searches, fetches, code, container, region, tools, total = rows[0]
    assert (searches, fetches, code, container, region) == (3, 0, 1, "container_fake01", "us-east5")
    assert tools == pytest.approx(0.03)  # 3 x $10 / 1,000
    assert total == pytest.approx(0.0311)  # 1,000 x $1/MTok x 1.1 (regional) + $0.03
