"""Server tool counts, the code execution container and the cloud region become columns.

By hand-written spans with hand-computed rows through the general normalizer, then the same
spans (and hostile variants) through the fast path and the parallel engine, which must give
the very same rows and verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from clauditor import semconv as sc
from clauditor.ingest import normalize
from clauditor.ingest.fastpath import GENERIC, request_spans, span_row
from clauditor.ingest.normalize import ROW_COLUMNS
from clauditor.store import load_calls

from .engine_parity import assert_same
from .otlp_fixtures import SDK_CACHED_CALL, line, span
from .test_fastpath import _compare
from .test_normalize import _rejected, record, row_of

OWN_CALL: dict[str, Any] = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-haiku-4-5",
    "gen_ai.response.id": "msg_tools01",
    "clauditor.operation": "chat",
    "clauditor.usage.input_tokens": 1000,
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 50,
    sc.WEB_SEARCH_REQUESTS: 3,
    sc.WEB_FETCH_REQUESTS: 1,
    sc.CODE_EXECUTION_REQUESTS: 2,
    sc.CONTAINER_ID: "container_011CRxyz",
    sc.CLOUD_REGION: "us-east5",
}


def test_own_span_fills_the_server_tool_columns() -> None:
    row = row_of(OWN_CALL, scope="clauditor")
    assert row["source"] == "clauditor"
    assert row["web_search_requests"] == 3
    assert row["web_fetch_requests"] == 1
    assert row["code_execution_requests"] == 2
    assert row["container_id"] == "container_011CRxyz"
    assert row["cloud_region"] == "us-east5"
    stored = orjson.loads(row["attributes"])
    assert not {sc.WEB_SEARCH_REQUESTS, sc.CONTAINER_ID, sc.CLOUD_REGION} & set(stored)


def test_calls_without_server_tools_leave_the_columns_null() -> None:
    row = row_of(SDK_CACHED_CALL)
    for column in ("web_search_requests", "web_fetch_requests", "code_execution_requests"):
        assert row[column] is None
    assert row["container_id"] is None
    assert row["cloud_region"] is None


def test_counts_as_strings_are_read_and_broken_ones_rejected() -> None:
    rec = record(OWN_CALL, scope="clauditor")
    rec.attributes[sc.WEB_SEARCH_REQUESTS] = "4"
    assert (normalize(rec) or {})["web_search_requests"] == 4
    rec.attributes[sc.WEB_SEARCH_REQUESTS] = "many"
    assert f"{sc.WEB_SEARCH_REQUESTS} is not an integer: 'many'" in _rejected(rec)
    rec.attributes[sc.WEB_SEARCH_REQUESTS] = -1
    assert f"{sc.WEB_SEARCH_REQUESTS} is negative" in _rejected(rec)


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("us-east5-aiplatform.googleapis.com", "us-east5"),
        ("europe-west1-aiplatform.googleapis.com", "europe-west1"),
        ("aiplatform.googleapis.com", "global"),
        ("aiplatform.eu.rep.googleapis.com", "eu"),
        ("bedrock-runtime.eu-west-1.amazonaws.com", "eu-west-1"),
        ("Bedrock-Runtime.US-EAST-1.amazonaws.com", "us-east-1"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("vpce-0a1b.bedrock-runtime.ap-northeast-1.vpce.amazonaws.com", "ap-northeast-1"),
        ("bedrock.us-west-2.amazonaws.com", "us-west-2"),
        ("api.anthropic.com", None),
        ("127.0.0.1", None),
        ("aiplatform.googleapis.com.evil.example", None),
    ],
)
def test_region_from_the_sdk_spans_server_address(host: str, region: str | None) -> None:
    # The anthropic SDK's own span names the host it called; Bedrock/Vertex hosts name a region.
    row = row_of({**SDK_CACHED_CALL, "server.address": host})
    assert row["cloud_region"] == region
    assert orjson.loads(row["attributes"])["server.address"] == host  # kept as it came


def test_span_region_wins_and_resource_region_is_not_read() -> None:
    attrs = {**SDK_CACHED_CALL, "server.address": "bedrock-runtime.eu-west-1.amazonaws.com"}
    assert row_of({**attrs, sc.CLOUD_REGION: "eu-central-1"})["cloud_region"] == "eu-central-1"
    # An app running in us-east-1 calling the first-party API: not a regional Bedrock call.
    resource = {"service.name": "bot", "cloud.region": "us-east-1", "cloud.provider": "aws"}
    plain = {**SDK_CACHED_CALL, "server.address": "api.anthropic.com"}
    assert row_of(plain, resource=resource)["cloud_region"] is None


# --- the three ingest paths agree ----------------------------------------------------------


def _variants() -> list[dict[str, Any]]:
    sdk = {**SDK_CACHED_CALL, "server.address": "us-east5-aiplatform.googleapis.com"}
    own = dict(OWN_CALL)
    cases: list[dict[str, Any]] = [
        own,
        sdk,
        {**sdk, "server.address": "bedrock-runtime.eu-west-1.amazonaws.com"},
        {**sdk, "server.address": "aiplatform.googleapis.com"},
        {**sdk, "server.address": "api.anthropic.com"},
        {**sdk, sc.CLOUD_REGION: "global"},
        {**own, sc.CLOUD_REGION: ""},
        {**own, sc.WEB_SEARCH_REQUESTS: 0, sc.WEB_FETCH_REQUESTS: 0},
        {**own, sc.CODE_EXECUTION_REQUESTS: 100_000_001},
        {**own, sc.WEB_FETCH_REQUESTS: "2"},
        {**own, sc.WEB_FETCH_REQUESTS: "x"},
        {**own, sc.WEB_SEARCH_REQUESTS: -2},
        {**own, sc.WEB_SEARCH_REQUESTS: 1.0},
        {**own, sc.CLOUD_REGION: 5},
        {**own, sc.CONTAINER_ID: True},
        {**own, sc.CONTAINER_ID: "sk-ant-api03-" + "x" * 30},
        {**sdk, "server.address": 443},
    ]
    return cases


def _spans_of(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spans = []
    for n, attributes in enumerate(variants):
        attributes = {**attributes, "gen_ai.response.id": f"msg_variant{n:03d}"}
        spans.append(span(f"00f067aa0ba9{n:04x}", attributes))
    return spans


def test_the_fast_path_gives_the_general_rows() -> None:
    spans = _spans_of(_variants())
    for scope in ("clauditor", sc.ANTHROPIC_SCOPE, "some.genai.lib"):
        decided, _ = _compare(request_spans(orjson.loads(line(*spans, scope=scope))) or [])
        assert decided >= 6  # the well-formed ones are the fast path's to decide
    fast = span_row(spans[0], {}, "clauditor", (sc.FEATURE,))
    assert fast is not GENERIC
    names = ("web_search_requests", "web_fetch_requests", "code_execution_requests")
    got = dict(zip(ROW_COLUMNS, fast, strict=True))
    assert [got[n] for n in (*names, "container_id", "cloud_region")] == [
        3,
        1,
        2,
        "container_011CRxyz",
        "us-east5",
    ]


def test_the_parallel_engine_stores_the_same_rows(tmp_path: Path) -> None:
    spans = _spans_of(_variants())
    src = tmp_path / "tools.jsonl"
    src.write_text(
        "".join(line(s, scope=scope) for s in spans for scope in ("clauditor", "x.lib"))
        + line(*spans[:6])  # several spans in one line, some for each path
    )
    summary = assert_same([src], tmp_path, engine="parallel")
    assert summary.rejected >= 4 and summary.calls_written >= 10
    stored = load_calls(tmp_path / "parallel.duckdb")
    assert (3, 1, 2, "container_011CRxyz", "us-east5") in stored.select(
        "web_search_requests", "web_fetch_requests", "code_execution_requests", "container_id",
        "cloud_region",
    ).rows()  # fmt: skip
