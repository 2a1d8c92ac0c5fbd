"""Spend beyond token counts, as `clauditor costs` and the report show it: server tools, cache
writes priced at an assumed TTL, and code execution priced for the period (hand-computed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clauditor.cli import app
from tests.ingest.otlp_fixtures import line, span

runner = CliRunner()
NOV_2 = 1_793_611_800 * 1_000_000_000  # 2026-11-02T09:30:00Z
MINUTE = 60 * 1_000_000_000


def call(span_id: str, start_ns: int, **attrs: object) -> dict:
    base: dict[str, object] = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.response.model": "claude-haiku-4-5",
        "clauditor.feature": "research",
        "clauditor.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 0,
    }
    base.update(attrs)
    return span(span_id, base, name="chat claude-haiku-4-5", start_ns=start_ns,
                duration_ns=2 * MINUTE)  # fmt: skip


def test_costs_and_report_name_what_the_dollars_rest_on(tmp_path: Path) -> None:
    spans = [
        # 3 web searches: 3 x $10 / 1,000 = $0.03 of tools fees.
        call("00000000000000d1", NOV_2,
             **{"clauditor.usage.server_tool_use.web_search_requests": 3}),
        # 8,000 cache writes without a 5m/1h split: priced at the assumed 5m TTL,
        # 8,000 x $1.25 / MTok = $0.01.
        call("00000000000000d2", NOV_2 + MINUTE,
             **{"gen_ai.usage.cache_creation.input_tokens": 8_000}),
        # One code-execution container used by two calls: from 09:30 to 09:40 + 2 min = 12 min
        # = 0.2 container-hours.
        call("00000000000000d3", NOV_2, **{"clauditor.container.id": "container_1"}),
        call("00000000000000d4", NOV_2 + 10 * MINUTE, **{"clauditor.container.id": "container_1"}),
    ]  # fmt: skip
    src = tmp_path / "spans.jsonl"
    src.write_text(line(*spans, scope="clauditor"))
    db = tmp_path / "c.duckdb"
    assert runner.invoke(app, ["ingest", str(src), "--db", str(db)]).exit_code == 0
    # A price file with no free hours from 2026-01-01, so the container's hours are billed:
    # 0.2 h x $0.05 = $0.01.
    prices = tmp_path / "fees.toml"
    prices.write_text(
        "[[server_tools]]\neffective_from = 2026-01-01\nweb_search_per_1k = 10.0\n"
        "web_fetch_per_1k = 0.0\ncode_execution_per_hour = 0.05\n"
        "code_execution_free_hours_per_month = 0\n"
    )
    config = tmp_path / "clauditor.toml"
    config.write_text(f'price_files = ["{prices.name}"]\n')
    common = ["--db", str(db), "--config", str(config), "--period", "2026-11-02"]
    result = runner.invoke(app, ["costs", *common])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "server tools: $0.03 of the spend is web search fees (3 searches, 0 fetches)" in text
    assert "assumed cache TTL: $0.01 of cache writes on 1 calls" in text
    assert "code execution: 1 containers, about 0.20 container-hours, estimated $0.01" in text
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", *common, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert 'id="spend-notes"' in page
    assert "Server tools: $0.03 of the spend is web search fees" in page
    assert "about 0.20 container-hours, estimated $0.01" in page


def test_the_builtin_free_hours_cover_a_small_period(tmp_path: Path) -> None:
    # Built-in fees: 1,550 free hours a month; 0.2 hours on one day cost nothing.
    spans = [
        call("00000000000000e1", NOV_2, **{"clauditor.container.id": "c"}),
        call("00000000000000e2", NOV_2 + 10 * MINUTE, **{"clauditor.container.id": "c"}),
    ]
    src = tmp_path / "spans.jsonl"
    src.write_text(line(*spans, scope="clauditor"))
    db = tmp_path / "c.duckdb"
    assert runner.invoke(app, ["ingest", str(src), "--db", str(db)]).exit_code == 0
    result = runner.invoke(app, ["costs", "--db", str(db), "--period", "2026-11-02"])
    assert "estimated $0.00 after the monthly free hours" in " ".join(result.stdout.split())
