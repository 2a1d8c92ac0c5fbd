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
