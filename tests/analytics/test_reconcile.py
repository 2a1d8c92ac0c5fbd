"""The comparison itself (analytics.reconcile): frames in, frame out, and the [reconcile] config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from clauditor.analytics.reconcile import load_metered, metered_frame, price_drift, reconcile
from clauditor.config import parse_config
from clauditor.errors import ConfigError
from clauditor.pricing import load_price_table, price_calls
from clauditor.schema import empty_calls, frame_from_rows
from clauditor.store import write_calls
from tests.conftest import call_row

DAY = dt.date(2026, 10, 20)
NOON = dt.datetime(2026, 10, 20, 12, tzinfo=dt.UTC)
HAIKU = "claude-haiku-4-5-20251001"
COUNTS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "web_search_requests",
)


def usage(key: str = "apikey_a", **counts: int) -> pl.DataFrame:
    row: dict[str, Any] = {
        "day": DAY,
        "model": HAIKU,
        "api_key_id": key,
        "workspace_id": None,
        "service_tier": "standard",
        "context_window": "0-200k",
        "inference_geo": None,
        **{c: counts.get(c, 0) for c in COUNTS},
    }
    return pl.DataFrame([row])


def costs(*rows: tuple[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "day": DAY,
                "workspace_id": None,
                "description": None,
                "cost_type": "tokens",
                "token_type": token_type,
                "model": HAIKU,
                "service_tier": "standard",
                "context_window": "0-200k",
                "inference_geo": None,
                "currency": "USD",
                "amount": str(usd * 100),
                "amount_usd": usd,
            }
            for token_type, usd in rows
        ]
    )


def stored(db: Path, *rows: dict[str, Any], table: Any = None) -> pl.DataFrame:
    calls = price_calls(frame_from_rows([call_row(start_time=NOON, **r) for r in rows]), table)
    write_calls(db, calls)
    return load_metered(db, DAY, DAY)


HAIKU_CALL = {"request_model": "claude-haiku-4-5", "response_model": HAIKU, "output_tokens": 0}


def test_claude_code_calls_count_as_metered_and_count_tokens_calls_do_not(db_path: Path) -> None:
    # 1M input at Haiku's $1: one Claude Code call, plus a free count_tokens of the same prompt.
    metered = stored(
        db_path,
        {
            **HAIKU_CALL,
            "input_tokens": 1_000_000,
            "source": "claude-code",
            "service": "claude-code",
        },
        {**HAIKU_CALL, "input_tokens": 1_000_000, "operation": "count_tokens"},
    )
    rows = reconcile(
        usage(uncached_input_tokens=1_000_000),
        costs(("uncached_input_tokens", 1.0)),
        metered,
        load_price_table(),
    )
    haiku = rows.filter(pl.col("model") == "claude-haiku-4-5").row(0, named=True)
    assert (haiku["metered_input"], haiku["metered_usd"], haiku["verdict"]) == (
        1_000_000,
        pytest.approx(1.0),
        "matches",
    )


def test_more_metered_than_billed_is_over_metered_and_shows_a_negative_gap(db_path: Path) -> None:
    metered = stored(db_path, {**HAIKU_CALL, "input_tokens": 3_000_000})
    rows = reconcile(
        usage(uncached_input_tokens=1_000_000),
        costs(("uncached_input_tokens", 1.0)),
        metered,
        load_price_table(),
    )
    haiku = rows.filter(pl.col("model") == "claude-haiku-4-5").row(0, named=True)
    assert haiku["verdict"] == "over-metered"
    assert haiku["unmetered_usd"] == pytest.approx(-2.0)
    assert haiku["token_gaps"] == "input -2,000,000"


def test_a_negotiated_price_in_the_config_is_not_drift(db_path: Path) -> None:
    # The contract: Haiku output at $4/MTok from 2026-10-01; the bill charges exactly that.
    cfg = parse_config(
        {"prices": {"claude-haiku-4-5": {"output": 4.0, "effective_from": dt.date(2026, 10, 1)}}}
    )
    table = cfg.price_table()
    metered = stored(
        db_path, {**HAIKU_CALL, "input_tokens": 0, "output_tokens": 1_000_000}, table=table
    )
    bill_usage, bill_costs = usage(output_tokens=1_000_000), costs(("output_tokens", 4.0))
    assert price_drift(bill_usage, bill_costs, table).height == 0
    rows = reconcile(bill_usage, bill_costs, metered, table)
    haiku = rows.filter(pl.col("model") == "claude-haiku-4-5").row(0, named=True)
    assert (haiku["verdict"], haiku["price_drift"]) == ("matches", None)
    # Against the built-in card alone the same bill is drift, named with both prices.
    drift = price_drift(bill_usage, bill_costs, load_price_table()).row(0, named=True)
    assert (drift["token_type"], drift["billed_per_mtok"], drift["card_per_mtok"]) == (
        "output_tokens",
        pytest.approx(4.0),
        pytest.approx(5.0),
    )
    assert drift["first_day"] == DAY


def test_batch_usage_is_compared_with_half_the_card() -> None:
    bill_usage = usage(output_tokens=1_000_000).with_columns(service_tier=pl.lit("batch"))
    bill_costs = costs(("output_tokens", 2.5)).with_columns(service_tier=pl.lit("batch"))
    assert price_drift(bill_usage, bill_costs, load_price_table()).height == 0


def test_a_key_not_in_the_config_is_its_own_row_named_by_its_id() -> None:
    rows = reconcile(
        usage(key="apikey_mystery", uncached_input_tokens=1_000_000),
        costs(("uncached_input_tokens", 1.0)),
        metered_frame(empty_calls()),
        load_price_table(),
        by="api_key",
        api_keys={"apikey_a": "support-bot"},
    )
    row = rows.row(0, named=True)
    assert (row["service"], row["api_key_id"], row["verdict"]) == (
        None,
        "apikey_mystery",
        "unmetered",
    )
    assert row["unmetered_usd"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("reconcile_table", "message"),
    [
        ({"tolerance": 2}, "reconcile.tolerance is a fraction"),
        ({"settle_days": -1}, "reconcile.settle_days must be a whole number"),
        ({"api_keys": {"apikey_a": ""}}, "reconcile.api_keys.apikey_a must name a service"),
        ({"apikeys": {}}, "[reconcile] has unknown key(s) ['apikeys']"),
    ],
)
def test_bad_reconcile_config_is_a_clear_error(reconcile_table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"reconcile": reconcile_table})
    assert message in str(info.value)


def test_an_api_key_itself_in_the_config_is_refused_without_echoing_it() -> None:
    secret = "sk-ant-test-SECRET-noecho"
    with pytest.raises(ConfigError) as info:
        parse_config({"reconcile": {"api_keys": {secret: "svc"}}})
    assert "use the key's id" in str(info.value) and secret not in str(info.value)


def test_by_workspace_places_metered_calls_in_their_keys_workspace(db_path: Path) -> None:
    metered = stored(db_path, {**HAIKU_CALL, "input_tokens": 1_000_000, "service": "support-bot"})
    bill_usage = pl.concat(
        [
            usage(key="apikey_a", uncached_input_tokens=1_000_000),
            usage(key="apikey_b", uncached_input_tokens=2_000_000).with_columns(
                workspace_id=pl.lit("wrkspc_etl")
            ),
        ],
        how="diagonal_relaxed",
    )
    bill_costs = pl.concat(
        [
            costs(("uncached_input_tokens", 1.0)),
            costs(("uncached_input_tokens", 2.0)).with_columns(workspace_id=pl.lit("wrkspc_etl")),
        ],
        how="diagonal_relaxed",
    )
    rows = reconcile(
        bill_usage,
        bill_costs,
        metered,
        load_price_table(),
        by="workspace",
        api_keys={"apikey_a": "support-bot", "apikey_b": "batch-etl"},
    ).filter(pl.col("model") == "claude-haiku-4-5")
    got = {
        r["workspace_id"]: (r["verdict"], r["unmetered_usd"]) for r in rows.iter_rows(named=True)
    }
    assert got == {
        "(default workspace)": ("matches", pytest.approx(0.0)),
        "wrkspc_etl": ("unmetered", pytest.approx(2.0)),
    }


def test_the_metered_sums_read_in_duckdb_equal_metered_frame_of_every_call(db_path: Path) -> None:
    # load_metered sums in DuckDB first (a 10M-call month must not become a 10M-row frame); the
    # figures must be metered_frame's of the calls themselves, NULL rules included: an unpriced
    # call, TTL splits reported or assumed, server tools, a count_tokens call, two UTC days.
    late = dt.datetime(2026, 10, 20, 23, 59, 59, tzinfo=dt.UTC)
    rows = [
        dict(HAIKU_CALL, input_tokens=1000, cache_creation_input_tokens=400,
             cache_creation_5m_input_tokens=100, cache_creation_1h_input_tokens=300),
        dict(HAIKU_CALL, start_time=late, cache_creation_input_tokens=500,
             cache_ttl_assumed="1h"),
        dict(HAIKU_CALL, cache_creation_input_tokens=700, web_search_requests=3),
        dict(request_model="claude-mystery-9", response_model=None, input_tokens=5000),
        dict(HAIKU_CALL, operation="count_tokens", input_tokens=9000),
        dict(HAIKU_CALL, start_time=late + dt.timedelta(seconds=2), service="other"),
    ]  # fmt: skip
    calls = price_calls(
        frame_from_rows([call_row(**{"start_time": NOON, **r}) for r in rows]), None
    )
    write_calls(db_path, calls)
    keys = ["day", "model", "service"]
    summed = load_metered(db_path, DAY, DAY + dt.timedelta(days=1)).sort(keys, nulls_last=True)
    every = metered_frame(calls.filter(pl.col("operation") != "count_tokens"))
    assert summed.height == 3  # haiku and mystery on the 20th, the other service on the 21st
    assert_frame_equal(summed, every.sort(keys, nulls_last=True).select(summed.columns))
