"""Pricing as a user meets it: `clauditor ingest` + `clauditor query`, `cache`, `reprice`,
`prices check` and `prices update`, with hand-computed dollars ($ per MTok rates from
clauditor/prices.toml, each card's source there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from tests.ingest.otlp_fixtures import line, span

runner = CliRunner()
EXACT = 1e-9
# 2026-11-02T09:30:00Z, a Monday: the late-2026 lineup is priced then.
NOV_2 = 1_793_611_800 * 1_000_000_000


def call(span_id: str, model: str, *, start_ns: int = NOV_2, **attrs: object) -> dict:
    """A clauditor span of one chat call of ``model`` (uncached input in Anthropic's meaning)."""
    base: dict[str, object] = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "clauditor.feature": "chat",
        "clauditor.usage.input_tokens": 0,
        "gen_ai.usage.output_tokens": 0,
    }
    base.update(attrs)
    return span(span_id, base, name=f"chat {model}", start_ns=start_ns)


def ingest(tmp_path: Path, *spans: dict) -> tuple[Path, str]:
    src = tmp_path / "spans.jsonl"
    src.write_text(line(*spans, scope="clauditor"))
    db = tmp_path / "c.duckdb"
    result = runner.invoke(app, ["ingest", str(src), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db, result.stderr


def query(db: Path, sql: str) -> list[dict]:
    result = runner.invoke(app, ["query", sql, "--db", str(db), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_and_query_price_todays_lineup(tmp_path: Path) -> None:
    db, _ = ingest(
        tmp_path,
        # Opus 5.5, 200,000 cache read x $0.20 = $0.04 (0.05x of $4); 1,000 in x $4 = $0.004;
        # 500 out x $20 = $0.01. Total $0.054.
        call("00000000000000a1", "claude-opus-5-5", **{
            "clauditor.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 500,
            "gen_ai.usage.cache_read.input_tokens": 200_000}),
        # Haiku 5.5 over its 100K prompt tier: 120,000 in x $0.50 = $0.06; 2,000 out x $2.50 =
        # $0.005. Total $0.065.
        call("00000000000000a2", "claude-haiku-5-5", **{
            "clauditor.usage.input_tokens": 120_000, "gen_ai.usage.output_tokens": 2_000}),
        # Sonnet 5.5 fast requested (it has no fast mode: standard rates), US-only x1.1:
        # 10,000 in x $2.20 = $0.022; 1,000 out x $11 = $0.011. Total $0.033.
        call("00000000000000a3", "claude-sonnet-5-5", **{
            "clauditor.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 1_000,
            "clauditor.usage.speed": "fast", "clauditor.usage.inference_geo": "us"}),
        # Opus 5.5 fast: $8 / $40. 10,000 in x $8 = $0.08; 1,000 out x $40 = $0.04. $0.12.
        call("00000000000000a4", "claude-opus-5-5", **{
            "clauditor.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 1_000,
            "clauditor.usage.speed": "fast"}),
    )  # fmt: skip
    rows = {r["span_id"]: r for r in query(db, "SELECT span_id, cost_usd, rate_cache_read "
                                               "FROM calls ORDER BY span_id")}  # fmt: skip
    assert rows["00000000000000a1"]["cost_usd"] == pytest.approx(0.054, abs=EXACT)
    assert rows["00000000000000a1"]["rate_cache_read"] == pytest.approx(0.20, abs=EXACT)
    assert rows["00000000000000a2"]["cost_usd"] == pytest.approx(0.065, abs=EXACT)
    assert rows["00000000000000a3"]["cost_usd"] == pytest.approx(0.033, abs=EXACT)
    assert rows["00000000000000a4"]["cost_usd"] == pytest.approx(0.12, abs=EXACT)


def test_cache_saved_uses_the_models_own_read_rate(tmp_path: Path) -> None:
    # Opus 5.5 (in $4, read $0.20, 5m write $5): a call writes 100,000 tokens to the 5-minute
    # cache, a second reads them 2 minutes later.
    # Read saving: 100,000 x ($4 - $0.20) = $0.38; write premium: 100,000 x ($5 - $4) = $0.10.
    # Caching saved $0.38 - $0.10 = $0.28 (a fixed 0.1x read would have said 100,000 x $3.60 =
    # $0.36 saved, and $0.26 net).
    db, _ = ingest(
        tmp_path,
        call("00000000000000b1", "claude-opus-5-5", **{
            "gen_ai.usage.cache_creation.input_tokens": 100_000,
            "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 100_000,
            "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 0}),
        call("00000000000000b2", "claude-opus-5-5", start_ns=NOV_2 + 120 * 10**9, **{
            "gen_ai.usage.cache_read.input_tokens": 100_000}),
    )  # fmt: skip
    result = runner.invoke(app, ["cache", "--db", str(db), "--period", "2026-11-02",
                                 "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    economics = out[0] if isinstance(out, list) else out["economics"][0]
    assert economics["saved_usd"] == pytest.approx(0.28, abs=EXACT)
    assert economics["wasted_write_usd"] == pytest.approx(0.0, abs=EXACT)


def test_unknown_model_is_named_once_and_repriced_when_a_card_arrives(tmp_path: Path) -> None:
    spans = [call(f"00000000000000c{i}", "claude-nova-6", **{
        "clauditor.usage.input_tokens": 1_000_000}) for i in range(3)]  # fmt: skip
    db, stderr = ingest(tmp_path, *spans)
    assert stderr.count("no price for model 'claude-nova-6'") == 1
    assert "(3 calls)" in stderr
    assert query(db, "SELECT count(*) AS n FROM calls WHERE cost_usd IS NULL") == [{"n": 3}]
    config = tmp_path / "clauditor.toml"
    config.write_text('[prices."claude-nova-6"]\ninput = 3\noutput = 15\ncache_read = 0.3\n'
                      "cache_write_5m = 3.75\ncache_write_1h = 6\n")  # fmt: skip
    result = runner.invoke(app, ["reprice", "--db", str(db), "--config", str(config)])
    assert result.exit_code == 0, result.output
    # 3 calls x 1,000,000 in x $3 = $9 moved from unpriced to priced.
    assert "3 calls changed (3 newly priced); $0.000000 -> $9.000000 (+$9.000000)" in result.stdout
    assert "0 calls have no price" in result.stdout


def test_prices_check_lists_each_disagreement_with_its_reason() -> None:
    # Against the pinned genai-prices (the dev extra): every row carries clauditor's note.
    result = runner.invoke(app, ["prices", "check", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and all(r["note"] for r in rows)
    sonnet = [r for r in rows if r["model"] == "claude-sonnet-5-5"]
    assert [(r["rate"], r["clauditor"], r["upstream"]) for r in sonnet] == [
        ("cache_read", 0.2, 0.1)
    ]


def test_prices_check_shows_a_model_only_the_upstream_knows(tmp_path: Path) -> None:
    from clauditor.rate_cards import PriceTable, load_price_table
    from clauditor.upstream import check

    table = load_price_table()
    without = PriceTable(tuple(c for c in table.cards if c.id != "claude-opus-5-5"),
                         table.tool_fees, upstream_only=table.upstream_only)  # fmt: skip
    rows = check(without).filter(rate="(model)").to_dicts()
    assert {"model": "claude-opus-5-5", "note": ""} in [
        {"model": r["model"], "note": r["note"]} for r in rows
    ]


def test_prices_update_says_plainly_when_it_could_not(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["prices", "update", "--index-url",
                                 f"http://127.0.0.1:{port}/simple"])  # fmt: skip
    assert result.exit_code == 1
    assert f"could not update genai-prices from http://127.0.0.1:{port}/simple" in result.stdout
    assert "Traceback" not in result.output
