"""The report in a real browser: headless Chromium renders every figure offline, logs no error,
makes no network request, and hostile telemetry strings run nothing.

Skipped only when Chromium or its driver is missing (tests/conftest.py turns a missing browser
into an error in CI).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clauditor.config import BudgetConfig, Config
from clauditor.dashboards.report import write_report
from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.store import write_calls
from tests.conftest import call_row

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
FIGURES = 8
# Each would set a global if the browser ever interpreted it as markup or script.
PAYLOADS = (
    "<img src=x onerror=\"window.__xss='img'\">",
    "<script>window.__xss='script'</script>",
    "</script><script>window.__xss='breakout'</script>",
    "<svg onload=\"window.__xss='svg'\">",
)


def _rows() -> list[dict[str, Any]]:
    """Two weeks of calls in a few features, some failing, some streamed and cached."""
    rows: list[dict[str, Any]] = []
    features = ["summarize", "search", None, *PAYLOADS]
    for i in range(14 * 24):
        start = AS_OF - dt.timedelta(hours=i)
        feature = features[i % len(features)]
        failed = i % 17 == 0
        rows.append(
            {
                "span_id": f"{i:016x}",
                "start_time": start,
                "duration_ms": 800.0 + (i % 9) * 150,
                "ttft_ms": 200.0 + (i % 5) * 40 if i % 2 else None,
                "stream": bool(i % 2),
                "feature": feature,
                "service": PAYLOADS[0] if i % 5 == 0 else "bot",
                "user_id": PAYLOADS[1] if i % 3 == 0 else "u-1",
                "code_location": PAYLOADS[2] if feature is None else "app:run",
                "operation": "chat",
                "request_model": PAYLOADS[3] if i % 11 == 0 else "claude-sonnet-4-5",
                "max_tokens": 1024,
                "input_tokens": 0 if failed else 2_000,
                "output_tokens": 0 if failed else 300,
                "cache_read_input_tokens": 0 if failed else 4_000 * (i % 2),
                "cache_creation_input_tokens": 0,
                "status": "error" if failed else "ok",
                "error_type": "overloaded_error" if failed else None,
                "http_status": 529 if failed else 200,
                "retries": 2 if failed else 0,
                "stop_reason": None if failed else "end_turn",
            }
        )
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    db = folder / "calls.duckdb"
    write_calls(db, price_calls(frame_from_rows(_rows())))
    out = folder / "report.html"
    config = Config(budget=BudgetConfig(monthly_usd=20.0, features={PAYLOADS[0]: 5.0}))
    write_report(db, out, period="7d", as_of=AS_OF, config=config)
    return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("headless Chromium or chromedriver is not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def _open_and_wait(driver: Any, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("performance")  # drop anything from before this page
    driver.get_log("browser")
    driver.get(page.resolve().as_uri())
    # Rendered = every figure div has drawn its SVG and plotly has finished laying it out.
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "const divs = document.querySelectorAll('.plotly-graph-div');"
            "return divs.length > 0 && Array.from(divs).every("
            "  g => g._fullLayout && g.querySelector('svg.main-svg'));"
        )
    )


def _requests(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_every_figure_renders_offline_without_errors(
    driver: Any, report: Path, tmp_path: Path, record_property: Any
) -> None:
    _open_and_wait(driver, report)
    rendered = driver.execute_script(
        "return Array.from(document.querySelectorAll('.plotly-graph-div'))"
        ".filter(g => g.querySelector('svg.main-svg')).map(g => g.id);"
    )
    assert len(rendered) == FIGURES
    assert set(rendered) == {
        "fig-daily",
        "fig-burnup",
        "fig-models",
        "fig-untagged",
        "fig-cache",
        "fig-errors",
        "fig-latency",
        "fig-spikes",
    }
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, height)
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    record_property("screenshot", str(shot))
    print(f"screenshot: {shot}")

    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    # The only thing fetched is the file itself: plotly.js and the styles are inlined.
    external = [u for u in _requests(driver) if not u.startswith(("file://", "data:", "about:"))]
    assert external == []
    assert [u for u in _requests(driver) if u.startswith("file://")] in ([], [report.as_uri()])


def test_hostile_telemetry_strings_run_nothing(driver: Any, report: Path) -> None:
    _open_and_wait(driver, report)
    assert driver.execute_script("return window.__xss === undefined")
    # The payloads are shown as text, and no element came out of them.
    text = driver.execute_script("return document.body.innerText")
    assert "<img src=x onerror=" in text
    assert (
        driver.execute_script("return document.querySelectorAll('img, [onload], [onerror]').length")
        == 0
    )
    injected = driver.execute_script(
        "return Array.from(document.scripts).filter("
        "  s => s.textContent.trim().startsWith('window.__xss')).length"
    )
    assert injected == 0
    # plotly's own text (legends, ticks) holds them as text too
    legends = driver.execute_script(
        "return Array.from(document.querySelectorAll('.legendtext')).map(t => t.textContent)"
    )
    assert any("<img src=x" in t for t in legends)


# --- a first day of data --------------------------------------------------------------------

FIRST_DAY = dt.datetime(2026, 3, 10, 18, 0, tzinfo=dt.UTC)
# Axes whose ticks are dollars, per figure ("x" for the horizontal bar charts).
MONEY_AXES = {
    "fig-daily": "y",
    "fig-burnup": "y",
    "fig-spikes": "y",
    "fig-models": "x",
    "fig-untagged": "x",
}


def _first_day_rows(kind: str) -> list[dict[str, Any]]:
    """One call, one hour of calls, or one day of calls, all on FIRST_DAY's date."""
    if kind == "one call":
        moments = [dt.datetime(2026, 3, 10, 9, 15, tzinfo=dt.UTC)]
    elif kind == "one hour":
        moments = [dt.datetime(2026, 3, 10, 9, 5 * i, tzinfo=dt.UTC) for i in range(8)]
    else:
        moments = [dt.datetime(2026, 3, 10, h, 30, tzinfo=dt.UTC) for h in range(18)]
    rows = []
    for i, start in enumerate(moments):
        failed = i % 4 == 3
        rows.append(
            call_row(
                start_time=start,
                end_time=start + dt.timedelta(seconds=2),
                duration_ms=1500.0 + 100 * i,
                ttft_ms=300.0 if i % 2 else None,
                stream=bool(i % 2),
                feature=(None if i % 3 == 2 else "chat"),
                code_location="app.py:12",
                input_tokens=0 if failed else 1000,
                output_tokens=0 if failed else 50,
                cache_read_input_tokens=0 if failed or i % 2 == 0 else 3000,
                status="error" if failed else "ok",
                error_type="overloaded_error" if failed else None,
                http_status=529 if failed else 200,
            )
        )
    return rows


_FIGURE_FACTS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => {
  const ticks = ax => Array.from(g.querySelectorAll('.cartesianlayer g.' + ax + 'tick text'))
    .map(t => t.textContent);
  const bars = Array.from(g.querySelectorAll('.cartesianlayer .barlayer .point path'))
    .map(p => { const b = p.getBBox(); return [b.width, b.height]; });
  const lines = Array.from(g.querySelectorAll('.cartesianlayer .scatterlayer .trace')).map(t => ({
    points: t.querySelectorAll('.point').length,
    line: Math.max(0, ...Array.from(t.querySelectorAll('path.js-line'))
      .map(p => p.getTotalLength())),
    fill: Math.max(0, ...Array.from(t.querySelectorAll('path.js-fill'))
      .map(p => { const b = p.getBBox(); return b.width * b.height; })),
  }));
  const notes = Array.from(g.querySelectorAll('.annotation-text')).map(t => t.textContent);
  return {id: g.id, traces: g.data.length, x: ticks('x'), y: ticks('y'), bars, lines, notes};
});
"""


def _dollars(text: str) -> float | None:
    cleaned = text.replace("\u2212", "-").replace(",", "").replace("$", "").strip()
    try:
        return float(cleaned)
    except ValueError:
        return None


@pytest.mark.parametrize(
    ("kind", "period", "budget"),
    [
        ("one call", "30d", None),
        ("one hour", "today", None),
        ("one hour", "7d", 50.0),
        ("one day", "30d", 50.0),
    ],
)
def test_a_first_day_of_data_draws_every_chart(
    driver: Any, tmp_path: Path, kind: str, period: str, budget: float | None
) -> None:
    """With one call, one hour or one day of data, each chart shows it: bars wider than 0,
    single points as markers, distinct tick labels, dollar ticks that are not all $0."""
    db = tmp_path / "calls.duckdb"
    write_calls(db, price_calls(frame_from_rows(_first_day_rows(kind))))
    out = tmp_path / "report.html"
    config = Config(budget=BudgetConfig(monthly_usd=budget))
    write_report(db, out, period=period, as_of=FIRST_DAY, config=config)
    _open_and_wait(driver, out)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, height)
    shot = tmp_path / "first-day.png"
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    facts = {f["id"]: f for f in driver.execute_script(_FIGURE_FACTS)}
    drawn = {i for i, f in facts.items() if f["traces"]}
    # The data reaches every chart it has something for (spikes need a history; the one
    # call is tagged, uncached and succeeds).
    assert {"fig-daily", "fig-burnup", "fig-models", "fig-latency"} <= drawn
    if kind != "one call":
        assert {"fig-untagged", "fig-cache", "fig-errors"} <= drawn
    # A chart without data says why instead of showing bare axes.
    problems = [
        f"{i}: no data and no message"
        for i, f in facts.items()
        if not f["traces"]
        if not any(n.startswith("No ") for n in f["notes"])
    ]
    for ident in sorted(drawn):
        f = facts[ident]
        thin = [b for b in f["bars"] if b[0] <= 0.5 or b[1] <= 0.5]
        if thin:
            problems.append(f"{ident}: {len(thin)} of {len(f['bars'])} bars drawn 0 px wide")
        unseen = [t for t in f["lines"] if not t["points"] and t["line"] < 1 and t["fill"] < 1]
        if unseen:
            problems.append(f"{ident}: {len(unseen)} trace(s) draw nothing")
        for axis in ("x", "y"):
            if len(set(f[axis])) != len(f[axis]):
                problems.append(f"{ident}: repeated {axis} tick labels {f[axis]}")
        money = MONEY_AXES.get(ident)
        if money:
            values = [_dollars(t) for t in f[money] if "$" in t]
            if not any(values):
                problems.append(f"{ident}: every dollar tick reads $0: {f[money]}")
    assert problems == [], f"{kind}, {period}: {problems} (screenshot {shot})"
