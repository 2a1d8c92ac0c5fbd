"""The rest of the SDK surface: parse, beta, raw responses, with_options, batches, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clauditor import semconv as sc
from tests import fakeanthropic as fa

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_with_options_copy_is_traced(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.message(usage_=fa.usage(5, 6)))
    client = make_client().with_options(timeout=5.0)
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert pipeline.one()[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 6


def test_with_raw_response(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.message(usage_=fa.usage(5, 7)))
    raw = make_client().messages.with_raw_response.create(
        model=MODEL, max_tokens=8, messages=MESSAGES
    )
    assert raw.headers.get("request-id", "").startswith("req_fake")
    assert raw.parse().usage.output_tokens == 7
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert a[sc.INPUT_TOKENS_UNCACHED] == 5


def test_beta_messages(make_client, fake, pipeline) -> None:
    fake.enqueue(fa.message(usage_=fa.usage(3, 4, cache_read=10)))
    make_client().beta.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    a = pipeline.one()
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 13  # 3 uncached + 10 cache read
    assert a[sc.INPUT_TOKENS_UNCACHED] == 3


def test_messages_parse(make_client, fake, pipeline) -> None:
    client = make_client()
    if not hasattr(client.messages, "parse"):
        pytest.skip("this SDK generation has no messages.parse")
    fake.enqueue(fa.message(text='{"x": 1}', usage_=fa.usage(8, 9)))
    client.messages.parse(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert pipeline.one()[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 9


def _result(custom_id: str, out: int) -> dict:
    body = fa.message_body(usage_=fa.usage(100, out, service_tier="batch"))
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": body}}


def test_batch_results_become_batch_calls(make_client, fake, pipeline) -> None:
    fake.add_batch(
        "msgbatch_1",
        [
            _result("a", 10),
            _result("b", 20),
            {"custom_id": "c", "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "invalid_request_error", "message": "x"}}}},
            {"custom_id": "d", "result": {"type": "expired"}},
        ],
    )  # fmt: skip
    ids = [r.custom_id for r in make_client().messages.batches.results("msgbatch_1")]
    assert ids == ["a", "b", "c", "d"]
    batch = [s for s in pipeline.call_spans() if s.attributes.get(sc.OPERATION) == "batch"]
    assert [s.attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS) for s in batch] == [10, 20, None]
    assert batch[0].attributes[sc.ANTHROPIC_RESPONSE_SERVICE_TIER] == "batch"
    assert batch[2].attributes[sc.ERROR_TYPE] == "invalid_request_error"


def test_async_count_tokens(make_async_client, pipeline) -> None:
    async def main() -> int:
        res = await make_async_client().messages.count_tokens(model=MODEL, messages=MESSAGES)
        return res.input_tokens

    assert asyncio.run(main()) == 42
    assert pipeline.one()[sc.OPERATION] == "count_tokens"


def test_metrics_by_feature(make_client, fake, pipeline) -> None:
    import clauditor

    fake.enqueue(fa.message(usage_=fa.usage(100, 40, cache_read=900)))
    with clauditor.feature("search"):
        make_client().messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    data = pipeline.reader.get_metrics_data()
    points = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    points.setdefault(metric.name, []).append(p)
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points[sc.GEN_AI_CLIENT_TOKEN_USAGE]}
    assert tokens["input"].sum == 1000  # 100 uncached + 900 cache read: semconv is inclusive
    assert tokens["output"].sum == 40
    assert tokens["input"].attributes[sc.FEATURE] == "search"
    assert tuple(tokens["input"].explicit_bounds)[:3] == (1, 4, 16)
    (duration,) = points[sc.GEN_AI_CLIENT_OPERATION_DURATION]
    assert duration.count == 1 and duration.attributes[sc.FEATURE] == "search"


def test_batch_reads_through_the_db_give_one_row_per_result(
    make_client, fake, pipeline, tmp_path
) -> None:
    """Only the results are calls: the SDK's retrieve/results GET spans carry no usage."""
    import duckdb
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from clauditor.ingest.exporter import DuckDBSpanExporter

    db = tmp_path / "calls.duckdb"
    pipeline.provider.add_span_processor(SimpleSpanProcessor(DuckDBSpanExporter(db)))
    fake.add_batch("msgbatch_2", [_result("a", 10), _result("b", 20)])
    client = make_client()
    assert client.messages.batches.retrieve("msgbatch_2").processing_status == "ended"
    assert [r.custom_id for r in client.messages.batches.results("msgbatch_2")] == ["a", "b"]
    pipeline.provider.force_flush()
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT operation, input_tokens, output_tokens FROM calls ORDER BY output_tokens"
    ).fetchall()
    con.close()
    assert rows == [("batch", 100, 10), ("batch", 100, 20)]


LATE_METER_APP = """
import inspect, sys
import anthropic
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from clauditor.instrumentation import AnthropicInstrumentor

AnthropicInstrumentor().instrument(tracer_provider=TracerProvider(), skip_dep_check=True)
kw = {"base_url": sys.argv[1], "api_key": "sk-ant-test-x", "max_retries": 0}
if "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters:
    kw["open_telemetry"] = False
client = anthropic.Anthropic(**kw)
ask = lambda: client.messages.create(
    model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
)
ask()  # no meter provider yet: the point has nowhere to go
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
ask()
ask()
print(sum(
    p.count
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics if m.name == "gen_ai.client.operation.duration"
    for p in m.data.data_points
))
"""


def test_metrics_reach_a_meter_provider_set_after_instrument(tmp_path) -> None:
    # The global meter provider is process-wide and set once, hence a process of its own.
    import subprocess
    import sys

    from tests.fakeanthropic import FakeAnthropic

    app = tmp_path / "app.py"
    app.write_text(LATE_METER_APP)
    with FakeAnthropic() as fake:
        done = subprocess.run(
            [sys.executable, str(app), fake.base_url],
            capture_output=True, text=True, timeout=60, cwd=str(Path(__file__).parents[2]),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
