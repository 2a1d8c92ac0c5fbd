"""write_report: one self-contained HTML file with hand-checked numbers, escaped telemetry,
and figures that really render in a browser.

Prices (clauditor/prices.toml, per million tokens): claude-sonnet-4-5 $3 in / $15 out,
claude-haiku-4-5 $1 in / $5 out; "mystery-model-9" has no price.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from clauditor.config import BudgetConfig, Config
from clauditor.dashboards.report import format_usd, write_report
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.store import write_calls

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
XSS = "<img src=x onerror=alert(1)>"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
# spend by day, budget burn-up, model mix, untagged spend, cache hit ratio, error rate,
# latency, spikes
FIGURES = 8


def at(day: int, hour: int = 10, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


ROWS: list[dict[str, Any]] = [
    # In the period "7d" as of 2026-03-10 12:00 UTC, i.e. [03-03 12:00, 03-10 12:00):
    # 100,000 x $3/M + 100,000 x $15/M = $0.30 + $1.50 = $1.80 (under Sonnet's 200K long-context
    # threshold, so base rates)
    {
        "start_time": at(9),
        "feature": "summarize",
        "request_model": SONNET,
        "input_tokens": 100_000,
        "output_tokens": 100_000,
    },
    # 1,000,000 x $1/M = $1.00
    {
        "start_time": at(8),
        "feature": "summarize",
        "request_model": HAIKU,
        "input_tokens": 1_000_000,
    },
    # untagged: 100,000 x $15/M = $1.50
    {
        "start_time": at(7),
        "feature": None,
        "request_model": SONNET,
        "output_tokens": 100_000,
        "code_location": "app.jobs:nightly",
    },
    # 500,000 x $1/M = $0.50
    {"start_time": at(6), "feature": XSS, "request_model": HAIKU, "input_tokens": 500_000},
    # no price
    {
        "start_time": at(5),
        "feature": "search",
        "request_model": "mystery-model-9",
        "input_tokens": 10_000,
    },
    # The previous period [02-24 12:00, 03-03 12:00): 150,000 x $3/M + 130,000 x $15/M
    # = $0.45 + $1.95 = $2.40
    {
        "start_time": at(1),
        "feature": "summarize",
        "request_model": SONNET,
        "input_tokens": 150_000,
        "output_tokens": 130_000,
    },
    # In neither period: 1,000,000 x $15/M = $15.00 on 1 February, and one after as_of.
    {
        "start_time": at(1, month=2),
        "feature": "summarize",
        "request_model": SONNET,
        "output_tokens": 1_000_000,
    },
    {
        "start_time": at(11),
        "feature": "summarize",
        "request_model": SONNET,
        "output_tokens": 1_000_000,
    },
]
# Period total: $1.80 + $1.00 + $1.50 + $0.50 = $4.80, vs $2.40 before: +100.0 %.


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "calls.duckdb"
    rows = [
        {"span_id": f"{i:016x}", "status": "ok", "service": "bot", "duration_ms": 1500.0, **row}
        for i, row in enumerate(ROWS)
    ]
    write_calls(path, price_calls(frame_from_rows(rows)))
    return path


@pytest.fixture(scope="module")
def report(db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("out") / "nested" / "report.html"
    summary = write_report(db, out, period="7d", as_of=AS_OF)
    return out, summary


def test_summary_has_hand_computed_totals(report: tuple[Path, Any]) -> None:
    out, summary = report
    assert summary.out == out
    assert out.is_file()
    assert summary.bytes == out.stat().st_size
    assert summary.calls == 5
    assert summary.cost_usd == pytest.approx(4.80)
    assert summary.unpriced_calls == 1
    assert summary.period.start == dt.datetime(2026, 3, 3, 12, tzinfo=dt.UTC)
    assert summary.period.end == AS_OF


def test_page_shows_period_total_change_and_freshness(report: tuple[Path, Any]) -> None:
    page = report[0].read_text(encoding="utf-8")
    assert "last 7 days" in page
    assert "2026-03-03 12:00 → 2026-03-10 12:00 (UTC" in page
    assert "$4.80" in page
    assert "▲ 100.0%" in page and "$2.40" in page  # ($4.80 - $2.40) / $2.40
    assert "$15.00" not in page  # the February call is in neither period
    # freshness: the newest span at or before as_of (the one on the 11th is after it)
    assert "newest span" in page and "2026-03-09 10:00" in page
    # the unpriced notice names the model; untagged spend is shown
    assert 'id="unpriced"' in page and "mystery-model-9" in page
    assert "(untagged)" in page and "$1.50" in page
    assert "app.jobs:nightly" in page


def test_page_is_self_contained_with_plotly_inlined_once(report: tuple[Path, Any]) -> None:
    page = report[0].read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1  # the bundle's header comment
    assert page.count('class="plotly-graph-div"') == FIGURES
    external = re.findall(
        r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//",
        page,
        flags=re.IGNORECASE,
    )
    assert external == []
    assert not re.search(r"@import|url\(\s*[\"']?(?:https?:)?//", page)


def test_telemetry_strings_are_escaped_everywhere(report: tuple[Path, Any]) -> None:
    page = report[0].read_text(encoding="utf-8")
    assert XSS_ESCAPED in page  # in the table and in the figure data
    assert "<img src=x" not in page
    assert XSS not in page


def test_report_in_a_zone_uses_local_bounds(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "berlin.html"
    summary = write_report(
        db, out, period="7d", as_of=AS_OF, config=Config(timezone="Europe/Berlin")
    )
    page = out.read_text(encoding="utf-8")
    assert "2026-03-03 13:00 → 2026-03-10 13:00 (Europe/Berlin" in page  # CET = UTC+1
    assert summary.period.tz == "Europe/Berlin"
    assert summary.cost_usd == pytest.approx(4.80)


def test_empty_period_still_renders_every_section(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    summary = write_report(db, out, period="2025-06", as_of=AS_OF)
    page = out.read_text(encoding="utf-8")
    assert (summary.calls, summary.cost_usd, summary.unpriced_calls) == (0, 0.0, 0)
    assert "June 2025" in page and "$0.00" in page
    assert 'id="unpriced"' in page
    assert page.count('class="plotly-graph-div"') == FIGURES


def test_bad_period_is_a_value_error(db: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fortnight"):
        write_report(db, tmp_path / "x.html", period="fortnight", as_of=AS_OF)
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7.5, "$7.50"),
        (1234.567, "$1,234.57"),
        (0.003, "$0.003"),
        (0.5, "$0.50"),
        (0.0125, "$0.0125"),
        (0, "$0.00"),
        (None, "n/a"),
    ],
)
def test_format_usd(value: float | None, text: str) -> None:
    assert format_usd(value) == text


def test_report_takes_a_time_zone_option(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "tokyo.html"
    summary = write_report(db, out, period="7d", as_of=AS_OF, tz="Asia/Tokyo")
    page = out.read_text(encoding="utf-8")
    # JST = UTC+9: as_of 12:00 UTC is 21:00 in Tokyo; the freshness (09 10:00 UTC) is 19:00.
    assert "2026-03-03 21:00 → 2026-03-10 21:00 (Asia/Tokyo" in page
    assert "2026-03-09 19:00" in page
    assert summary.period.tz == "Asia/Tokyo"
    assert summary.cost_usd == pytest.approx(4.80)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        write_report(db, tmp_path / "bad.html", period="7d", as_of=AS_OF, tz="Mars/Olympus")


def _row(page: str, first_cell: str, second_cell: str) -> list[str]:
    """The cells of the table row whose first two cells are given (tags stripped)."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.DOTALL):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells[:2] == [first_cell, second_cell]:
            return cells
    raise AssertionError(f"no row {first_cell} / {second_cell}")


def test_feature_model_table_has_tokens_hit_ratio_cost_and_change(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.html"
    write_report(db, out, period="7d", as_of=AS_OF)
    page = out.read_text(encoding="utf-8")
    cells = _row(page, "summarize", SONNET)
    # calls, input, output, cache read, cache write, hit ratio, cost, per call, change:
    # $1.80 now vs $2.40 before (the 03-01 call): (1.80 - 2.40) / 2.40 = -25 %
    assert cells[2:] == ["1", "100K", "100K", "0", "0", "0%", "$1.80", "$1.80", "-25%"]
    assert _row(page, "summarize", HAIKU)[-1] == "new"  # no Haiku summarize call before
    assert _row(page, "search", "mystery-model-9")[-3:] == ["n/a", "n/a", "unpriced"]


def test_cache_hit_ratio_in_the_table(tmp_path: Path) -> None:
    db = tmp_path / "cache.duckdb"
    rows = [
        # 1,000 uncached + 6,000 read + 2,000 written: hit ratio 6,000 / 9,000 = 67 %.
        # $ = 1,000 x $3/M + 6,000 x $0.30/M + 2,000 x $3.75/M + 100 x $15/M
        #   = $0.003 + $0.0018 + $0.0075 + $0.0015 = $0.0138
        {
            "span_id": "00000000000000aa",
            "start_time": at(9),
            "feature": "chat",
            "request_model": SONNET,
            "input_tokens": 1_000,
            "cache_read_input_tokens": 6_000,
            "cache_creation_input_tokens": 2_000,
            "output_tokens": 100,
            "status": "ok",
            "duration_ms": 900.0,
        }
    ]
    write_calls(db, price_calls(frame_from_rows(rows)))
    out = tmp_path / "cache.html"
    write_report(db, out, period="7d", as_of=AS_OF)
    cells = _row(out.read_text(encoding="utf-8"), "chat", SONNET)
    assert cells[2:9] == ["1", "1K", "100", "6K", "2K", "67%", "$0.0138"]


def test_budget_status_forecast_and_crossings(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "budget.html"
    config = Config(budget=BudgetConfig(monthly_usd=5.0, thresholds=(0.5, 1.0)))
    write_report(db, out, period="7d", as_of=AS_OF, config=config)
    page = out.read_text(encoding="utf-8")
    # March to date (as of 03-10 12:00): $2.40 (03-01) + $0.50 + $1.50 + $1.00 + $1.80 = $7.20
    # of $5.00 = 144 %; 50 % ($2.50) is crossed by the 03-06 call ($2.90), 100 % ($5.00) by
    # the 03-08 call ($2.40 + $0.50 + $1.50 + $1.00 = $5.40).
    assert "Budget used" in page and "144%" in page
    assert "$7.20 of $5.00 in March" in page
    assert "50% on Mar 06 10:00" in page and "100% on Mar 08 10:00" in page
    assert 'id="fig-burnup"' in page
    assert "March forecast" in page and "budget spent" in page


def test_every_section_is_present(report: tuple[Path, Any]) -> None:
    page = report[0].read_text(encoding="utf-8")
    for anchor in (
        "budget",
        "features",
        "cache",
        "errors",
        "latency",
        "spikes",
        "failure",
        "audit",
    ):
        assert f'id="{anchor}"' in page
    for title in ("Error rate", "Spend spikes", "Cost of failure", "Caching saved", "Audit"):
        assert title in page
