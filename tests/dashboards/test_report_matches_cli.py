"""Every headline figure of the report equals what its job command prints with ``--format json``.

On the committed sample and on a generated database of 250,000 calls (more than the 200,000 at
which the report used to switch to a sample), and in a zone half an hour from UTC, where the
budget command reads the calls themselves: the report is exact at any size and in any zone.
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.util
import json
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.config import load_config
from clauditor.dashboards.report import write_report
from clauditor.dashboards.sections import format_usd
from clauditor.ingest import ingest_paths

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs"
runner = CliRunner()

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _card(page: str, title: str) -> str:
    """The value shown on the headline card titled ``title``."""
    match = re.search(
        rf'<div class="card-title">{re.escape(title)}</div><div class="card-value">([^<]*)</div>',
        page,
    )
    assert match, f"no card {title!r}"
    return html.unescape(match.group(1))


def _case(db: Path, config: Path, period: str, as_of: str, tmp: Path) -> None:
    """Write the report and check each headline card against its command's JSON."""
    cfg = load_config(config)
    moment = dt.datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    out = tmp / "report.html"
    summary = write_report(db, out, period=period, as_of=moment, config=cfg)
    page = out.read_text(encoding="utf-8")
    common = ["--db", str(db), "--config", str(config), "--as-of", as_of]
    span = [*common, "--period", period]

    costs = _cli("costs", "--by", "feature,model", *span)
    spend = sum(r["cost_usd"] or 0.0 for r in costs)
    assert summary.cost_usd == pytest.approx(spend, rel=1e-9)
    assert summary.calls == sum(r["calls"] for r in costs)
    assert _card(page, "Spend") == format_usd(spend)
    assert _card(page, "Unpriced calls") == f"{sum(r['unpriced_calls'] for r in costs):,}"

    saved = sum(r["saved_usd"] or 0.0 for r in _cli("cache", *span))
    assert _card(page, "Caching saved") == format_usd(saved)

    failure = sum(r["failure_usd"] or 0.0 for r in _cli("failures", *span))
    assert _card(page, "Cost of failure") == format_usd(failure)

    spikes = _cli("spikes", *span)
    assert _card(page, "Spend spikes") == f"{len(spikes)}"

    checks = _cli("audit", *span)
    passed = sum(1 for r in checks if r["status"] == "pass")
    assert _card(page, "Audit") == f"{passed}/{len(checks)} pass"

    episodes = _cli("errors", *span)
    shown = [r for r in episodes if r["error_class"] != "any"] or episodes
    assert f"{len(shown)} sustained episode(s)" in page

    total = next(r for r in _cli("budget", *common) if r["scope"] == "total")
    if cfg.budget.monthly_usd:
        assert _card(page, "Budget used") == f"{total['fraction']:.0%}"
        zone = ZoneInfo(cfg.timezone)
        month = moment.astimezone(zone).strftime("%B")
        spent = format_usd(total["spent_usd"])
        assert f"{spent} of {format_usd(cfg.budget.monthly_usd)} in {month}" in page
        if total["crossed_at"] is not None:
            at = dt.datetime.fromisoformat(total["crossed_at"]).astimezone(zone)
            crossed = max(total["thresholds_crossed"])
            assert f"passed {crossed:.0%} on {at:%b %d %H:%M}" in page
    assert "≈" not in page and 'id="sampled"' not in page


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SAMPLE / "sample-30d.jsonl.gz").exists():
        pytest.skip("sample_logs not generated")
    db = tmp_path_factory.mktemp("sample") / "clauditor.duckdb"
    ingest_paths(
        [SAMPLE / "sample-30d.jsonl.gz"], db, config=load_config(SAMPLE / "clauditor.toml")
    )
    return db


def test_the_sample_reports_headline_equals_the_commands(sample_db: Path, tmp_path: Path) -> None:
    _case(sample_db, SAMPLE / "clauditor.toml", "30d", "2026-11-30T00:00:00Z", tmp_path)


def test_in_a_half_hour_zone_the_budget_and_days_are_exact(sample_db: Path, tmp_path: Path) -> None:
    # Asia/Kolkata is UTC+5:30: hour sums straddle its days, so `clauditor budget` reads the
    # calls themselves there; the report's 15-minute buckets must give the same figures.
    text = (SAMPLE / "clauditor.toml").read_text().replace('timezone = "UTC"', "")
    config = tmp_path / "clauditor.toml"
    config.write_text('timezone = "Asia/Kolkata"\n' + text)
    _case(sample_db, config, "30d", "2026-11-29T18:45:00Z", tmp_path)


def _generator() -> Any:
    path = ROOT / "benchmarks" / "report_10m.py"
    spec = importlib.util.spec_from_file_location("report_10m", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_quarter_million_calls_report_equals_the_commands(tmp_path: Path) -> None:
    bench = _generator()
    db = bench.make_database(tmp_path, 250_000)
    config = tmp_path / "clauditor.toml"
    config.write_text("[budget]\nmonthly_usd = 2500\nthresholds = [0.5, 0.8, 1.0]\n")
    _case(db, config, "30d", bench.AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ"), tmp_path)
