"""The cost breakdown and spend by day as the runner computes them (the engine's rollup of a
registered frame, finished by cost_breakdown_from_hours) over hand-priced calls.

Prices used (clauditor/prices.toml, per million tokens): claude-sonnet-4-5 $3 in / $15 out,
claude-haiku-4-5 $1 in / $5 out. "mystery-model-9" has no price.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl
import pytest

from clauditor.analytics.costs import (
    GROUP_KEYS,
    cost_breakdown_from_hours,
    spend_by_day_from_hours,
)
from clauditor.analytics.engine import open_engine
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
T = dt.datetime(2026, 3, 9, 10, 0, tzinfo=dt.UTC)


def calls(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Priced calls frame; span ids and start times filled in when not given."""
    full = [
        {"span_id": f"{i:016x}", "start_time": T, "status": "ok", **row}
        for i, row in enumerate(rows)
    ]
    return price_calls(frame_from_rows(full))


def cost_breakdown(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """The runner's breakdown of ``frame`` by ``by``: rollup, then the Polars finish."""
    with open_engine(frame, sources=None) as engine:
        hours = engine.rollup(None, as_of=T + dt.timedelta(days=1), keys=by)
    return cost_breakdown_from_hours(hours, by)


@pytest.fixture
def sample() -> pl.DataFrame:
    return calls(
        [
            # summarize: 3 calls
            {"feature": "summarize", "request_model": SONNET, "input_tokens": 1_000},
            # 1,000 x $3/M = $0.003
            {
                "feature": "summarize",
                "request_model": SONNET,
                "response_model": f"{SONNET}-20250929",
                "input_tokens": 2_000,
                "output_tokens": 100,
            },
            # 2,000 x $3/M + 100 x $15/M = $0.006 + $0.0015 = $0.0075
            {
                "feature": "summarize",
                "request_model": HAIKU,
                "input_tokens": 1_000,
                "output_tokens": 200,
            },
            # 1,000 x $1/M + 200 x $5/M = $0.001 + $0.001 = $0.002
            # untagged: 4,000 x $3/M = $0.012
            {
                "feature": None,
                "request_model": SONNET,
                "input_tokens": 4_000,
                "code_location": "jobs:nightly",
            },
            # search: one unpriced call and 3,000 x $1/M = $0.003
            {"feature": "search", "request_model": "mystery-model-9", "input_tokens": 5_000},
            {"feature": "search", "request_model": HAIKU, "input_tokens": 3_000},
        ]
    )


def test_breakdown_by_feature_has_hand_computed_costs(sample: pl.DataFrame) -> None:
    out = cost_breakdown(sample, ["feature"])
    assert out.columns == [
        "feature",
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cost_usd",
        "share",
        "unpriced_calls",
        "tools_usd",
        "web_searches",
        "count_tokens_calls",
    ]
    rows = {r["feature"]: r for r in out.iter_rows(named=True)}
    # summarize: $0.003 + $0.0075 + $0.002 = $0.0125
    assert rows["summarize"]["cost_usd"] == pytest.approx(0.0125)
    assert rows["summarize"]["calls"] == 3
    assert rows["summarize"]["input_tokens"] == 4_000
    assert rows["summarize"]["output_tokens"] == 300
    assert rows["(untagged)"]["cost_usd"] == pytest.approx(0.012)
    # search: the priced call only ($0.003); the unpriced one is counted, not costed
    assert rows["search"]["cost_usd"] == pytest.approx(0.003)
    assert rows["search"]["unpriced_calls"] == 1
    assert rows["search"]["calls"] == 2
    # priced total $0.0275: shares 0.0125/0.0275, 0.012/0.0275, 0.003/0.0275
    assert rows["summarize"]["share"] == pytest.approx(0.0125 / 0.0275)
    assert rows["search"]["share"] == pytest.approx(0.003 / 0.0275)
    assert out["share"].sum() == pytest.approx(1.0)
    # sorted by cost, most expensive first
    assert out["feature"].to_list() == ["summarize", "(untagged)", "search"]


def test_breakdown_by_feature_and_model_keeps_unpriced_groups_null(sample: pl.DataFrame) -> None:
    out = cost_breakdown(sample, ["feature", "model"])
    got = {(r["feature"], r["model"]): r for r in out.iter_rows(named=True)}
    assert set(got) == {
        # model = coalesce(response_model, request_model) as the undated id: the dated
        # claude-sonnet-4-5-20250929 answer and the undated request are one model.
        ("summarize", SONNET),
        ("summarize", HAIKU),
        ("(untagged)", SONNET),
        ("search", "mystery-model-9"),
        ("search", HAIKU),
    }
    # $0.003 (undated) + $0.0075 (dated) = $0.0105
    assert got[("summarize", SONNET)]["cost_usd"] == pytest.approx(0.0105)
    unpriced = got[("search", "mystery-model-9")]
    assert unpriced["cost_usd"] is None  # unknown, not free
    assert unpriced["share"] is None
    assert unpriced["unpriced_calls"] == 1
    assert out.row(-1, named=True)["model"] == "mystery-model-9"  # NULL cost sorts last
    priced = out.filter(pl.col("cost_usd").is_not_null())
    assert priced["share"].sum() == pytest.approx(1.0)


def test_null_and_empty_keys_are_labelled(sample: pl.DataFrame) -> None:
    by_location = cost_breakdown(sample, ["code_location"])
    assert set(by_location["code_location"]) == {"jobs:nightly", "(none)"}
    by_user = cost_breakdown(sample, ["user", "environment", "service"])
    assert by_user.select("user", "environment", "service").unique().rows() == [
        ("(none)", "(none)", "(none)")
    ]
    empty_tag = calls([{"feature": "", "request_model": SONNET, "input_tokens": 1_000}])
    assert cost_breakdown(empty_tag, ["feature"])["feature"].to_list() == ["(untagged)"]


def test_breakdown_with_no_keys_is_the_total(sample: pl.DataFrame) -> None:
    total = cost_breakdown(sample, [])
    assert total.height == 1
    assert total["cost_usd"][0] == pytest.approx(0.0275)
    assert total["calls"][0] == 6
    assert total["unpriced_calls"][0] == 1


def test_breakdown_of_only_unpriced_calls_has_null_cost() -> None:
    out = cost_breakdown(calls([{"feature": "x", "request_model": "mystery-model-9"}]), ["feature"])
    assert out["cost_usd"].to_list() == [None]
    assert out["unpriced_calls"].to_list() == [1]


def test_unknown_group_key_lists_the_keys(sample: pl.DataFrame) -> None:
    with pytest.raises(ValueError) as info:
        cost_breakdown(sample, ["feature", "colour"])
    assert "colour" in str(info.value)
    for key in GROUP_KEYS:
        assert key in str(info.value)
    with pytest.raises(ValueError):
        cost_breakdown(sample, "feature")  # a bare string is not a list of keys


def test_spend_by_day_uses_local_calendar_days() -> None:
    frame = calls(
        [
            # 23:30 UTC on the 9th is 00:30 on the 10th in Berlin
            {
                "feature": "a",
                "request_model": SONNET,
                "input_tokens": 1_000,
                "start_time": dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.UTC),
            },  # $0.003
            {
                "feature": "a",
                "request_model": SONNET,
                "input_tokens": 2_000,
                "start_time": dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC),
            },  # $0.006
            {
                "feature": None,
                "request_model": "mystery-model-9",
                "start_time": dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC),
            },
        ]
    )

    def spend_by_day(frame: pl.DataFrame, *, tz: str = "UTC", by: str = "feature"):
        # The production path: the engine's rollup of the frame at the zone's grain, finished.
        from clauditor.analytics.engine import open_engine
        from clauditor.analytics.runner import rollup_at_zone

        with open_engine(frame) as engine:
            hours, _ = rollup_at_zone(engine, None, as_of=T, tz=tz, keys=[by])
        return spend_by_day_from_hours(hours, tz=tz, by=by)

    utc_days = spend_by_day(frame)
    assert utc_days.columns == ["day", "feature", "calls", "cost_usd", "unpriced_calls"]
    assert utc_days.filter(pl.col("feature") == "a")["cost_usd"].to_list() == [pytest.approx(0.009)]
    berlin = spend_by_day(frame, tz="Europe/Berlin")
    a = berlin.filter(pl.col("feature") == "a").sort("day")
    assert a["day"].to_list() == [dt.date(2026, 3, 9), dt.date(2026, 3, 10)]
    assert a["cost_usd"].to_list() == [pytest.approx(0.006), pytest.approx(0.003)]
    untagged = berlin.filter(pl.col("feature") == "(untagged)")
    assert untagged["cost_usd"].to_list() == [None]
    assert untagged["unpriced_calls"].to_list() == [1]
    by_model = spend_by_day(frame, by="model")
    assert set(by_model["model"]) == {SONNET, "mystery-model-9"}
