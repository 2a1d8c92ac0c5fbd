"""write_report: one self-contained HTML file with hand-checked numbers, escaped telemetry,
and figures that really render in a browser.

Prices (clauditor/prices.toml, per million tokens): claude-sonnet-4-5 $3 in / $15 out,
claude-haiku-4-5 $1 in / $5 out; "mystery-model-9" has no price.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clauditor.config import Config
from clauditor.dashboards.report import format_usd, write_report
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.store import write_calls

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
XSS = "<img src=x onerror=alert(1)>"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
FIGURES = 3  # spend by day, model mix, untagged spend


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
        {"span_id": f"{i:016x}", "status": "ok", "service": "bot", **row}
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


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: tuple[Path, Any], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (no `chromium` on PATH)")
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            report[0].resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Drop script bodies (plotly.js itself); what is left is the rendered document.
    dom = re.sub(r"<script\b.*?</script>", "", result.stdout, flags=re.DOTALL | re.IGNORECASE)
    ids = ("fig-daily", "fig-models", "fig-untagged")
    starts = [dom.index(f'id="{div_id}"') for div_id in ids] + [len(dom)]
    for div_id, start, end in zip(ids, starts, starts[1:], strict=False):
        assert 'class="main-svg"' in dom[start:end], f"{div_id} did not render"
    assert dom.count('class="main-svg"') >= FIGURES
    # The hostile feature name is text in the legend and the table, never an element.
    assert "<img" not in dom.lower()
    assert XSS_ESCAPED in dom
    assert 'class="legendtext"' in dom
