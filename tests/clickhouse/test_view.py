"""The view and the Python normalizer give the same ``calls`` rows for every convention.

Every fixture of sample_logs/conventions/ (the corpus the normalizer's tests use) goes two ways:
through clauditor's file ingest into DuckDB, and into ``otel_traces`` as the Collector's
clickhouseexporter writes it (every attribute value a string), through the view into
``calls``. The rows must agree column by column, dollars to 1e-9, with the documented
exceptions checked explicitly (the attributes JSON holds the exporter's strings; the merge of
two instrumentations' spans does not carry the dropped span's feature).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from clauditor.clickhouse import ClickHouse, init, reprice
from clauditor.config import Config
from clauditor.ingest import ingest_paths
from clauditor.pricing import price_calls
from clauditor.rate_cards import load_price_table
from clauditor.schema import CALLS_COLUMNS, frame_from_rows
from clauditor.store import load_calls

from .exporter_rows import COLUMNS, as_string, records, row

FIXTURES = Path(__file__).resolve().parents[2] / "sample_logs" / "conventions"
FILES = sorted(FIXTURES.glob("*/*.jsonl"))
# OpenLIT's fixture tags the feature under a team's own key, which config names.
CONFIG = Config(feature_attributes=("app.feature", "clauditor.feature"))
CARRIED = ("feature", "user_id", "conversation_id")


def _python_rows(tmp_path: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
    db = tmp_path / "python.duckdb"
    ingest_paths(files, db, config=CONFIG)
    return {r["span_id"]: r for r in load_calls(db).to_dicts()}


def _insert_spans(ch: ClickHouse, files: list[Path], status_style: str = "Error") -> int:
    spans = records(files)
    ch.insert("default.otel_traces", [row(s, status_style=status_style) for s in spans], COLUMNS)
    return len(spans)


def _clickhouse_rows(ch: ClickHouse) -> dict[str, dict[str, Any]]:
    names, rows = ch.columns("SELECT * FROM clauditor.calls FINAL")
    out = {}
    for values in rows:
        got = dict(zip(names, values, strict=True))
        for column in ("start_time", "end_time"):  # the client hands UTC back naive
            got[column] = got[column].replace(tzinfo=dt.UTC)
        out[got["span_id"]] = got
    return out


def _exporter_json(text: str) -> dict[str, str]:
    """A Python-path attributes JSON with its values as the exporter stores them."""
    return {k: as_string(v) for k, v in json.loads(text).items()}


def _differences(python: dict[str, Any], clickhouse: dict[str, Any]) -> list[str]:
    out = []
    for name, _, _ in CALLS_COLUMNS:
        want, got = python[name], clickhouse[name]
        if name in ("attributes", "resource"):
            if _exporter_json(want) != json.loads(got):
                out.append(f"{name}: {want} != {got}")
        elif isinstance(want, float) and isinstance(got, float):
            if abs(want - got) > 1e-9:
                out.append(f"{name}: {want!r} != {got!r}")
        elif want != got:
            out.append(f"{name}: {want!r} != {got!r}")
    return out


@pytest.fixture
def both(ch: ClickHouse, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], ClickHouse]:
    init(ch, feature_attributes=CONFIG.feature_attributes)
    _insert_spans(ch, FILES)
    return _python_rows(tmp_path, FILES), _clickhouse_rows(ch), ch


def test_every_convention_gives_the_python_rows(both: Any) -> None:
    python, clickhouse, _ = both
    assert set(clickhouse) == set(python)
    sources = {r["source"] for r in python.values()}
    assert {"openllmetry", "otel-genai", "openinference", "openlit", "anthropic-sdk"} <= sources
    assert any(r["status"] == "error" for r in python.values())
    assert any(r["cost_usd"] for r in python.values())
    merged = _merged_winners(python, clickhouse)
    for span_id, want in python.items():
        got = dict(clickhouse[span_id])
        if span_id in merged:  # the documented merge difference, checked on its own below
            for column in CARRIED:
                got[column] = want[column]
        assert _differences(want, got) == [], (span_id, want["source"])


def _merged_winners(python: dict[str, Any], clickhouse: dict[str, Any]) -> set[str]:
    return {s for s in python if any(python[s][c] != clickhouse[s][c] for c in CARRIED)}


def test_the_feature_a_dropped_duplicate_carried_is_lost_on_clickhouse(both: Any) -> None:
    # The overlap fixture: the SDK's own span and OpenLLMetry's describe each call. Both paths
    # keep the SDK's row (the preferred source); only the Python store gives it the feature the
    # OpenLLMetry span carried (docs/clickhouse.md, "merge differences").
    python, clickhouse, _ = both
    merged = _merged_winners(python, clickhouse)
    assert merged, "the overlap fixture should exercise the merge"
    for span_id in merged:
        assert python[span_id]["source"] == clickhouse[span_id]["source"] == "anthropic-sdk"
        assert python[span_id]["feature"] is not None
        assert clickhouse[span_id]["feature"] is None


def test_both_status_code_spellings_give_the_same_rows(ch: ClickHouse, tmp_path: Path) -> None:
    init(ch, feature_attributes=CONFIG.feature_attributes)
    _insert_spans(ch, FILES, status_style="STATUS_CODE_ERROR")
    python = _python_rows(tmp_path, FILES)
    clickhouse = _clickhouse_rows(ch)
    errors = {s for s, r in python.items() if r["status"] == "error"}
    assert errors
    assert {s for s, r in clickhouse.items() if r["status"] == "error"} == errors
    for span_id in errors:
        assert clickhouse[span_id]["error_type"] == python[span_id]["error_type"]


def test_a_resent_span_stays_one_row(ch: ClickHouse) -> None:
    init(ch, feature_attributes=CONFIG.feature_attributes)
    files = [FIXTURES / "otel-genai" / "opentelemetry-util-genai-1.3b0.jsonl"]
    _insert_spans(ch, files)
    once = _clickhouse_rows(ch)
    _insert_spans(ch, files)  # the Collector retried the batch
    _insert_spans(ch, files)
    assert _clickhouse_rows(ch) == once
    assert ch.rows("SELECT count() FROM clauditor.calls FINAL") == [(len(once),)]
    ch.command("OPTIMIZE TABLE clauditor.calls FINAL")
    assert ch.rows("SELECT count() FROM clauditor.calls") == [(len(once),)]


def test_spans_already_in_otel_traces_are_backfilled(ch: ClickHouse, tmp_path: Path) -> None:
    # The Collector ran before clauditor was set up: init finds the spans and prices them.
    ch.command("CREATE DATABASE IF NOT EXISTS default")
    from clauditor.clickhouse.ddl import Layout, exporter_tables

    for statement in exporter_tables(Layout()):
        ch.command(statement)
    spans = _insert_spans(ch, FILES)
    result = init(ch, feature_attributes=CONFIG.feature_attributes)
    assert result.backfilled_spans == spans
    assert set(_clickhouse_rows(ch)) == set(_python_rows(tmp_path, FILES))


def test_reprice_prices_stored_calls_at_new_rates(both: Any) -> None:
    python, _, ch = both
    cheaper = load_price_table({"claude-haiku-4-5": {"input": 0.5, "output": 2.5}})
    assert reprice(ch, cheaper) == len(python)
    repriced = _clickhouse_rows(ch)
    want = price_calls(frame_from_rows(python.values()), cheaper)
    for row_ in want.to_dicts():
        got = repriced[row_["span_id"]]
        for column in ("cost_usd", "cost_input_usd", "rate_input", "price_version"):
            if isinstance(row_[column], float):
                assert got[column] == pytest.approx(row_[column], abs=1e-9), column
            else:
                assert got[column] == row_[column], column
    assert any(r["price_version"] and "+override" in r["price_version"] for r in repriced.values())
