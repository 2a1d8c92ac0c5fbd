"""Web search fees through the CLI: an OTLP line ingested, then `query` and `costs` show them.

Hand-computed on Claude Haiku 4.5 ($1/MTok input; regional endpoints +10%) and web search
($10 per 1,000 requests), with calls made on 2025-11-03.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clauditor import semconv as sc
from clauditor.cli import app
from tests.ingest.otlp_fixtures import line, span

runner = CliRunner()

HAIKU_CALL: dict[str, Any] = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-haiku-4-5",
    "gen_ai.response.model": "claude-haiku-4-5-20251001",
    "clauditor.operation": "chat",
    "clauditor.usage.input_tokens": 1000,
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 0,
}


def _call(n: int, feature: str, **extra: Any) -> dict[str, Any]:
    attributes = {**HAIKU_CALL, "gen_ai.response.id": f"msg_tools{n}", sc.FEATURE: feature}
    return span(f"00f067aa0ba9aa0{n}", {**attributes, **extra})


@pytest.fixture
def tools_db(tmp_path: Path) -> Path:
    src = tmp_path / "tools.jsonl"
    src.write_text(
        line(_call(1, "research", **{sc.WEB_SEARCH_REQUESTS: 3}), scope="clauditor")
        # The same call on a regional Vertex endpoint (the client's region on the span) ...
        + line(
            _call(2, "vertex", **{sc.WEB_SEARCH_REQUESTS: 3, sc.CLOUD_REGION: "us-east5"}),
            scope="clauditor",
        )
        # ... and on Vertex's global endpoint, known only from the host the SDK's span names.
        + line(
            _call(
                3,
                "global",
                **{sc.WEB_SEARCH_REQUESTS: 3, sc.SERVER_ADDRESS: "aiplatform.googleapis.com"},
            )
        )
        + line(_call(4, "plain"), scope="clauditor")
    )
    db = tmp_path / "tools.duckdb"
    result = runner.invoke(app, ["ingest", str(src), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "4 calls written" in result.stderr
    return db


def test_query_shows_the_tools_part_of_the_cost(tools_db: Path) -> None:
    sql = (
        "SELECT feature, cost_usd, cost_tools_usd, web_search_requests, cloud_region "
        "FROM calls ORDER BY feature"
    )
    result = runner.invoke(app, ["query", sql, "--db", str(tools_db), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["feature"]: r for r in json.loads(result.stdout)}
    # 1,000 x $1/MTok = $0.001 plus 3 x $10/1,000 = $0.03 -> $0.031; the tools part $0.03
    assert rows["research"]["cost_usd"] == pytest.approx(0.031)
    assert rows["research"]["cost_tools_usd"] == pytest.approx(0.03)
    assert rows["research"]["web_search_requests"] == 3
    assert rows["research"]["cloud_region"] is None
    # regional: 1,000 x $1/MTok x 1.1 = $0.0011 plus the same $0.03 (fees are not regional)
    assert rows["vertex"]["cost_usd"] == pytest.approx(0.0311)
    assert rows["vertex"]["cloud_region"] == "us-east5"
    # global endpoint: no premium, $0.001 + $0.03 = $0.031
    assert rows["global"]["cost_usd"] == pytest.approx(0.031)
    assert rows["global"]["cloud_region"] == "global"
    # no server tools: $0.001, a tools part of $0 (not unknown)
    assert rows["plain"]["cost_usd"] == pytest.approx(0.001)
    assert rows["plain"]["cost_tools_usd"] == 0.0
    assert rows["plain"]["web_search_requests"] is None


@pytest.mark.parametrize("by", ["feature", "feature,service"])  # the aggregate and per-call paths
def test_costs_shows_tools_usd_and_web_searches(tools_db: Path, by: str) -> None:
    args = ["costs", "--db", str(tools_db), "--by", by, "--format", "json"]
    args += ["--as-of", "2025-11-04T00:00:00Z", "--period", "7d"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["feature"]: r for r in json.loads(result.stdout)}
    research = rows["research"]
    assert research["cost_usd"] == pytest.approx(0.031)  # $0.001 tokens + $0.03 searches
    assert research["tools_usd"] == pytest.approx(0.03)  # 3 x $10 / 1,000
    assert research["web_searches"] == 3
    assert rows["plain"]["tools_usd"] == 0.0
    assert rows["plain"]["web_searches"] == 0
    # the existing keys are all still there
    assert {"calls", "input_tokens", "cost_usd", "share", "unpriced_calls"} <= set(research)
    total = sum(r["tools_usd"] for r in rows.values())
    assert total == pytest.approx(0.09)  # three calls with 3 searches each: 9 x $10 / 1,000
