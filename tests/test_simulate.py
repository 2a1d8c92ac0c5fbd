"""The telemetry simulator and the committed sample.

Everything is read back from the JSON the simulator wrote, with the small parser below, so the
tests check what an ingest pipeline would see, not the generator's internals.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from clauditor.config import load_config
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.simulator import SAMPLE_END, Incident, simulate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_logs" / "sample-30d.jsonl.gz"
SAMPLE_CONFIG = REPO / "sample_logs" / "clauditor.toml"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
SPAN_NAMES = {
    "anthropic.messages.create",
    "anthropic.messages.count_tokens",
    "anthropic.messages.batches.results",
}
# Every JSON object key the OTLP/JSON encoding uses here (attribute keys are values, not keys).
OTLP_KEYS = {
    "resourceSpans", "resource", "attributes", "scopeSpans", "scope", "name", "version",
    "spans", "traceId", "spanId", "parentSpanId", "kind", "startTimeUnixNano",
    "endTimeUnixNano", "status", "code", "message", "key", "value", "stringValue", "intValue",
    "doubleValue", "boolValue",
}  # fmt: skip


# --- reading the output back ----------------------------------------------------------------
def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from f


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        ((kind, value),) = kv["value"].items()
        out[kv["key"]] = int(value) if kind == "intValue" else value
    return out


def _spans(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span, span attributes) for every span in the file."""
    for line in _open_text(path):
        for rs in json.loads(line)["resourceSpans"]:
            resource = _attrs(rs["resource"]["attributes"])
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    yield resource, span, _attrs(span["attributes"])


def _calls(path: Path) -> pl.DataFrame:
    """A priced ``calls`` frame, normalized as ingest does it (uncached input tokens)."""
    rows = []
    for resource, span, a in _spans(path):
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        read = a.get("gen_ai.usage.cache_read.input_tokens", 0)
        write = a.get("gen_ai.usage.cache_write.input_tokens", 0)
        inclusive = a.get("gen_ai.usage.input_tokens")
        rows.append(
            {
                "span_id": span["spanId"],
                "start_time": datetime.fromtimestamp(start / 1e9, UTC),
                "duration_ms": (end - start) / 1e6,
                "ttft_ms": a.get("clauditor.ttft_ms"),
                "service": resource["service.name"],
                "environment": resource["deployment.environment.name"],
                "feature": a.get("clauditor.feature"),
                "user_id": a.get("clauditor.user_id"),
                "conversation_id": a.get("gen_ai.conversation.id"),
                "code_location": a.get("clauditor.code_location"),
                "operation": a.get("clauditor.operation"),
                "request_model": a.get("gen_ai.request.model"),
                "response_model": a.get("gen_ai.response.model"),
                "max_tokens": a.get("gen_ai.request.max_tokens"),
                "stream": a.get("gen_ai.request.stream"),
                "service_tier": a.get("anthropic.response.service_tier"),
                "input_tokens": None if inclusive is None else inclusive - read - write,
                "output_tokens": a.get("gen_ai.usage.output_tokens"),
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write,
                "cache_creation_1h_input_tokens": a.get(
                    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
                ),
                "stop_reason": a.get("anthropic.message.stop_reason"),
                "status": "error" if span["status"].get("code") == 2 else "ok",
                "http_status": a.get("http.response.status_code"),
                "error_type": a.get("error.type"),
                "retries": a.get("http.request.resend_count", 0),
            }
        )
    return price_calls(frame_from_rows(rows)).sort("start_time")


AGENT_WORKER = pl.col("service") == "agent-worker"


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _hit_ratio(frame: pl.DataFrame) -> float:
    """Cache reads over all input tokens (uncached + reads + writes)."""
    read = frame["cache_read_input_tokens"].sum()
    total = read + frame["cache_creation_input_tokens"].sum() + frame["input_tokens"].sum()
    return read / total


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample regenerated with the documented arguments."""
    out = tmp_path_factory.mktemp("sample") / "sample-30d.jsonl.gz"
    summary = simulate(out, days=30, seed=30)
    assert summary.out == out
    return out


@pytest.fixture(scope="module")
def sample(regenerated: Path) -> pl.DataFrame:
    return _calls(regenerated)


# --- arguments, determinism, format ---------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 0}, "days"),
        ({"days": -3}, "days"),
        ({"scale": 0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"scale": math.nan}, "scale"),
    ],
)
def test_rejects_impossible_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(tmp_path / "out.jsonl", **kwargs)
    assert not (tmp_path / "out.jsonl").exists()


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.jsonl.gz" for name in ("a", "b", "c")]
    simulate(paths[0], days=2, seed=11)
    simulate(paths[1], days=2, seed=11)
    simulate(paths[2], days=2, seed=12)
    first = paths[0].read_bytes()
    assert first == paths[1].read_bytes()  # different file names: the gzip header has none
    assert first != paths[2].read_bytes()
    # gzip header: no FNAME flag, MTIME 0, so the bytes never depend on when or where.
    assert first[:2] == b"\x1f\x8b" and first[3] & 0x08 == 0 and first[4:8] == b"\0\0\0\0"

    plain = tmp_path / "plain.jsonl"
    simulate(plain, days=2, seed=11)
    assert plain.read_bytes() == gzip.decompress(first)


def test_output_follows_otlp_json_rules(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "two-days.jsonl"
    summary = simulate(out, days=2, seed=3, end=_at(2026, 3, 4))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert summary.lines == len(lines) and summary.spans > 100
    assert (summary.start, summary.end) == (_at(2026, 3, 2), _at(2026, 3, 4))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert set(node) <= OTLP_KEYS, set(node) - OTLP_KEYS
            if "intValue" in node:
                assert isinstance(node["intValue"], str) and node["intValue"].lstrip("-").isdigit()
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    spans = 0
    span_ids = set()
    lo, hi = summary.start.timestamp() * 1e9, summary.end.timestamp() * 1e9
    for line in lines:
        request = json.loads(line)
        walk(request)
        (rs,) = request["resourceSpans"]
        assert set(_attrs(rs["resource"]["attributes"])) == {
            "service.name",
            "deployment.environment.name",
        }
        (ss,) = rs["scopeSpans"]
        assert ss["scope"] == {"name": "com.anthropic.sdk.python", "version": "2.12.0"}
        assert 1 <= len(ss["spans"]) <= 200
        for span in ss["spans"]:
            spans += 1
            assert HEX32.match(span["traceId"]) and HEX16.match(span["spanId"])
            assert span["parentSpanId"] == "" or HEX16.match(span["parentSpanId"])
            assert span["name"] in SPAN_NAMES and span["kind"] == 3
            start, end = span["startTimeUnixNano"], span["endTimeUnixNano"]
            assert isinstance(start, str) and isinstance(end, str)
            assert lo <= int(start) < hi and int(end) >= int(start)
            a = _attrs(span["attributes"])
            assert a["gen_ai.provider.name"] == "anthropic"
            assert a["clauditor.code_location"]
            failed = "error.type" in a
            assert (span["status"].get("code") == 2) == failed
            assert ("gen_ai.usage.input_tokens" in a) == (
                not failed and span["name"] != "anthropic.messages.count_tokens"
            )
            if "clauditor.ttft_ms" in a:
                assert a["gen_ai.request.stream"] is True
                assert isinstance(a["clauditor.ttft_ms"], float)
            span_ids.add(span["spanId"])
    assert spans == summary.spans == len(span_ids)


def test_inclusive_input_tokens_equal_uncached_plus_cache(regenerated: Path) -> None:
    """gen_ai.usage.input_tokens (OTel, inclusive) = clauditor's uncached + reads + writes."""
    checked = 0
    for _, _, a in _spans(regenerated):
        if "gen_ai.usage.input_tokens" not in a:
            continue
        read = a["gen_ai.usage.cache_read.input_tokens"]
        write = a["gen_ai.usage.cache_write.input_tokens"]
        assert a["gen_ai.usage.input_tokens"] == a["clauditor.usage.input_tokens"] + read + write
        assert write == (
            a["anthropic.usage.cache_creation.ephemeral_5m_input_tokens"]
            + a["anthropic.usage.cache_creation.ephemeral_1h_input_tokens"]
        )
        checked += 1
    assert checked > 40_000


def test_scale_multiplies_volume(tmp_path: Path) -> None:
    base = simulate(tmp_path / "a.jsonl", days=2, seed=5)
    double = simulate(tmp_path / "b.jsonl", days=2, seed=5, scale=2.0)
    assert 1.8 < double.spans / base.spans < 2.2


# --- the committed sample --------------------------------------------------------------------
def test_committed_sample_matches_the_documented_command(regenerated: Path) -> None:
    # Compare the JSON lines, not the compressed bytes: a different zlib build may compress the
    # same lines differently, and the lines are what must not drift.
    assert SAMPLE.is_file(), "sample_logs/sample-30d.jsonl.gz is missing"
    committed = gzip.decompress(SAMPLE.read_bytes())
    assert committed == gzip.decompress(regenerated.read_bytes())
    readme = (REPO / "sample_logs" / "README.md").read_text(encoding="utf-8")
    assert "clauditor simulate --days 30 --seed 30 --out sample_logs/sample-30d.jsonl.gz" in readme


def test_committed_sample_is_small() -> None:
    assert SAMPLE.stat().st_size <= 10_000_000


def test_sample_summary_lists_the_planted_incidents(tmp_path: Path) -> None:
    # A tiny scale is enough: the incident list depends on the period, not the volume.
    summary = simulate(tmp_path / "s.jsonl", days=30, seed=30, scale=0.01)
    assert summary.start == _at(2026, 10, 31) and summary.end == SAMPLE_END == _at(2026, 11, 30)
    assert [(i.name, i.start, i.end) for i in summary.incidents] == [
        ("529 storm", _at(2026, 11, 9, 14), _at(2026, 11, 9, 14, 45)),
        ("runaway loop", _at(2026, 11, 16, 1, 10), _at(2026, 11, 16, 2, 40)),
        ("cache regression after deploy", _at(2026, 11, 19, 10), _at(2026, 11, 30)),
    ]
    assert "claude-opus-5-5" in summary.incidents[1].where
    full = simulate(tmp_path / "full.jsonl", days=30, seed=30)
    assert full.incidents[-1].name == "budget 80% crossing"
    assert full.incidents[-1].start == _at(2026, 11, 23)
    assert all(isinstance(i, Incident) for i in full.incidents)


def test_sample_traffic_looks_real(sample: pl.DataFrame) -> None:
    assert 40_000 <= sample.height <= 60_000
    ok = sample.filter(pl.col("status") == "ok")
    # Several services, environments and models; ~5 % untagged calls with a code location.
    assert set(sample["service"]) == {"support-bot", "docs-app", "agent-worker"}
    assert set(sample["environment"]) == {"prod", "staging"}
    untagged = sample.filter(pl.col("feature").is_null())
    assert 0.03 < untagged.height / sample.height < 0.07
    assert untagged["code_location"].null_count() == 0
    # Unpriced model calls have NULL cost (never 0); count_tokens and batch traffic exist.
    unpriced = ok.filter(pl.col("request_model") == "claude-experimental-2026")
    assert unpriced.height > 20 and unpriced["cost_usd"].null_count() == unpriced.height
    assert sample.filter(pl.col("operation") == "count_tokens").height > 500
    batch = ok.filter(pl.col("operation") == "batch")
    assert batch.height > 1000 and set(batch["service_tier"]) == {"batch"}
    assert set(batch["start_time"].dt.hour()) == {2}
    # Some calls without max_tokens, some stopped by it, some 1-hour cache writes.
    assert sample["max_tokens"].null_count() > 1000
    assert ok.filter(pl.col("stop_reason") == "max_tokens").height > 100
    assert ok.filter(pl.col("cache_creation_1h_input_tokens") > 0).height > 50
    # Agent conversations grow: later turns read more cached context than first turns.
    turns = ok.filter(
        pl.col("conversation_id").is_not_null(), pl.col("request_model") == "claude-sonnet-5-5"
    )
    growth = (
        turns.group_by("conversation_id")
        .agg(
            pl.col("cache_read_input_tokens").first().alias("first"),
            pl.col("cache_read_input_tokens").last().alias("last"),
            pl.len().alias("turns"),
        )
        .filter(pl.col("turns") >= 3)
    )
    assert (growth["last"] > growth["first"]).mean() > 0.95
    # Diurnal and weekly load: afternoons beat nights, weekdays beat weekends (2026-10-31 to
    # 11-29: 20 weekdays, 10 weekend days).
    by_hour = Counter(sample["start_time"].dt.hour().to_list())
    assert by_hour[15] > 2 * by_hour[4]
    weekday = sample.filter(pl.col("start_time").dt.weekday() <= 5).height / 20
    weekend = sample.filter(pl.col("start_time").dt.weekday() > 5).height / 10
    assert weekend < 0.6 * weekday
    # Background errors of every kind, ~1-2 % outside the storm; streams report TTFT.
    calm = sample.filter(pl.col("start_time").dt.date() != date(2026, 11, 9))
    assert 0.01 < (calm["status"] == "error").mean() < 0.025
    assert {
        "rate_limit_error",
        "api_error",
        "client_timeout_error",
        "invalid_request_error",
    } <= set(calm["error_type"].drop_nulls())
    streams = ok.filter(pl.col("stream"))
    assert streams["ttft_ms"].null_count() == 0
    assert (
        ok.filter(~pl.col("stream").fill_null(False))["ttft_ms"].null_count()
        == ok.height - streams.height
    )
    durations = ok.filter(pl.col("operation") == "chat")["duration_ms"]
    assert durations.quantile(0.05) > 100 and durations.quantile(0.99) < 120_000


# --- the planted incidents, found in the data ------------------------------------------------
def test_529_storm(sample: pl.DataFrame) -> None:
    lo, hi = _at(2026, 11, 9, 14), _at(2026, 11, 9, 14, 45)
    in_storm = pl.col("start_time").is_between(lo, hi, closed="left")
    overloaded = sample.filter(pl.col("error_type") == "overloaded_error")
    assert overloaded.height > 20
    assert overloaded.filter(~in_storm).height == 0
    assert set(overloaded["http_status"]) == {529} and set(overloaded["retries"]) == {2}
    storm = sample.filter(in_storm)
    assert {"support-bot", "docs-app", "agent-worker"} <= set(overloaded["service"])
    assert 0.25 < (storm["status"] == "error").mean() < 0.5
    # Every 15 minutes of the storm is far above a 1 % error-rate threshold.
    for quarter in range(3):
        start = lo + timedelta(minutes=15 * quarter)
        part = storm.filter(pl.col("start_time").is_between(start, start + timedelta(minutes=15)))
        assert (part["status"] == "error").mean() > 0.1


def test_runaway_loop(sample: pl.DataFrame) -> None:
    lo, hi = _at(2026, 11, 16, 1, 10), _at(2026, 11, 16, 2, 40)
    # doc-summarize runs on Opus 5.5 too; in the agent worker only the loop does.
    opus = sample.filter(
        pl.col("request_model") == "claude-opus-5-5", pl.col("service") == "agent-worker"
    )
    assert opus["start_time"].min() >= lo and opus["start_time"].max() < hi
    assert set(opus["feature"]) == {"agent-tools"} and set(opus["environment"]) == {"prod"}
    assert 600 <= opus.height <= 900  # ~500 an hour for 90 minutes
    ok = opus.filter(pl.col("status") == "ok")
    assert (ok["input_tokens"] + ok["cache_read_input_tokens"]).min() > 25_000
    hourly = (
        sample.group_by_dynamic("start_time", every="1h")
        .agg(pl.col("cost_usd").sum())
        .with_columns(pl.col("start_time").dt.replace_time_zone(None))
    )
    typical = hourly["cost_usd"].median()
    spike = hourly.filter(
        pl.col("start_time").is_in([datetime(2026, 11, 16, 1), datetime(2026, 11, 16, 2)])
    )
    assert spike["cost_usd"].min() > 20 * typical
    assert hourly["cost_usd"].arg_max() in {
        i for i, v in enumerate(hourly["start_time"]) if v.date() == date(2026, 11, 16)
    }


def test_cache_regression_after_deploy(sample: pl.DataFrame) -> None:
    deploy = _at(2026, 11, 19, 10)
    chat = sample.filter(
        pl.col("feature") == "support-chat",
        pl.col("environment") == "prod",
        pl.col("status") == "ok",
    )
    before = chat.filter(pl.col("start_time") < deploy)
    after = chat.filter(pl.col("start_time") >= deploy)
    assert 0.8 < _hit_ratio(before) < 0.9
    assert _hit_ratio(after) < 0.1
    # Right at the deploy, not drifting: the day before is healthy, the day after is not.
    assert _hit_ratio(before.filter(pl.col("start_time") >= deploy - timedelta(days=1))) > 0.75
    assert _hit_ratio(after.filter(pl.col("start_time") < deploy + timedelta(days=1))) < 0.1
    # Staging, which did not get the deploy, keeps caching.
    staging = sample.filter(pl.col("feature") == "support-chat", pl.col("environment") == "staging")
    assert (
        _hit_ratio(staging.filter(pl.col("status") == "ok", pl.col("start_time") >= deploy)) > 0.4
    )


def test_budget_crosses_80_percent_on_november_23(sample: pl.DataFrame) -> None:
    config = load_config(SAMPLE_CONFIG)
    monthly = config.budget.monthly_usd
    assert monthly is not None and config.budget.thresholds == (0.8, 1.0, 1.2)
    # The sample starts on 31 October; the month-to-date is November's.
    daily = (
        sample.filter(pl.col("start_time") >= _at(2026, 11, 1))
        .group_by(pl.col("start_time").dt.date().alias("day"))
        .agg(pl.col("cost_usd").sum())
        .sort("day")
        .with_columns(pl.col("cost_usd").cum_sum().alias("month_to_date"))
    )
    crossed = daily.filter(pl.col("month_to_date") >= 0.8 * monthly)
    assert crossed["day"][0] == date(2026, 11, 23)
    # Not by a hair: the crossing stays on the 23rd if spend moves by half a percent.
    before = daily.filter(pl.col("day") == date(2026, 11, 22))["month_to_date"][0]
    on_the_day = daily.filter(pl.col("day") == date(2026, 11, 23))["month_to_date"][0]
    assert before < 0.8 * monthly * 0.995 and on_the_day > 0.8 * monthly * 1.005
    # 100 % on the 28th, 120 % never.
    full = daily.filter(pl.col("month_to_date") >= monthly)
    assert full["day"][0] == date(2026, 11, 28)
    assert daily["month_to_date"].max() < 1.2 * monthly
    assert set(config.budget.features) <= set(sample["feature"].drop_nulls())


def test_incidents_sit_at_fixed_offsets_from_the_start(tmp_path: Path) -> None:
    out = tmp_path / "short.jsonl"
    summary = simulate(out, days=10, seed=99, end=_at(2027, 3, 11), scale=0.5)
    # Ten days hold only the storm (day 9, 14:00); later incidents are not planted.
    assert [i.name for i in summary.incidents] == ["529 storm"]
    assert summary.incidents[0].start == _at(2027, 3, 10, 14)
    calls = _calls(out)
    overloaded = calls.filter(pl.col("error_type") == "overloaded_error")
    assert overloaded.height > 0
    assert overloaded["start_time"].min() >= _at(2027, 3, 10, 14)
    assert overloaded["start_time"].max() < _at(2027, 3, 10, 14, 45)
    assert calls.filter(pl.col("request_model").str.contains("opus"), AGENT_WORKER).height == 0


# --- the lineup: today's models, each only once it exists -------------------------------------
LINEUP = {
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-5-5",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-experimental-2026",
}


def test_sample_runs_the_late_2026_lineup(sample: pl.DataFrame) -> None:
    assert set(sample["request_model"]) == LINEUP
    by_feature = dict(
        sample.filter(pl.col("feature").is_not_null(), pl.col("environment") == "prod")
        .group_by("feature")
        .agg(pl.col("request_model").unique().sort())
        .iter_rows()
    )
    assert by_feature["support-chat"] == ["claude-sonnet-5-5"]
    assert by_feature["ticket-triage"] == ["claude-haiku-5-5"]
    assert by_feature["doc-summarize"] == ["claude-opus-5-5"]
    assert by_feature["search-answer"] == ["claude-haiku-4-5"]
    assert by_feature["agent-tools"] == ["claude-opus-5-5", "claude-sonnet-5-5"]
    # Every successful call but the planted unpriced ones has a price: no call went to a model
    # before its first rate card, none to Sonnet 4.5 (retired 2026-11-30).
    ok = sample.filter(pl.col("status") == "ok", pl.col("operation") != "count_tokens")
    unpriced = ok.filter(pl.col("cost_usd").is_null())
    assert set(unpriced["request_model"]) == {"claude-experimental-2026"}
    # Hand-priced: ticket-triage's Haiku 5.5 at $0.10 in / $0.50 out per MTok (no caching).
    triage = ok.filter(pl.col("feature") == "ticket-triage")
    usd = (triage["input_tokens"].sum() * 0.10 + triage["output_tokens"].sum() * 0.50) / 1e6
    assert triage["cost_usd"].sum() == pytest.approx(usd, rel=1e-9)
    assert 1.0 < usd < 2.0  # ~8,400 calls of ~1,400 tokens: about $1.40 a month


def test_earlier_periods_call_the_models_they_had(tmp_path: Path) -> None:
    # 20 days across the 5.5 releases: Opus 2026-09-22, Sonnet 09-28, Haiku 10-07.
    out = tmp_path / "releases.jsonl"
    simulate(out, days=20, seed=4, end=_at(2026, 10, 10))
    calls = _calls(out).filter(pl.col("environment") == "prod")

    def models(feature: str, lo: datetime, hi: datetime) -> set[str]:
        part = calls.filter(
            pl.col("feature") == feature, pl.col("start_time").is_between(lo, hi, closed="left")
        )
        return set(part["request_model"])

    assert models("doc-summarize", _at(2026, 9, 20), _at(2026, 9, 22)) == {"claude-opus-4-8"}
    assert models("doc-summarize", _at(2026, 9, 22), _at(2026, 10, 10)) == {"claude-opus-5-5"}
    assert models("support-chat", _at(2026, 9, 20), _at(2026, 9, 28)) == {"claude-sonnet-4-6"}
    assert models("support-chat", _at(2026, 9, 28), _at(2026, 10, 10)) == {"claude-sonnet-5-5"}
    assert models("ticket-triage", _at(2026, 9, 20), _at(2026, 10, 7)) == {"claude-haiku-4-5"}
    assert models("ticket-triage", _at(2026, 10, 7), _at(2026, 10, 10)) == {"claude-haiku-5-5"}
    ok = calls.filter(pl.col("status") == "ok", pl.col("operation") != "count_tokens")
    assert ok["cost_usd"].null_count() == 0  # prod never calls the unpriced model
    # The answering model is the one asked for, dated where Anthropic dates it.
    pairs = set(ok.select("request_model", "response_model").unique().iter_rows())
    assert ("claude-haiku-4-5", "claude-haiku-4-5-20251001") in pairs
    assert ("claude-haiku-5-5", "claude-haiku-5-5") in pairs


def test_runaway_loop_before_opus_5_5_names_the_model_it_runs(tmp_path: Path) -> None:
    summary = simulate(tmp_path / "july.jsonl", days=20, seed=1, end=_at(2026, 7, 21), scale=0.05)
    (runaway,) = [i for i in summary.incidents if i.name == "runaway loop"]
    assert runaway.where.endswith("model claude-opus-4-8")
