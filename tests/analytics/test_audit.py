"""The checklist audit, as the runner computes it (the engine's figures of a registered frame
or a DuckDB file), on small sets of calls whose verdicts can be worked out by hand.

Rates: the claude-haiku-4-5, claude-sonnet-4-5, claude-opus-4-5 and claude-3-7-sonnet cards of
clauditor/prices.toml ($1/$5, $3/$15, $5/$25 and $3/$15 per million tokens in/out).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clauditor.analytics.audit_items import AUDIT_ITEMS
from clauditor.analytics.runner import audit_table
from clauditor.config import Config, parse_config

UTC = dt.UTC
T0 = dt.datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def audit(calls: pl.DataFrame, config: Config | None = None) -> pl.DataFrame:
    """The runner's audit of every call of ``calls`` registered as the source."""
    return audit_table(calls, None, config=config or Config(), as_of=at(60 * 24))


def items(frame) -> dict[str, dict]:
    return {r["item"]: r for r in frame.to_dicts()}


def test_every_item_is_scored_once(make_calls):
    out = audit(make_calls(dict(max_tokens=1024, output_tokens=100)))
    assert out["item"].to_list() == list(AUDIT_ITEMS)
    assert set(out["status"]) <= {"pass", "warn", "fail", "n/a"}


def test_model_mix_attribution_errors_and_max_tokens(make_calls):
    rows = []
    # 16 Haiku, 2 Sonnet, 2 Opus calls, plus two more Sonnet calls below (22 in all).
    rows += [
        dict(
            start_time=at(i),
            request_model="claude-haiku-4-5",
            response_model="claude-haiku-4-5",
            max_tokens=100,
            output_tokens=50,
        )
        for i in range(16)
    ]
    rows += [dict(start_time=at(i), max_tokens=100, output_tokens=50) for i in range(2)]
    rows += [
        dict(
            start_time=at(i),
            request_model="claude-opus-4-5",
            response_model="claude-opus-4-5",
            max_tokens=100,
            output_tokens=50,
        )
        for i in range(2)
    ]
    # One untagged Sonnet call without max_tokens: 1,000 in = $0.003, 100 out = $0.0015.
    rows.append(
        dict(start_time=at(30), feature=None, output_tokens=100, code_location="app.jobs:run")
    )
    # One failure: 1 of 22 calls = 4.5 % (warn: above 1 %, at most 5 %).
    rows.append(
        dict(
            start_time=at(31),
            status="error",
            error_type="overloaded_error",
            http_status=529,
            input_tokens=0,
            retries=2,
        )
    )
    got = items(audit(make_calls(*rows)))
    mix = got["model_mix"]
    assert mix["status"] == "warn"
    # Haiku 16/22 = 72.7 %, Sonnet 4/22 = 18.2 %, Opus 2/22 = 9.1 % (over its 5 %).
    assert "Haiku 72.7 %, Sonnet 18.2 %, Opus 9.1 %" in mix["evidence"]
    # Opus 4.5 ($5/$25) calls: 1,000 in + 50 out = 0.005 + 0.00125 = $0.00625 each, $0.0125;
    # on Sonnet 5.5 ($2/$10): 0.002 + 0.0005 = $0.0025 each, $0.005; saving $0.0075, of
    # which the part beyond a 5 % share: (2/22 - 0.05) / (2/22) = 0.45 -> $0.003375.
    assert mix["usd_at_stake"] == pytest.approx(0.003375)
    assert got["error_rate"]["status"] == "warn"
    assert "1 of 22 calls failed" in got["error_rate"]["evidence"]
    attribution = got["feature_attribution"]
    # Untagged $0.0045 of the total: 16 x (0.001 + 0.00025) + 2 x 0.00375 + 0.0125 + 0.0045
    # = 0.02 + 0.0075 + 0.0125 + 0.0045 = $0.0445 -> 10.1 %: warn.
    assert attribution["status"] == "warn"
    assert attribution["usd_at_stake"] == pytest.approx(0.0045)
    assert "10.1 %" in attribution["evidence"]
    assert "max_tokens_set" not in got  # the API requires max_tokens: nothing to flag
    assert got["retries_visible"]["status"] == "pass"


def test_max_tokens_sized_to_what_the_feature_uses(make_calls):
    at = lambda i: dt.datetime(2026, 10, 1, 12, i, tzinfo=dt.UTC)  # noqa: E731
    rows = [
        # summarize: cap 4,096, outputs of 200: the p99 (200) is under 10 % of the cap.
        *[dict(feature="summarize", start_time=at(i), max_tokens=4096, output_tokens=200)
          for i in range(20)],
        # answer: cap 300, 3 of 20 calls (15 % > 2 %) cut off at it. Each cut call on Sonnet 4.5:
        # 1,000 in x $3/M + 300 out x $15/M = $0.003 + $0.0045 = $0.0075; 3 x $0.0075 = $0.0225.
        *[dict(feature="answer", start_time=at(i), max_tokens=300, output_tokens=120)
          for i in range(17)],
        *[dict(feature="answer", start_time=at(i), max_tokens=300, output_tokens=300,
               stop_reason="max_tokens") for i in range(3)],
        # fine: cap 1,000, p99 of 400 and nothing cut off.
        *[dict(feature="fine", start_time=at(i), max_tokens=1000, output_tokens=400)
          for i in range(20)],
    ]  # fmt: skip
    sized = items(audit(make_calls(*rows)))["max_tokens_sized"]
    assert sized["status"] == "warn"
    assert "answer: 15.0 % of calls cut off at max_tokens 300 ($0.02)" in sized["evidence"]
    assert "summarize caps at 4,096, over 10x its p99 output of 200" in sized["evidence"]
    assert "fine" not in sized["evidence"]
    assert sized["usd_at_stake"] == pytest.approx(0.0225, abs=1e-9)


def test_deprecated_model_and_budget_config(make_calls):
    calls = make_calls(
        dict(
            request_model="claude-3-7-sonnet",
            response_model="claude-3-7-sonnet-20250219",
            max_tokens=100,
            output_tokens=10,
        )
    )
    config = parse_config({"budget": {"monthly_usd": 500}})
    got = items(audit(calls, config=config))
    assert got["deprecated_models"]["status"] == "warn"
    assert (
        "claude-3-7-sonnet (deprecated 2025-10-28, 1 calls)" in got["deprecated_models"]["evidence"]
    )
    assert got["budget_configured"]["status"] == "pass"
    # The runner always has a configuration: one without [budget] monthly_usd is a warning.
    unset = items(audit(calls))["budget_configured"]
    assert unset["status"] == "warn" and "no [budget] monthly_usd" in unset["evidence"]


def test_non_interactive_sync_work_is_a_batch_candidate(make_calls):
    rows = [
        dict(
            feature="digest",
            start_time=at(i),
            duration_ms=20_000.0,
            max_tokens=500,
            output_tokens=100,
        )
        for i in range(5)
    ]
    rows += [
        dict(
            feature="chat",
            start_time=at(i),
            user_id="u1",
            stream=True,
            ttft_ms=300.0,
            max_tokens=500,
            output_tokens=100,
        )
        for i in range(5)
    ]
    got = items(audit(make_calls(*rows)))
    batch = got["batch_api"]
    assert batch["status"] == "fail"  # half the spend could be halved
    assert "digest" in batch["evidence"] and "chat" not in batch["evidence"].split(":", 1)[1]
    # digest: 5 x (0.003 + 100 x $15/M = 0.0015) = $0.0225, half of it at stake.
    assert batch["usd_at_stake"] == pytest.approx(0.01125)
    assert got["streaming"]["status"] == "pass"


def test_context_growth_over_conversation_turns(make_calls):
    rows = []
    for c in range(3):
        for turn in range(4):  # prompt 1,000 -> 4,000 tokens: 4x growth
            rows.append(
                dict(
                    conversation_id=f"conv{c}",
                    start_time=at(c * 10 + turn),
                    input_tokens=1000 * (turn + 1),
                    max_tokens=100,
                    output_tokens=10,
                )
            )
    got = items(audit(make_calls(*rows)))["context_growth"]
    assert got["status"] == "warn"
    assert "median prompt growth 4.0x" in got["evidence"]
    # History share per turn: 0, 1/2, 2/3, 3/4 of 2,000/3,000/4,000 tokens = 1,000 + 2,000 +
    # 3,000 = 6,000 tokens per conversation at $3/M = $0.018; three conversations $0.054.
    assert got["usd_at_stake"] == pytest.approx(0.054)


def test_audit_survives_calls_without_durations() -> None:
    # Spans from other instrumentations may carry no duration: the audit must still score them.
    from clauditor.pricing import price_calls
    from clauditor.schema import frame_from_rows
    from tests.conftest import call_row

    rows = [
        call_row(feature="nightly", duration_ms=None, stream=False, input_tokens=5000)
        for _ in range(30)
    ]
    result = audit(price_calls(frame_from_rows(rows)))
    batch = result.filter(result["item"] == "batch_api").row(0, named=True)
    assert "duration unknown" in batch["evidence"]


def test_batch_what_if_discounts_tokens_not_web_search_fees(db_path) -> None:
    # 30 nightly Sonnet 4.5 calls, each 10,000 in x $3/M = $0.03 plus 2 web searches x $10/1,000
    # = $0.02. The Batch API halves the token part only: 30 x $0.03 x 0.5 = $0.45 at stake
    # (halving the whole $1.50 would claim $0.75), from a frame and from a DuckDB file.
    from clauditor.pricing import price_calls
    from clauditor.schema import frame_from_rows
    from tests.conftest import call_row

    rows = [call_row(feature="nightly", stream=False, input_tokens=10_000, web_search_requests=2,
                     duration_ms=40_000.0) for _ in range(30)]  # fmt: skip
    calls = price_calls(frame_from_rows(rows))
    for result in (audit(calls), _planned_audit(calls, db_path)):
        batch = result.filter(result["item"] == "batch_api").row(0, named=True)
        assert batch["usd_at_stake"] == pytest.approx(0.45, abs=1e-9)


def _planned_audit(calls, db_path, config=None):
    """The audit as run_all_jobs computes it from DuckDB aggregates over the same calls."""
    from clauditor.analytics.runner import run_jobs as run_all_jobs
    from clauditor.config import Config
    from clauditor.store import write_calls

    write_calls(db_path, calls)
    return run_all_jobs(db_path, None, config=config or Config(), as_of=at(60 * 24))["audit"]


def test_audit_of_a_mixed_workload_from_a_database(make_calls, db_path):
    opus = dict(request_model="claude-opus-4-5", response_model="claude-opus-4-5")
    rows = [
        # Interactive, capped, streamed and not; one truncated; users.
        *[dict(feature="chat", start_time=at(i), user_id=f"u{i % 3}", stream=i % 2 == 0,
               max_tokens=200, output_tokens=50 + i, duration_ms=1000.0 + 700 * i)
          for i in range(7)],
        dict(feature="chat", start_time=at(8), user_id="u1", max_tokens=200, output_tokens=200,
             stop_reason="max_tokens"),
        # Non-interactive sync work, one without max_tokens, untagged by code location.
        *[dict(feature="digest", start_time=at(i), duration_ms=9000.0 + i, max_tokens=4000,
               output_tokens=100) for i in range(4)],
        dict(feature=None, code_location="jobs:run", start_time=at(3), output_tokens=30),
        dict(feature="", code_location=None, start_time=at(4), output_tokens=30),
        # Opus over its share: small prompts, and one long-context prompt (priced above 200K).
        *[dict(feature="research", start_time=at(20 + i), max_tokens=1000, output_tokens=400,
               **opus) for i in range(3)],
        dict(feature="research", start_time=at(30), input_tokens=250_000, max_tokens=1000,
             output_tokens=300, cache_read_input_tokens=1000, **opus),
        # Batch results, and a conversation of four growing turns.
        dict(feature="digest", start_time=at(40), operation="batch", service_tier="batch",
             max_tokens=4000, output_tokens=80),
        *[dict(feature="chat", conversation_id="c1", user_id="u1", start_time=at(50 + t),
               input_tokens=1000 * (t + 1), max_tokens=200, output_tokens=20) for t in range(4)],
        # Failures, retries.
        dict(start_time=at(31), status="error", error_type="overloaded_error", http_status=529,
             input_tokens=0, retries=2),
        dict(start_time=at(32), status="error", error_type="rate_limit_error", http_status=429,
             input_tokens=0, response_model=None, retries=1),
    ]  # fmt: skip
    got = items(_planned_audit(make_calls(*rows), db_path))
    # 7 + 1 + 4 + 1 + 1 + 3 + 1 + 1 + 4 + 2 = 25 calls, 2 of them failed: 8.0 %, over 5 %.
    assert got["error_rate"]["status"] == "fail"
    assert "2 of 25 calls failed (8.0 %" in got["error_rate"]["evidence"]
    # Opus 4 of 25 = 16 % (over 15 %: fail), Sonnet the other 21 = 84 %.
    assert got["model_mix"]["status"] == "fail" and got["model_mix"]["usd_at_stake"] > 0
    assert "Haiku 0.0 %, Sonnet 84.0 %, Opus 16.0 %" in got["model_mix"]["evidence"]
    # c1 re-sends 0 + 1,000 + 2,000 + 3,000 = 6,000 history tokens x $3/M = $0.018.
    assert got["context_growth"]["status"] == "warn"
    assert got["context_growth"]["usd_at_stake"] == pytest.approx(0.018, abs=1e-9)
    # chat: 1 of 12 calls cut off (8.3 %); it cost 1,000 x $3/M + 200 x $15/M = $0.006.
    sized = got["max_tokens_sized"]
    assert sized["status"] == "warn" and "chat: 8.3 % of calls cut off" in sized["evidence"]
    assert sized["usd_at_stake"] == pytest.approx(0.006, abs=1e-9)
    # Untagged: 2 calls of 1,000 x $3/M + 30 x $15/M = $0.00345 each, $0.0069.
    assert got["feature_attribution"]["usd_at_stake"] == pytest.approx(0.0069, abs=1e-9)
    assert "2 calls resent (8.0 %)" in got["retries_visible"]["evidence"]


def test_planned_audit_of_no_calls_is_all_not_applicable(make_calls, db_path):
    from clauditor.store import write_calls

    calls = make_calls(dict(start_time=at(0)))
    write_calls(db_path, calls)
    from clauditor.analytics.periods import Period
    from clauditor.analytics.runner import run_jobs as run_all_jobs
    from clauditor.config import Config

    empty = Period(start=at(-600), end=at(-500), label="before any call")
    got = run_all_jobs(db_path, empty, config=Config(), as_of=at(0))["audit"]
    assert set(got["status"]) == {"n/a"}
