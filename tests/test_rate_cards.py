"""Every rate card and every pricing rule, against dollars computed by hand.

Each case states its arithmetic beside the expected value; rates are $ per million tokens (MTok)
as Anthropic's pricing page (https://platform.claude.com/docs/en/about-claude/pricing) and the
model pages give them — the source of each card is in clauditor/prices.toml. The expected
values are written out here, not read from the table, so a wrong transcription fails.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from clauditor.config import parse_config
from clauditor.errors import ConfigError
from clauditor.pricing import load_price_table, normalize_model_id, price_calls
from clauditor.schema import frame_from_rows
from tests.conftest import call_row

UTC = dt.UTC
EXACT = 1e-9


def price(model: str, day: str = "2026-11-02", table: Any = None, **usage: Any) -> dict:
    """One call of ``model`` on ``day`` (UTC noon), priced."""
    start = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    row = call_row(request_model=model, response_model=None, start_time=start,
                   end_time=start + dt.timedelta(seconds=2), **usage)  # fmt: skip
    return price_calls(frame_from_rows([row]), table).row(0, named=True)


# Every case: 10,000 uncached input, 2,000 output, 20,000 cache read, 4,000 5-minute and 1,000
# 1-hour cache write tokens (split reported), priced by the card in force on the day given.
USAGE = dict(input_tokens=10_000, output_tokens=2_000, cache_read_input_tokens=20_000,
             cache_creation_input_tokens=5_000, cache_creation_5m_input_tokens=4_000,
             cache_creation_1h_input_tokens=1_000)  # fmt: skip

CARD_CASES = [
    # 10,000 x $8 + 2,000 x $40 + 20,000 x $0.20 + 4,000 x $10 + 1,000 x $16 = $0.22
    ("claude-fable-5-2", "2026-11-20", 0.22),
    # 10,000 x $8 + 2,000 x $40 + 20,000 x $0.20 + 4,000 x $10 + 1,000 x $16 = $0.22
    ("claude-mythos-5-2", "2026-11-20", 0.22),
    # 10,000 x $10 + 2,000 x $50 + 20,000 x $0.25 + 4,000 x $12.50 + 1,000 x $20 = $0.275
    ("claude-fable-5-1", "2026-10-01", 0.275),
    # 10,000 x $10 + 2,000 x $50 + 20,000 x $0.25 + 4,000 x $12.50 + 1,000 x $20 = $0.275
    ("claude-mythos-5-1", "2026-10-01", 0.275),
    # 10,000 x $10 + 2,000 x $50 + 20,000 x $1.00 + 4,000 x $12.50 + 1,000 x $20 = $0.29
    ("claude-fable-5", "2026-07-01", 0.29),
    # 10,000 x $10 + 2,000 x $50 + 20,000 x $1.00 + 4,000 x $12.50 + 1,000 x $20 = $0.29
    ("claude-mythos-5", "2026-07-01", 0.29),
    # 10,000 x $4 + 2,000 x $20 + 20,000 x $0.20 + 4,000 x $5 + 1,000 x $8 = $0.112
    ("claude-opus-5-5", "2026-11-01", 0.112),
    # 10,000 x $2 + 2,000 x $10 + 20,000 x $0.20 + 4,000 x $2.50 + 1,000 x $4 = $0.058
    ("claude-sonnet-5-5", "2026-10-01", 0.058),
    # 10,000 x $2 + 2,000 x $10 + 20,000 x $0.10 + 4,000 x $2.50 + 1,000 x $4 = $0.056
    ("claude-sonnet-5-5", "2026-10-07", 0.056),
    # 10,000 x $0.10 + 2,000 x $0.50 + 20,000 x $0.01 + 4,000 x $0.125 + 1,000 x $0.20 = $0.0029
    ("claude-haiku-5-5", "2026-11-01", 0.0029),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-5", "2026-08-01", 0.145),
    # 10,000 x $2 + 2,000 x $10 + 20,000 x $0.20 + 4,000 x $2.50 + 1,000 x $4 = $0.058
    ("claude-sonnet-5", "2026-09-02", 0.058),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-8", "2026-06-01", 0.145),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-8", "2026-12-01", 0.145),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-7", "2026-05-01", 0.145),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-7", "2026-08-01", 0.145),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-6", "2026-02-10", 0.145),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-6", "2026-04-01", 0.145),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-sonnet-4-6", "2026-02-20", 0.087),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-sonnet-4-6", "2026-04-01", 0.087),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-sonnet-4-5", "2026-01-01", 0.087),
    # 10,000 x $1 + 2,000 x $5 + 20,000 x $0.10 + 4,000 x $1.25 + 1,000 x $2 = $0.029
    ("claude-haiku-4-5", "2026-01-01", 0.029),
    # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
    ("claude-opus-4-5", "2026-01-01", 0.145),
    # 10,000 x $15 + 2,000 x $75 + 20,000 x $1.50 + 4,000 x $18.75 + 1,000 x $30 = $0.435
    ("claude-opus-4-1", "2026-01-01", 0.435),
    # 10,000 x $15 + 2,000 x $75 + 20,000 x $1.50 + 4,000 x $18.75 + 1,000 x $30 = $0.435
    ("claude-opus-4", "2025-12-01", 0.435),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-sonnet-4", "2025-12-01", 0.087),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-3-7-sonnet", "2025-06-01", 0.087),
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.30 + 4,000 x $3.75 + 1,000 x $6 = $0.087
    ("claude-3-5-sonnet", "2025-01-01", 0.087),
    # 10,000 x $0.80 + 2,000 x $4 + 20,000 x $0.08 + 4,000 x $1 + 1,000 x $1.60 = $0.0232
    ("claude-3-5-haiku", "2025-01-01", 0.0232),
    # 10,000 x $15 + 2,000 x $75 + 20,000 x $1.50 + 4,000 x $18.75 + 1,000 x $30 = $0.435
    ("claude-3-opus", "2025-01-01", 0.435),
    # 10,000 x $0.25 + 2,000 x $1.25 + 20,000 x $0.03 + 4,000 x $0.30 + 1,000 x $0.50 = $0.0073
    ("claude-3-haiku", "2025-01-01", 0.0073),
]


@pytest.mark.parametrize(("model", "day", "usd"), CARD_CASES)
def test_every_card_prices_its_five_rates(model: str, day: str, usd: float) -> None:
    row = price(model, day, **USAGE)
    assert row["cost_usd"] == pytest.approx(usd, abs=EXACT)
    assert row["price_version"].startswith(model + "@")


def test_every_builtin_card_has_a_case_and_states_its_source() -> None:
    table = load_price_table()
    cased = {(m, d) for m, d, _ in CARD_CASES}
    for card in table.cards:
        assert card.source.startswith(("http", "Same model", "Anthropic")), card.id
        day = next(
            (
                d
                for m, d in cased
                if m == card.id and card == table.lookup(m, dt.date.fromisoformat(d))
            ),
            None,
        )
        assert day is not None, f"no hand-computed case prices {card.version}"


def test_opus_5_5_cache_reads_cost_a_twentieth_of_input() -> None:
    # Opus 5.5: 100,000 read x $0.20 = $0.02 (0.05x of $4, not the 0.1x a multiplier gives).
    row = price("claude-opus-5-5", input_tokens=0, cache_read_input_tokens=100_000)
    assert row["cost_cache_read_usd"] == pytest.approx(0.02, abs=EXACT)
    assert row["rate_cache_read"] == pytest.approx(0.20, abs=EXACT)


def test_sonnet_5_5_cache_read_cut_on_2026_10_07() -> None:
    # 1,000,000 read: $0.20 on 2026-10-06, $0.10 from 2026-10-07; the other rates unchanged.
    before = price("claude-sonnet-5-5", "2026-10-06", input_tokens=0,
                   cache_read_input_tokens=1_000_000)  # fmt: skip
    after = price("claude-sonnet-5-5", "2026-10-07", input_tokens=0,
                  cache_read_input_tokens=1_000_000)  # fmt: skip
    assert before["cost_usd"] == pytest.approx(0.20, abs=EXACT)
    assert after["cost_usd"] == pytest.approx(0.10, abs=EXACT)


def test_haiku_5_5_over_100k_prompt_bills_every_token_at_the_second_card() -> None:
    # Prompt = 30,000 in + 60,000 read + 20,000 5m write = 110,000 > 100,000: the whole request
    # at $0.50 / $2.50 / read $0.05 / 5m $0.625:
    # 30,000 x $0.50 = $0.015; 1,000 out x $2.50 = $0.0025; 60,000 x $0.05 = $0.003;
    # 20,000 x $0.625 = $0.0125. Total $0.033.
    usage = dict(input_tokens=30_000, output_tokens=1_000, cache_read_input_tokens=60_000,
                 cache_creation_input_tokens=20_000, cache_creation_5m_input_tokens=20_000,
                 cache_creation_1h_input_tokens=0)  # fmt: skip
    over = price("claude-haiku-5-5", **usage)
    assert over["cost_output_usd"] == pytest.approx(0.0025, abs=EXACT)
    assert over["cost_usd"] == pytest.approx(0.033, abs=EXACT)
    # Exactly 100,000 (10,000 fewer input) stays on the first card:
    # 20,000 x $0.10 = $0.002; 1,000 x $0.50 = $0.0005; 60,000 x $0.01 = $0.0006;
    # 20,000 x $0.125 = $0.0025. Total $0.0056.
    at = price("claude-haiku-5-5", **{**usage, "input_tokens": 20_000})
    assert at["cost_usd"] == pytest.approx(0.0056, abs=EXACT)


def test_opus_4_6_long_context_premium_ends_on_2026_03_13() -> None:
    # 250,000 in (> 200K) + 1,000 out. Until 2026-03-12: $10 / $37.50 on the whole request:
    # 250,000 x $10 = $2.50; 1,000 x $37.50 = $0.0375. Total $2.5375.
    usage = dict(input_tokens=250_000, output_tokens=1_000)
    assert price("claude-opus-4-6", "2026-03-12", **usage)["cost_usd"] == pytest.approx(
        2.5375, abs=EXACT
    )
    # From 2026-03-13 the standard $5 / $25: $1.25 + $0.025 = $1.275.
    assert price("claude-opus-4-6", "2026-03-13", **usage)["cost_usd"] == pytest.approx(
        1.275, abs=EXACT
    )


def test_haiku_3_cache_rates_are_not_multipliers() -> None:
    # Haiku 3: 1,000,000 read x $0.03 = $0.03; 1,000,000 5m write x $0.30 = $0.30.
    row = price("claude-3-haiku-20240307", "2025-01-10", input_tokens=0,
                cache_read_input_tokens=1_000_000, cache_creation_input_tokens=1_000_000,
                cache_creation_5m_input_tokens=1_000_000)  # fmt: skip
    assert row["cost_cache_read_usd"] == pytest.approx(0.03, abs=EXACT)
    assert row["cost_cache_write_usd"] == pytest.approx(0.30, abs=EXACT)


@pytest.mark.parametrize(
    ("model", "day", "usd"),
    [
        # Opus 4.6 / 4.7 fast: $30 / $150, read 0.1x of $30 = $3, 5m 1.25x = $37.50.
        # 10,000 x $30 + 2,000 x $150 + 20,000 x $3 + 4,000 x $37.50 + 1,000 x $60 = $0.87
        ("claude-opus-4-6", "2026-04-01", 0.87),
        ("claude-opus-4-7", "2026-05-01", 0.87),
        # Opus 4.8 / Opus 5 fast: $10 / $50, read $1, 5m $12.50, 1h $20.
        # 10,000 x $10 + 2,000 x $50 + 20,000 x $1 + 4,000 x $12.50 + 1,000 x $20 = $0.29
        ("claude-opus-4-8", "2026-06-01", 0.29),
        ("claude-opus-5", "2026-08-01", 0.29),
        # Opus 5.5 fast: $8 / $40, read 0.05x of $8 = $0.40, 5m $10, 1h $16.
        # 10,000 x $8 + 2,000 x $40 + 20,000 x $0.40 + 4,000 x $10 + 1,000 x $16 = $0.224
        ("claude-opus-5-5", "2026-11-01", 0.224),
        # Opus 4.8 after fast mode's removal (2026-11-30): standard $5 / $25 card.
        # 10,000 x $5 + 2,000 x $25 + 20,000 x $0.50 + 4,000 x $6.25 + 1,000 x $10 = $0.145
        ("claude-opus-4-8", "2026-12-01", 0.145),
        # Sonnet 5.5 has no fast mode: its standard card.
        # 10,000 x $2 + 2,000 x $10 + 20,000 x $0.10 + 4,000 x $2.50 + 1,000 x $4 = $0.056
        ("claude-sonnet-5-5", "2026-11-01", 0.056),
    ],
)
def test_fast_mode_rates_per_model_and_period(model: str, day: str, usd: float) -> None:
    assert price(model, day, speed="fast", **USAGE)["cost_usd"] == pytest.approx(usd, abs=EXACT)


def test_fast_mode_replaces_the_long_context_tier() -> None:
    # Opus 4.6 fast on 2026-03-01 with 250,000 in: fast $30 / $150 whatever the size:
    # 250,000 x $30 = $7.50; 1,000 x $150 = $0.15. Total $7.65.
    row = price("claude-opus-4-6", "2026-03-01", speed="fast", input_tokens=250_000,
                output_tokens=1_000)  # fmt: skip
    assert row["cost_usd"] == pytest.approx(7.65, abs=EXACT)


def test_batch_halves_every_token_rate_cache_included() -> None:
    # Opus 5.5 batch: $2 / $10, read $0.10, 5m $2.50, 1h $4.
    # 10,000 x $2 + 2,000 x $10 + 20,000 x $0.10 + 4,000 x $2.50 + 1,000 x $4 = $0.056
    row = price("claude-opus-5-5", service_tier="batch", **USAGE)
    assert row["cost_usd"] == pytest.approx(0.056, abs=EXACT)
    assert row["rate_cache_write_1h"] == pytest.approx(4.0, abs=EXACT)


def test_us_only_multiplies_every_token_rate_where_offered() -> None:
    # Sonnet 5.5 US-only x1.1: $2.20 / $11, read $0.11, 5m $2.75, 1h $4.40.
    # 10,000 x $2.20 + 2,000 x $11 + 20,000 x $0.11 + 4,000 x $2.75 + 1,000 x $4.40 = $0.0616
    row = price("claude-sonnet-5-5", inference_geo="us", **USAGE)
    assert row["cost_usd"] == pytest.approx(0.0616, abs=EXACT)
    # Haiku 4.5 does not offer it: its plain card.
    # 10,000 x $1 + 2,000 x $5 + 20,000 x $0.10 + 4,000 x $1.25 + 1,000 x $2 = $0.029
    plain = price("claude-haiku-4-5", inference_geo="us", **USAGE)
    assert plain["cost_usd"] == pytest.approx(0.029, abs=EXACT)


@pytest.mark.parametrize(
    ("model", "region", "usd"),
    [
        # Haiku 4.5 on a regional endpoint x1.1: 10,000 x $1.10 + 2,000 x $5.50 +
        # 20,000 x $0.11 + 4,000 x $1.375 + 1,000 x $2.20 = $0.0319
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("au.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("apac.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.0319),
        ("claude-haiku-4-5@20251001", "us-east5", 0.0319),
        # Global endpoints: the plain card, $0.029 (as above).
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", None, 0.029),
        ("claude-haiku-4-5@20251001", "global", 0.029),
        # Opus 4.1 carries no regional premium: 10,000 x $15 + 2,000 x $75 + 20,000 x $1.50 +
        # 4,000 x $18.75 + 1,000 x $30 = $0.435
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", None, 0.435),
    ],
)
def test_regional_endpoints_carry_the_premium_where_the_model_has_it(
    model: str, region: str | None, usd: float
) -> None:
    row = price(model, "2026-01-05", cloud_region=region, **USAGE)
    assert row["cost_usd"] == pytest.approx(usd, abs=EXACT)


def test_the_parts_combine_in_the_stated_order() -> None:
    # Sonnet 4.6 on 2026-02-20 (its >200K tier still in force), Batch API, US-only, regional
    # Bedrock profile: the tier's $6 / $22.50 / read $0.60, then x0.5 x1.1 x1.1 = x0.605:
    # $3.63 / $13.6125 / read $0.363. 150,000 in + 60,000 read = 210,000 > 200K:
    # 150,000 x $3.63 = $0.5445; 2,000 out x $13.6125 = $0.027225; 60,000 x $0.363 = $0.02178.
    # Total $0.593505.
    row = price("us.anthropic.claude-sonnet-4-6", "2026-02-20", service_tier="batch",
                inference_geo="us", input_tokens=150_000, output_tokens=2_000,
                cache_read_input_tokens=60_000)  # fmt: skip
    assert row["cost_usd"] == pytest.approx(0.593505, abs=EXACT)


def test_web_search_is_a_tools_part_not_discounted() -> None:
    # Haiku 4.5 batch: 1,000 in x $0.50 = $0.0005; 3 searches x $10 / 1,000 = $0.03 (web search
    # has no batch rate). Total $0.0305.
    row = price("claude-haiku-4-5", service_tier="batch", input_tokens=1_000,
                web_search_requests=3, web_fetch_requests=2)  # fmt: skip
    assert row["cost_tools_usd"] == pytest.approx(0.03, abs=EXACT)
    assert row["cost_usd"] == pytest.approx(0.0305, abs=EXACT)


def test_count_tokens_is_free_at_zero_rates() -> None:
    row = price("claude-opus-5-5", operation="count_tokens", input_tokens=50_000)
    assert row["cost_usd"] == 0.0 and row["rate_input"] == 0.0


def test_unknown_split_is_priced_at_the_assumed_ttl_and_marked() -> None:
    # Sonnet 5.5, 10,000 cache writes with no 5m/1h split. Default 5m: 10,000 x $2.50 = $0.025.
    default = price("claude-sonnet-5-5", input_tokens=0, cache_creation_input_tokens=10_000)
    assert default["cost_cache_write_usd"] == pytest.approx(0.025, abs=EXACT)
    assert default["cache_ttl_assumed"] == "5m"
    # [pricing] cache_ttl_by_service = {support-bot = "1h"}: 10,000 x $4 = $0.04.
    table = parse_config(
        {"pricing": {"cache_ttl": "5m", "cache_ttl_by_service": {"support-bot": "1h"}}}
    ).price_table()
    per_service = price("claude-sonnet-5-5", table=table, input_tokens=0,
                        cache_creation_input_tokens=10_000)  # fmt: skip
    assert per_service["cost_cache_write_usd"] == pytest.approx(0.04, abs=EXACT)
    assert per_service["cache_ttl_assumed"] == "1h"
    # A reported split is not an assumption.
    reported = price("claude-sonnet-5-5", input_tokens=0, cache_creation_input_tokens=10_000,
                     cache_creation_5m_input_tokens=10_000)  # fmt: skip
    assert reported["cache_ttl_assumed"] is None


def test_a_bad_ttl_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"cache_ttl.*'2h' is not a cache TTL \(5m or 1h\)"):
        parse_config({"pricing": {"cache_ttl": "2h"}})


SPELLINGS = {
    "claude-opus-5-5": ["claude-opus-5-5", "claude-opus-5-5[1m]", "anthropic.claude-opus-5-5",
                        "global.anthropic.claude-opus-5-5", "claude-opus-5-5-latest"],
    "claude-sonnet-5-5": ["claude-sonnet-5-5", "claude-sonnet-5-5[1m]",
                          "us.anthropic.claude-sonnet-5-5"],
    "claude-haiku-5-5": ["claude-haiku-5-5", "claude-haiku-5-5[1m]",
                         "au.anthropic.claude-haiku-5-5"],
    "claude-fable-5-2": ["claude-fable-5-2", "jp.anthropic.claude-fable-5-2"],
    "claude-opus-4-8": ["claude-opus-4-8", "claude-opus-4-8[1m]"],
    "claude-opus-4-6": ["claude-opus-4-6", "anthropic.claude-opus-4-6-v1:0",
                        "global.anthropic.claude-opus-4-6-v1", "claude-opus-4-6[1m]"],
    "claude-sonnet-4-5": ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5@20250929",
                          "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                          "apac.anthropic.claude-sonnet-4-5-20250929-v1:0",
                          "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                          "us.anthropic.claude-sonnet-4-5-20250929-v1:0"],
    "claude-haiku-4-5": ["claude-haiku-4-5-20251001", "claude-haiku-4-5@20251001"],
    "claude-opus-4": ["claude-opus-4-0", "claude-opus-4-20250514", "claude-opus-4@20250514",
                      "claude-4-opus-20250514"],
    "claude-sonnet-4": ["claude-sonnet-4-0", "claude-sonnet-4-20250514",
                        "anthropic.claude-sonnet-4-20250514-v1:0"],
    "claude-3-5-sonnet": ["claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20240620",
                          "claude-3-5-sonnet-latest", "claude-3-5-sonnet-v2@20241022",
                          "anthropic.claude-3-5-sonnet-20241022-v2:0"],
    "claude-3-opus": ["claude-3-opus-20240229", "claude-3-opus-latest", "claude-3-opus@20240229"],
    "claude-3-7-sonnet": ["claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest",
                          "claude-3-7-sonnet@20250219"],
    "claude-3-5-haiku": ["claude-3-5-haiku-20241022", "claude-3-5-haiku-latest",
                         "claude-3-5-haiku@20241022"],
    "claude-3-haiku": ["claude-3-haiku-20240307", "claude-3-haiku@20240307",
                       "anthropic.claude-3-haiku-20240307-v1:0"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("card", "spelling"), [(c, s) for c, spellings in SPELLINGS.items() for s in spellings]
)
def test_every_spelling_resolves(card: str, spelling: str) -> None:
    table = load_price_table()
    found = table.lookup(spelling, dt.date(2026, 12, 1))
    if found is None:  # a card that ended before: look it up in its own time
        found = table.lookup(spelling, dt.date(2025, 12, 1))
    assert found is not None and (found.id == card or card in found.aliases)
    assert normalize_model_id(spelling) in (card, *found.aliases)


def test_every_builtin_model_resolves_under_its_own_id() -> None:
    table = load_price_table()
    for card in table.cards:
        assert table.lookup(card.id, card.effective_from) is not None


def test_override_takes_the_five_rates_tiers_and_fast_rates() -> None:
    # A negotiated Opus 5.5 contract from 2026-11-01: $3 / $15, read $0.15, 5m $3.75, 1h $6,
    # a tier above 500,000 at double, fast $6 / $30 (read $0.30, 5m $7.50, 1h $12).
    five = {"input": 3, "output": 15, "cache_read": 0.15, "cache_write_5m": 3.75,
            "cache_write_1h": 6}  # fmt: skip
    table = parse_config({"prices": {"claude-opus-5-5": {
        **five, "effective_from": dt.date(2026, 11, 1),
        "tiers": [{"above": 500_000, **{k: 2 * v for k, v in five.items()}}],
        "fast": {"input": 6, "output": 30, "cache_read": 0.30, "cache_write_5m": 7.5,
                 "cache_write_1h": 12},
    }}}).price_table()  # fmt: skip
    # 10,000 x $3 + 2,000 x $15 + 20,000 x $0.15 + 4,000 x $3.75 + 1,000 x $6 = $0.084
    assert price("claude-opus-5-5", table=table, **USAGE)["cost_usd"] == pytest.approx(
        0.084, abs=EXACT
    )
    # Fast: 10,000 x $6 + 2,000 x $30 + 20,000 x $0.30 + 4,000 x $7.50 + 1,000 x $12 = $0.168
    fast = price("claude-opus-5-5", table=table, speed="fast", **USAGE)
    assert fast["cost_usd"] == pytest.approx(0.168, abs=EXACT)
    assert fast["price_version"] == "claude-opus-5-5@2026-11-01+override"
    # 600,000 in > 500,000: the tier's $6 -> $3.60.
    big = price("claude-opus-5-5", table=table, input_tokens=600_000)
    assert big["cost_usd"] == pytest.approx(3.6, abs=EXACT)
    # Before the contract: the built-in card, 600,000 x $4 = $2.40.
    old = price("claude-opus-5-5", "2026-10-15", table=table, input_tokens=600_000)
    assert old["cost_usd"] == pytest.approx(2.4, abs=EXACT)


def test_unknown_model_stays_null() -> None:
    row = price("claude-nova-6", input_tokens=1_000, web_search_requests=1)
    assert row["cost_usd"] is None and row["rate_input"] is None
    assert pl.Series([row["cost_input_usd"]]).null_count() == 1


_SHAPES = (
    "{id}", "{id}-20260101", "{id}-latest", "{id}[1m]", "{id}@20260101", "anthropic.{id}-v1:0",
    "anthropic.{id}-20260101-v1:0", *(f"{geo}.anthropic.{{id}}-20260101-v1:0"
                                      for geo in ("global", "us", "eu", "jp", "au", "apac")),
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.{id}-v1:0",
    " {upper} ",
)  # fmt: skip


@pytest.mark.parametrize("shape", _SHAPES)
def test_every_spelling_of_every_builtin_id_resolves(shape: str) -> None:
    table = load_price_table()
    for card in table.cards:
        for name in (card.id, *card.aliases):
            spelling = shape.format(id=name, upper=name.upper())
            assert normalize_model_id(spelling) in (card.id, *card.aliases), spelling
            assert table.lookup(spelling, card.effective_from) is not None, spelling
