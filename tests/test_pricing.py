"""Pricing rules, each checked against dollars computed by hand in the comment."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clauditor.config import parse_config
from clauditor.errors import ConfigError
from clauditor.pricing import (
    load_price_table,
    normalize_model_id,
    price_calls,
    unpriced_calls,
)
from clauditor.schema import frame_from_rows
from tests.conftest import call_row

UTC = dt.UTC


# The five rates a card for a model clauditor does not know must state ($/MTok).
FIVE = {"input": 1.0, "output": 2.0, "cache_read": 0.1, "cache_write_5m": 1.25,
        "cache_write_1h": 2.0}  # fmt: skip


def priced(table=None, **overrides) -> dict:
    """Price one call and return its row."""
    frame = frame_from_rows([call_row(**overrides)])
    return price_calls(frame, table).row(0, named=True)


def test_plain_call() -> None:
    # Sonnet 4.5 $3/$15: 1,000 in x $3/M = $0.003; 500 out x $15/M = $0.0075; total $0.0105.
    row = priced(input_tokens=1000, output_tokens=500)
    assert row["cost_input_usd"] == pytest.approx(0.003)
    assert row["cost_output_usd"] == pytest.approx(0.0075)
    assert row["cost_cache_read_usd"] == 0 and row["cost_cache_write_usd"] == 0
    assert row["cost_usd"] == pytest.approx(0.0105)
    assert row["price_version"] == "claude-sonnet-4-5@2025-09-29"


def test_cache_read_and_5m_write() -> None:
    # Sonnet 4.5: 200 in x $3/M = $0.0006; 10,000 read x $0.30/M = $0.003;
    # 2,000 5m-write x $3.75/M = $0.0075; 100 out x $15/M = $0.0015. Total $0.0126.
    row = priced(
        input_tokens=200,
        output_tokens=100,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=2_000,
        cache_creation_5m_input_tokens=2_000,
        cache_creation_1h_input_tokens=0,
    )
    assert row["cost_cache_read_usd"] == pytest.approx(0.003)
    assert row["cost_cache_write_usd"] == pytest.approx(0.0075)
    assert row["cost_usd"] == pytest.approx(0.0126)


def test_1h_write_and_unknown_split() -> None:
    # Haiku 4.5 base $1/M: 1h write = $2/M, 5m write = $1.25/M.
    # Split known: 1,000 5m + 3,000 1h = $0.00125 + $0.006 = $0.00725.
    split = priced(
        request_model="claude-haiku-4-5",
        response_model=None,
        input_tokens=0,
        cache_creation_input_tokens=4_000,
        cache_creation_5m_input_tokens=1_000,
        cache_creation_1h_input_tokens=3_000,
    )
    assert split["cost_cache_write_usd"] == pytest.approx(0.00725)
    # Split unknown: all 4,000 priced as 5m writes = $0.005.
    unknown = priced(
        request_model="claude-haiku-4-5",
        response_model=None,
        input_tokens=0,
        cache_creation_input_tokens=4_000,
    )
    assert unknown["cost_cache_write_usd"] == pytest.approx(0.005)


def test_batch_tier_with_cache() -> None:
    # Sonnet 4.5 at 50 %: in $1.50/M, out $7.50/M, read $0.15/M, 5m write $1.875/M.
    # 1,000 in = $0.0015; 1,000 out = $0.0075; 10,000 read = $0.0015; 1,000 write = $0.001875.
    # Total $0.012375.
    common = dict(
        input_tokens=1000,
        output_tokens=1000,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=1_000,
    )
    by_tier = priced(service_tier="batch", **common)
    by_operation = priced(operation="batch", **common)
    assert by_tier["cost_usd"] == pytest.approx(0.012375)
    assert by_operation["cost_usd"] == pytest.approx(0.012375)
    assert by_tier["cost_cache_write_usd"] == pytest.approx(0.001875)


def test_long_context_bills_the_whole_request() -> None:
    # Sonnet 4.5, 50,000 in + 200,000 read = 250,000 > 200K: input rate x2 = $6/M, output x1.5.
    # 50,000 x $6/M = $0.30; 200,000 read x $0.60/M = $0.12; 2,000 out x $22.50/M = $0.045.
    # Total $0.465.
    row = priced(input_tokens=50_000, cache_read_input_tokens=200_000, output_tokens=2_000)
    assert row["cost_input_usd"] == pytest.approx(0.30)
    assert row["cost_cache_read_usd"] == pytest.approx(0.12)
    assert row["cost_output_usd"] == pytest.approx(0.045)
    assert row["cost_usd"] == pytest.approx(0.465)
    # Exactly 200,000 is not above the threshold: 200,000 x $3/M = $0.60.
    at_limit = priced(input_tokens=200_000, output_tokens=0)
    assert at_limit["cost_usd"] == pytest.approx(0.60)


def test_opus_4_6_has_no_long_context_tier() -> None:
    # Opus 4.6 $5/$25 at any size: 250,000 in = $1.25; 2,000 out = $0.05. Total $1.30.
    row = priced(
        request_model="claude-opus-4-6",
        response_model="claude-opus-4-6",
        input_tokens=250_000,
        output_tokens=2_000,
    )
    assert row["cost_usd"] == pytest.approx(1.30)


def test_us_only_inference_multiplier() -> None:
    # Opus 4.6 US-only x1.1: 1,000 in x $5.50/M = $0.0055; 1,000 out x $27.50/M = $0.0275.
    row = priced(
        request_model="claude-opus-4-6",
        response_model=None,
        inference_geo="us",
        input_tokens=1000,
        output_tokens=1000,
    )
    assert row["cost_usd"] == pytest.approx(0.033)
    # Sonnet 4.5 has no data-residency multiplier: 1,000 in = $0.003.
    plain = priced(inference_geo="us", input_tokens=1000)
    assert plain["cost_usd"] == pytest.approx(0.003)


def test_fast_mode_multiplier() -> None:
    # Opus 4.6 fast mode x6: 1,000 out x $150/M = $0.15.
    row = priced(
        request_model="claude-opus-4-6",
        response_model=None,
        speed="fast",
        input_tokens=0,
        output_tokens=1000,
    )
    assert row["cost_usd"] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("model", "usd"),
    [
        ("claude-haiku-4-5", 0.001),
        ("claude-haiku-4-5-20251001", 0.001),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", 0.001),
        ("claude-haiku-4-5@20251001", 0.001),
        ("Claude-Haiku-4-5", 0.001),
        # Regional Bedrock endpoints (in-region id, us. profile) carry Haiku 4.5's +10%:
        # 1,000 x $1.10/M = $0.0011.
        ("anthropic.claude-haiku-4-5-20251001-v1:0", 0.0011),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 0.0011),
    ],
)
def test_dated_undated_and_cloud_ids_resolve(model: str, usd: float) -> None:
    # Haiku 4.5 $1/M: 1,000 in = $0.001 on the first-party API and global endpoints.
    row = priced(request_model=model, response_model=None, input_tokens=1000)
    assert normalize_model_id(model) == "claude-haiku-4-5"
    assert row["cost_usd"] == pytest.approx(usd, abs=1e-12)


def test_response_model_wins_over_request_model() -> None:
    # Asked for an alias, served by Opus 4.1 ($15/M): 1,000 in = $0.015.
    row = priced(request_model="my-alias", response_model="claude-opus-4-1-20250805")
    assert row["cost_usd"] == pytest.approx(0.015)


def test_unknown_model_is_null_and_counted() -> None:
    frame = frame_from_rows(
        [
            call_row(request_model="claude-mystery-9", response_model=None),
            call_row(request_model="claude-mystery-9", response_model=None),
            call_row(),
        ]
    )
    out = price_calls(frame)
    assert out.get_column("cost_usd").null_count() == 2
    assert out.get_column("cost_input_usd").null_count() == 2
    counted = unpriced_calls(out)
    assert counted.to_dicts() == [{"model": "claude-mystery-9", "calls": 2}]


def test_count_tokens_is_free() -> None:
    row = priced(operation="count_tokens", input_tokens=5000)
    assert row["cost_usd"] == 0


def test_price_change_by_effective_from() -> None:
    table = load_price_table(
        {
            "claude-test": {
                **FIVE,
                "input": 1.0,
                "output": 2.0,
                "effective_from": dt.date(2026, 1, 1),
            },
        }
    ).with_cards(
        load_price_table(
            {
                "claude-test": {
                    **FIVE,
                    "input": 4.0,
                    "output": 8.0,
                    "effective_from": dt.date(2026, 6, 1),
                }
            }
        ).cards[-1:]
    )
    days = [
        dt.datetime(2025, 12, 31, 23, tzinfo=UTC),
        dt.datetime(2026, 3, 1, tzinfo=UTC),
        dt.datetime(2026, 6, 1, 0, 30, tzinfo=UTC),
    ]
    frame = frame_from_rows(
        [
            call_row(
                start_time=d,
                request_model="claude-test",
                response_model=None,
                input_tokens=1_000_000,
                output_tokens=0,
            )
            for d in days
        ]
    )
    costs = price_calls(frame, table).get_column("cost_usd").to_list()
    # Before the first entry: no price. March: $1/M x 1M = $1. From June 1: $4.
    assert costs[0] is None
    assert costs[1] == pytest.approx(1.0)
    assert costs[2] == pytest.approx(4.0)


def test_config_override_applies_from_its_date() -> None:
    config = parse_config(
        {
            "prices": {
                "claude-sonnet-4-5": {
                    "input": 4.0,
                    "output": 20.0,
                    "effective_from": dt.date(2026, 10, 1),
                }
            }
        }
    )
    table = config.price_table()
    before = priced(table, start_time=dt.datetime(2026, 9, 30, tzinfo=UTC), input_tokens=1000)
    after = priced(table, start_time=dt.datetime(2026, 10, 2, tzinfo=UTC), input_tokens=1000)
    assert before["cost_usd"] == pytest.approx(0.003)  # 1,000 x $3/M
    assert after["cost_usd"] == pytest.approx(0.004)  # 1,000 x $4/M
    assert after["price_version"] == "claude-sonnet-4-5@2026-10-01+override"


def test_bad_override_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="input must be a number, not 'cheap'"):
        parse_config({"prices": {"claude-x": {**FIVE, "input": "cheap"}}})
    with pytest.raises(
        ConfigError, match="missing rate.*cache_read, cache_write_5m, cache_write_1h"
    ):
        parse_config({"prices": {"claude-x": {"input": 1, "output": 1}}})
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_config({"prices": {"claude-x": {**FIVE, "output": -1}}})


def test_row_order_and_other_columns_are_kept() -> None:
    rows = [
        call_row(feature=f"f{i}", start_time=dt.datetime(2026, 10, 30 - i, tzinfo=UTC))
        for i in range(5)
    ]
    out = price_calls(frame_from_rows(rows))
    assert out.get_column("feature").to_list() == [f"f{i}" for i in range(5)]
    assert out.height == 5 and "cost_usd" in out.columns


def test_empty_frame() -> None:
    out = price_calls(frame_from_rows([]))
    assert out.height == 0 and out.schema["cost_usd"] == pl.Float64


def test_empty_response_model_falls_back_to_request_model() -> None:
    # Haiku 4.5 $1/M: 1,000 in = $0.001.
    row = priced(request_model="claude-haiku-4-5", response_model="", input_tokens=1000)
    assert row["cost_usd"] == pytest.approx(0.001)


@pytest.mark.parametrize(
    "model",
    ["claude-haiku-4-5-20251001", "us.anthropic.claude-haiku-4-5-20251001-v1:0",
     "claude-haiku-4-5@20251001", " Claude-Haiku-4-5-latest"],
)  # fmt: skip
def test_sql_model_key_matches_python(model: str) -> None:
    import duckdb

    from clauditor.pricing import model_key_sql

    got = duckdb.sql(f"SELECT {model_key_sql('m')} FROM (SELECT ? AS m)", params=[model]).fetchall()
    assert got == [(normalize_model_id(model),)]


def test_override_without_date_applies_to_every_call_and_keeps_the_model_rules() -> None:
    # No effective_from: replaces the built-in Haiku 4.5 entry at every date.
    # 1M input tokens x $2/M = $2.00 (the built-in price would give $1.00).
    table = parse_config(
        {"prices": {"claude-haiku-4-5": {"input": 2.0, "output": 10.0}}}
    ).price_table()
    row = priced(table, request_model="claude-haiku-4-5", response_model=None,
                 input_tokens=1_000_000)  # fmt: skip
    assert row["cost_usd"] == pytest.approx(2.0)
    # A dated override of Sonnet 4.5's base rates keeps its long-context tier as the card
    # states it: 250,000 input tokens are over 200K, so the tier's own $6/M applies -> $1.50.
    dated = parse_config(
        {"prices": {"claude-sonnet-4-5": {"input": 4.0, "output": 20.0,
                                          "effective_from": dt.date(2026, 1, 1)}}}
    ).price_table()  # fmt: skip
    long = priced(dated, input_tokens=250_000, output_tokens=0)
    assert long["cost_usd"] == pytest.approx(1.5)


def test_bad_multiplier_and_aliases_name_the_entry() -> None:
    with pytest.raises(
        ConfigError, match=r"\[prices.'claude-x'\].*us_only_multiplier must be a number"
    ):
        parse_config({"prices": {"claude-x": {**FIVE, "us_only_multiplier": "a"}}})
    with pytest.raises(ConfigError, match="aliases must be a list"):
        parse_config({"prices": {"claude-x": {**FIVE, "aliases": "abc"}}})
    with pytest.raises(ConfigError, match="unknown key.*fast_multiplier"):
        parse_config({"prices": {"claude-x": {**FIVE, "fast_multiplier": 6}}})
