"""Spans from every instrumentation, as the real packages write them, become the right rows.

The fixtures in sample_logs/conventions/ were produced by running each instrumentation against
the fake Anthropic server (sample_logs/conventions/generate.py); expected.json beside each holds
the hand-checked rows (the arithmetic is in sample_logs/conventions/README.md). Every test
ingests through :func:`clauditor.ingest.ingest_paths` into a real DuckDB file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from clauditor.config import Config
from clauditor.ingest import ingest_paths
from clauditor.ingest.normalize import one_row_per_call
from clauditor.store import load_calls

FIXTURES = Path(__file__).resolve().parents[2] / "sample_logs" / "conventions"
SOURCES = ["openllmetry", "otel-genai", "openinference", "openlit", "overlap"]
# OpenLIT carries no feature of its own: the app copied baggage onto spans as `app.feature`,
# a team's own attribute name, which config names.
OPENLIT_CONFIG = Config(feature_attributes=("app.feature", "clauditor.feature"))


def _expected(source: str) -> dict[str, list[dict[str, Any]]]:
    return json.loads((FIXTURES / source / "expected.json").read_text())


def _ingest(paths: list[Path], db: Path, config: Config | None = None) -> list[dict[str, Any]]:
    ingest_paths(paths, db, config=config)
    return load_calls(db).sort("start_time").to_dicts()


@pytest.mark.parametrize("source", SOURCES)
def test_each_fixture_gives_its_expected_rows(source: str, tmp_path: Path) -> None:
    config = OPENLIT_CONFIG if source == "openlit" else None
    expected = _expected(source)
    assert expected, f"no expected rows for {source}"
    for name, rows in expected.items():
        got = _ingest([FIXTURES / source / name], tmp_path / f"{name}.duckdb", config)
        assert len(got) == len(rows), name
        for want, row in zip(rows, got, strict=True):
            for column, value in want.items():
                if column == "cost_usd" and value is not None:
                    assert row[column] == pytest.approx(value, abs=1e-12), (name, want["span_id"])
                else:
                    assert row[column] == value, (name, want["span_id"], column)
            assert row["end_time"] >= row["start_time"]
            assert "sk-ant-" not in row["attributes"]


def _by_span(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["span_id"]: r for r in rows}


def test_openllmetry_old_underscore_and_new_dotted_cache_names(tmp_path: Path) -> None:
    folder = FIXTURES / "openllmetry"
    old = _by_span(
        _ingest(
            [folder / "opentelemetry-instrumentation-anthropic-0.52.0.jsonl"],
            tmp_path / "old.duckdb",
        )
    )
    new = _by_span(
        _ingest(
            [folder / "opentelemetry-instrumentation-anthropic-0.62.4.jsonl"],
            tmp_path / "new.duckdb",
        )
    )
    raw_old = (folder / "opentelemetry-instrumentation-anthropic-0.52.0.jsonl").read_text()
    raw_new = (folder / "opentelemetry-instrumentation-anthropic-0.62.4.jsonl").read_text()
    assert "gen_ai.usage.cache_read_input_tokens" in raw_old
    assert "gen_ai.usage.cache_read.input_tokens" in raw_new
    for rows in (old, new):
        cached = next(r for r in rows.values() if r["request_model"] == "claude-sonnet-4-5")
        # gen_ai.usage.input_tokens 2350 is inclusive: 2350 - 2000 read - 300 written = 50.
        assert cached["input_tokens"] == 50
        assert (cached["cache_read_input_tokens"], cached["cache_creation_input_tokens"]) == (
            2000,
            300,
        )
        assert cached["source"] == "openllmetry"
        assert cached["feature"] == "support-chat"  # traceloop.association.properties.feature
        # Sonnet 4.5, $3 in / $15 out per MTok: 50 x 3 + 80 x 15 + 2000 x 0.30 (read, 0.1x)
        # + 300 x 3.75 (5-minute write, 1.25x) = 150 + 1200 + 600 + 1125 = 3075 $/MTok-units
        # -> $0.003075.
        assert cached["cost_usd"] == pytest.approx(0.003075, abs=1e-12)


def test_openinference_prompt_count_is_inclusive_and_metadata_is_the_feature(
    tmp_path: Path,
) -> None:
    rows = _ingest(list((FIXTURES / "openinference").glob("*.jsonl")), tmp_path / "oi.duckdb")
    stream = next(r for r in rows if r["stream"])
    # llm.token_count.prompt 1040 includes the 1000 cache read: 40 uncached.
    assert (stream["input_tokens"], stream["cache_read_input_tokens"]) == (40, 1000)
    assert stream["feature"] == "search-answer"  # from metadata {"feature": ...}
    assert stream["max_tokens"] == 512  # from llm.invocation_parameters
    # Haiku 4.5, $1 in / $5 out: 40 x 1 + 60 x 5 + 1000 x 0.10 = 40 + 300 + 100 -> $0.00044.
    assert stream["cost_usd"] == pytest.approx(0.00044, abs=1e-12)
    failed = next(r for r in rows if r["status"] == "error")
    # No error attribute: the type and status come from the span's status message.
    assert (failed["error_type"], failed["http_status"]) == ("rate_limit_error", 429)


def test_openlit_input_is_uncached_and_a_team_attribute_is_the_feature(tmp_path: Path) -> None:
    files = list((FIXTURES / "openlit").glob("*.jsonl"))
    rows = _ingest(files, tmp_path / "lit.duckdb", OPENLIT_CONFIG)
    cached = next(r for r in rows if r["request_model"] == "claude-sonnet-4-5")
    # OpenLIT writes Anthropic's own count (50) under gen_ai.usage.input_tokens: no subtraction.
    assert (cached["input_tokens"], cached["cache_read_input_tokens"]) == (50, 2000)
    assert cached["feature"] == "support-chat"
    assert cached["cost_usd"] == pytest.approx(0.003075, abs=1e-12)  # as computed above
    failed = next(r for r in rows if r["status"] == "error")
    assert failed["request_model"] == "claude-haiku-4-5"  # from the span name "chat <model>"
    untagged = _ingest(files, tmp_path / "default.duckdb")
    assert {r["feature"] for r in untagged} == {None}  # app.feature is not a default key


def test_official_otel_genai_spans_use_baggage_feature(tmp_path: Path) -> None:
    rows = _ingest(list((FIXTURES / "otel-genai").glob("*.jsonl")), tmp_path / "og.duckdb")
    plain = rows[0]
    assert plain["source"] == "otel-genai"
    assert plain["feature"] == "summarize"  # baggage.clauditor.feature
    # Haiku 4.5: 120 x $1 + 45 x $5 per MTok = 120 + 225 -> $0.000345.
    assert plain["cost_usd"] == pytest.approx(0.000345, abs=1e-12)
    failed = rows[-1]
    assert failed["error_type"] == "rate_limit_error"  # error.type anthropic.RateLimitError


def test_a_configured_attribute_wins_for_every_convention(tmp_path: Path) -> None:
    # A team that tags with its own key: traceloop's association property named in config.
    config = Config(feature_attributes=("traceloop.association.properties.feature",))
    rows = _ingest([FIXTURES / "overlap"], tmp_path / "cfg.duckdb", config)
    sdk_rows = [r for r in rows if r["source"] == "anthropic-sdk"]
    assert [r["feature"] for r in sdk_rows] == [
        "summarize",
        "support-chat",
        "search-answer",
        "summarize",
    ]


def test_all_conventions_together_give_one_row_per_call(tmp_path: Path) -> None:
    rows = load_calls_once(tmp_path)
    calls = one_row_per_call(rows)
    # 3 calls by OpenLLMetry 0.52 (it makes no span for the failed call), 4 each by
    # OpenLLMetry 0.62, otel-genai, OpenInference, OpenLIT, and 4 in the overlap fixture, where
    # the SDK's own span and OpenLLMetry's describe each call (8 spans). Ingest already merged
    # the three that share a response id. The failed call (no response id) has its two spans
    # in two traces in this fixture (each instrumentation ran under its own provider), so
    # nothing says they are one call: they stay two rows (the same call within one trace is
    # merged: tests/instrumentation/test_one_row_per_call_real.py).
    assert rows.height == 3 + 4 * 4 + 5
    assert calls.height == rows.height
    overlap = calls.filter(
        calls["service"].is_not_null()
        & calls["span_id"].is_in(
            [
                r["span_id"]
                for r in _expected("overlap")[
                    "opentelemetry-instrumentation-anthropic-0.62.4.jsonl"
                ]
            ]
        )
    )
    priced = overlap.filter(pl.col("status") == "ok")
    assert priced["source"].to_list() == ["anthropic-sdk"] * 3
    # The SDK's spans carry no feature; OpenLLMetry's did, and the kept row takes it.
    assert sorted(priced["feature"].to_list()) == ["search-answer", "summarize", "support-chat"]
    assert sorted(overlap.filter(pl.col("status") == "error")["source"].to_list()) == [
        "anthropic-sdk",
        "openllmetry",
    ]
    # Total spend counts each call once: the overlap's three priced calls once each.
    assert calls.filter(calls["span_id"].is_in(overlap["span_id"].implode()))[
        "cost_usd"
    ].sum() == pytest.approx(0.000345 + 0.003075 + 0.00044, abs=1e-12)


def load_calls_once(tmp_path: Path) -> Any:
    db = tmp_path / "all.duckdb"
    files = sorted(FIXTURES.glob("*/*.jsonl"))  # (a folder would also read expected.json)
    first = ingest_paths(files, db)
    assert first.rejected == 0
    again = ingest_paths(files, db)  # re-ingest: span_id dedupes
    assert again.calls_written == 0
    return load_calls(db)


def test_both_ingest_engines_store_the_same_rows(tmp_path: Path) -> None:
    # The parallel engine's workers decide the spans with the same readers: same rows.
    files = sorted(FIXTURES.glob("*/*.jsonl"))
    frames = {}
    for engine in ("python", "parallel"):
        db = tmp_path / f"{engine}.duckdb"
        ingest_paths(files, db, config=OPENLIT_CONFIG, engine=engine)
        frames[engine] = load_calls(db).sort("span_id")
    assert frames["parallel"].equals(frames["python"])
    assert set(frames["python"]["source"]) == {
        "anthropic-sdk",
        "openllmetry",
        "otel-genai",
        "openinference",
        "openlit",
    }


@pytest.mark.parametrize("first_scope", ["com.anthropic", "opentelemetry.instrumentation"])
def test_one_row_per_call_when_the_two_spans_arrive_in_different_files(
    first_scope: str, tmp_path: Path
) -> None:
    # The overlap fixture split by instrumentation, as two processes' exporters would write it:
    # whichever file is ingested first, the rows equal those of ingesting both spans together.
    source = FIXTURES / "overlap" / "opentelemetry-instrumentation-anthropic-0.62.4.jsonl"
    together = _ingest([source], tmp_path / "together.duckdb")
    parts: dict[bool, list[str]] = {True: [], False: []}
    for line in source.read_text().splitlines():
        request = json.loads(line)
        for resource_spans in request["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                first = scope_spans["scope"]["name"].startswith(first_scope)
                one = {"resourceSpans": [{**resource_spans, "scopeSpans": [scope_spans]}]}
                parts[first].append(json.dumps(one))
    db = tmp_path / "split.duckdb"
    for i, first in enumerate((True, False)):
        part = tmp_path / f"part{i}.jsonl"
        part.write_text("\n".join(parts[first]) + "\n")
        ingest_paths([part], db)
    split = load_calls(db).sort("start_time").to_dicts()
    keep = ("span_id", "source", "feature", "cost_usd", "input_tokens", "output_tokens")
    assert [{k: r[k] for k in keep} for r in split] == [{k: r[k] for k in keep} for r in together]
    assert len(split) == 5  # 3 calls with a response id once each; the failed one twice
