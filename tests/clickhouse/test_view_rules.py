"""The view against the Python path on spans made to reach every pricing and parsing rule.

The convention corpus has few fast-mode, US-only, regional, tiered, server-tool or malformed
calls; these spans have them for every rate card: each card's model at a day it is in force,
in each variant (fast, ``inference_geo = us``, a Bedrock regional id, a Vertex host, the Batch
tier, a prompt over each tier threshold, the 5m/1h split, an unsplit write, web search and
fetch, count_tokens), plus unknown models, lenient values that do not parse, secrets in values
and keys, and spans the Python path rejects (which the view skips).
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

from clauditor import semconv as sc
from clauditor.clickhouse import ClickHouse, init
from clauditor.pricing import price_calls
from clauditor.rate_cards import load_price_table
from clauditor.schema import frame_from_rows

from ..ingest.otlp_fixtures import line, span
from .test_view import CONFIG, _clickhouse_rows, _differences, _insert_spans, _python_rows

_ids = (f"{i:016x}" for i in itertools.count(0x1000))


def _day_ns(day: dt.date, offset: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()) * 10**9 + (
        offset * 1_000_000
    )


def _variants(model: str, above: int | None) -> list[dict[str, Any]]:
    base = {
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.INPUT_TOKENS_UNCACHED: 1200,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 340,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 5000,
        sc.ANTHROPIC_CACHE_WRITE_INPUT_TOKENS: 700,
        sc.FEATURE: "rules",
    }
    out = [
        base,
        {**base, sc.SPEED: "fast"},
        {**base, sc.INFERENCE_GEO: "us"},
        {**base, sc.GEN_AI_REQUEST_MODEL: f"us.anthropic.{model}-v1:0"},
        {**base, sc.GEN_AI_REQUEST_MODEL: f"global.anthropic.{model}-v1:0"},
        {**base, sc.SERVER_ADDRESS: "us-east5-aiplatform.googleapis.com"},
        {**base, sc.CLOUD_REGION: "global"},
        {**base, sc.ANTHROPIC_RESPONSE_SERVICE_TIER: "batch"},
        {**base, sc.ANTHROPIC_CACHE_5M_INPUT_TOKENS: 300, sc.ANTHROPIC_CACHE_1H_INPUT_TOKENS: 400},
        {**base, sc.ANTHROPIC_CACHE_5M_INPUT_TOKENS: 200},
        {**base, sc.WEB_SEARCH_REQUESTS: 3, sc.WEB_FETCH_REQUESTS: 2},
        {**base, sc.OPERATION: "count_tokens"},
        {
            **base,
            sc.SPEED: "fast",
            sc.INFERENCE_GEO: "us",
            sc.ANTHROPIC_RESPONSE_SERVICE_TIER: "batch",
        },
        {**base, sc.GEN_AI_RESPONSE_MODEL: f"{model}-20990101"},
    ]
    if above is not None:
        out.append({**base, sc.INPUT_TOKENS_UNCACHED: above - 5700 + 1})  # one over
        out.append({**base, sc.INPUT_TOKENS_UNCACHED: above - 5700})  # exactly at: not over
    return out


def _odd_spans(day: dt.date) -> list[dict[str, Any]]:
    model = "claude-sonnet-4-5"
    base = {sc.GEN_AI_REQUEST_MODEL: model, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10}
    attributes = [
        {**base, sc.GEN_AI_REQUEST_MODEL: "claude-unknown-9"},
        {**base, sc.GEN_AI_REQUEST_MAX_TOKENS: "lots", sc.GEN_AI_REQUEST_STREAM: "maybe"},
        {**base, sc.HTTP_RESPONSE_STATUS_CODE: "n/a", sc.HTTP_REQUEST_RESEND_COUNT: "two"},
        {**base, sc.TTFT_MS: "fast", "app.note": "key sk-ant-api03-abcdefghijklmnop here"},
        {**base, "x-api-key": "sk-ant-secret", "http.request.header.authorization": "Bearer x"},
        {**base, sc.FEATURE: "leak sk-ant-api03-zzzzzzzzzzzzzzzz", sc.USER_ID: "u1"},
        {**base, sc.ERROR_TYPE: "RateLimitError", sc.HTTP_RESPONSE_STATUS_CODE: 429},
        {**base, sc.GEN_AI_USAGE_INPUT_TOKENS: 900, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 950},
        {**base, sc.GEN_AI_RESPONSE_FINISH_REASONS: "max_tokens"},
        {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-5"},  # not Claude
        {**base, sc.GEN_AI_USAGE_OUTPUT_TOKENS: "12.5"},  # rejected by Python, skipped here
        {**base, sc.GEN_AI_USAGE_OUTPUT_TOKENS: -3},  # rejected
    ]
    return [
        span(next(_ids), a, start_ns=_day_ns(day, i), name="chat") for i, a in enumerate(attributes)
    ]


def _corpus(path: Path) -> Path:
    table = load_price_table()
    lines = []
    for card in table.cards:
        day = max(card.effective_from, dt.date(2025, 1, 1)) + dt.timedelta(days=3)
        above = card.tiers[-1].above if card.tiers else None
        spans = [
            span(next(_ids), attrs, start_ns=_day_ns(day, i))
            for i, attrs in enumerate(_variants(card.id, above))
        ]
        lines.append(line(*spans, scope=sc.CLAUDITOR_SCOPE))
    lines.append(line(*_odd_spans(dt.date(2025, 11, 3)), scope="some.other.instrumentation"))
    path.write_text("".join(lines))
    return path


def test_every_pricing_and_parsing_rule_gives_the_python_rows(
    ch: ClickHouse, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path / "rules.jsonl")
    init(ch, feature_attributes=CONFIG.feature_attributes)
    _insert_spans(ch, [corpus])
    python = _python_rows(tmp_path, [corpus])
    clickhouse = _clickhouse_rows(ch)
    assert set(clickhouse) == set(python)
    assert len(python) > 200
    rows = list(python.values())
    assert any(r["speed"] == "fast" and r["rate_input"] for r in rows)
    assert any(r["cost_tools_usd"] for r in rows)
    assert any(r["cost_usd"] is None for r in rows)  # the unknown model
    for span_id, want in python.items():
        assert _differences(want, clickhouse[span_id]) == [], (span_id, want["request_model"])


def test_a_cache_ttl_per_service_is_assumed_the_same_way(ch: ClickHouse, tmp_path: Path) -> None:
    # [pricing.cache_ttl_by_service]: unsplit cache writes of this service are priced as 1h.
    corpus = _corpus(tmp_path / "rules.jsonl")
    table = load_price_table(cache_ttl_by_service={"support-bot": "1h"})
    init(ch, table=table, feature_attributes=CONFIG.feature_attributes)
    _insert_spans(ch, [corpus])
    clickhouse = _clickhouse_rows(ch)
    python = price_calls(frame_from_rows(_python_rows(tmp_path, [corpus]).values()), table)
    assert "1h" in set(python["cache_ttl_assumed"].to_list())
    for want in python.to_dicts():
        assert _differences(want, clickhouse[want["span_id"]]) == [], want["span_id"]
