"""The report's "Billed vs metered": the stored bill, read as `clauditor reconcile` reads it.

Three UTC days (2026-10-01..03) of calls and a stored bill fetched from the local fake Admin API:

* Sonnet 4.5, every day: the instrumented service's 100,000 input + 20,000 output ($0.60) and
  an uninstrumented key's 1,000,000 input ($3.00) that clauditor never saw.
* Haiku 4.5, every day: 200,000 input + 40,000 output, billed at the card ($0.40) on the first
  two days and at $4/MTok output ($0.36) on the third: price drift, unmetered -$0.04.
* A model named ``<script>alert(1)</script>`` on the second day, billed $0.50 and never metered.

The report covers 2026-10-01..04 (the fourth day has no stored bill).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.store import write_calls
from tests.fakeadmin import ADMIN_KEY, fake_admin, usage_row

runner = CliRunner()
UTC = dt.UTC
DAYS = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(3)]
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
EVIL = "<script>alert(1)</script>"
PERIOD = "2026-10-01..2026-10-04"
AS_OF = "2026-11-10T00:00:00Z"


def _cost(day: dt.date, model: str, token_type: str, cents: str) -> dict[str, Any]:
    return {
        "day": day,
        "amount_cents": cents,
        "workspace_id": "wrkspc_default",
        "description": f"{model} {token_type}",
        "cost_type": "tokens",
        "token_type": token_type,
        "model": model,
        "service_tier": "standard",
        "context_window": "0-200k",
        "inference_geo": "not_available",
    }


def _calls(make_calls: Any) -> Any:
    rows = []
    for day in DAYS:
        noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        rows.append(
            dict(start_time=noon, service="support-bot", request_model="claude-sonnet-4-5",
                 response_model=SONNET, input_tokens=100_000, output_tokens=20_000)
        )  # fmt: skip
        rows.append(
            dict(start_time=noon, service="search-api", request_model="claude-haiku-4-5",
                 response_model=HAIKU, input_tokens=200_000, output_tokens=40_000)
        )  # fmt: skip
    return make_calls(*rows)


@pytest.fixture
def billed(db_path: Path, make_calls: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The database with the calls and the three days' bill stored, and a config."""
    write_calls(db_path, _calls(make_calls))
    config = tmp_path / "clauditor.toml"
    config.write_text("timezone = 'America/Los_Angeles'\n")
    with fake_admin() as server:
        for day in DAYS:
            server.usage += [
                usage_row(day, "apikey_support", SONNET, uncached_input_tokens=1_100_000,
                       output_tokens=20_000),
                usage_row(day, "apikey_search", HAIKU, uncached_input_tokens=200_000,
                       output_tokens=40_000),
            ]  # fmt: skip
            server.costs += [
                _cost(day, SONNET, "uncached_input_tokens", "330"),
                _cost(day, SONNET, "output_tokens", "30"),
                _cost(day, HAIKU, "uncached_input_tokens", "20"),
                _cost(day, HAIKU, "output_tokens", "16" if day == DAYS[-1] else "20"),
            ]
        server.usage.append(usage_row(DAYS[1], "apikey_x", EVIL, uncached_input_tokens=1000))
        server.costs.append(_cost(DAYS[1], EVIL, "uncached_input_tokens", "50"))
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.setenv("ANTHROPIC_ADMIN_BASE_URL", server.url)
        fetched = runner.invoke(
            app,
            ["reconcile", "--fetch", "--period", "2026-10-01..2026-10-03", "--as-of", AS_OF,
             "--db", str(db_path), "--config", str(config)],
        )  # fmt: skip
        assert fetched.exit_code == 0, fetched.output
    # The report runs offline: no Admin API from here on.
    monkeypatch.delenv("ANTHROPIC_ADMIN_BASE_URL")
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY")
    return db_path, config


def _report(db: Path, config: Path, out: Path, *extra: str) -> str:
    result = runner.invoke(
        app,
        ["report", "--period", PERIOD, "--as-of", AS_OF, "--db", str(db), "--config",
         str(config), "--out", str(out), *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


class _Section(HTMLParser):
    """The reconcile panel's text and the ``data-*`` attributes of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # > 0 inside <section id="reconcile">
        self.attrs: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth == 0 and tag == "section" and ("id", "reconcile") in attrs:
            self.depth = 1
        elif self.depth and tag == "section":
            self.depth += 1
        if self.depth:
            self.attrs.append({k: v for k, v in attrs if k.startswith("data-")})

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag == "section":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)


def _section(page: str) -> _Section:
    parsed = _Section()
    parsed.feed(page)
    assert parsed.attrs, "the report has no billed-vs-metered section"
    return parsed


def test_the_section_shows_the_commands_figures_per_utc_day(billed, tmp_path: Path) -> None:
    db, config = billed
    page = _report(db, config, tmp_path / "report.html", "--tz", "Asia/Tokyo")
    section = _section(page)
    text = " ".join(section.text)
    # Four Tokyo days are five UTC days (09-30 15:00 UTC to 10-04 15:00 UTC): the bill's days.
    span = next(a for a in section.attrs if a.get("data-first-day"))
    assert (span["data-first-day"], span["data-last-day"]) == ("2026-09-30", "2026-10-04")

    command = runner.invoke(
        app,
        ["reconcile", "--period", "2026-09-30..2026-10-04", "--as-of", AS_OF, "--db", str(db),
         "--config", str(config), "--format", "json"],
    )  # fmt: skip
    assert command.exit_code == 0, command.output
    rows = json.loads(command.stdout)

    days = {a["data-day"]: a for a in section.attrs if a.get("data-day")}
    assert sorted(days) == ["2026-09-30", *(d.isoformat() for d in DAYS), "2026-10-04"]
    assert days["2026-09-30"]["data-bill"] == days["2026-10-04"]["data-bill"] == "none"
    for day in DAYS:
        mine = [r for r in rows if r["day"] == day.isoformat()]
        shown = days[day.isoformat()]
        for column in ("billed_usd", "metered_usd", "unmetered_usd"):
            expected = round(sum(r[column] for r in mine), 6)
            assert float(shown[f"data-{column.replace('_', '-')}"]) == expected, (day, column)
        billed_usd = round(sum(r["billed_usd"] for r in mine), 6)
        unmetered = round(sum(r["unmetered_usd"] for r in mine), 6)
        assert float(shown["data-unmetered-share"]) == pytest.approx(unmetered / billed_usd)
        assert set(filter(None, shown["data-verdicts"].split(","))) == {
            r["verdict"] for r in mine if r["verdict"] != "matches"
        }
    total = next(a for a in section.attrs if a.get("data-total") == "period")
    for column in ("billed_usd", "unmetered_usd"):
        assert float(total[f"data-{column.replace('_', '-')}"]) == pytest.approx(
            sum(r[column] for r in rows), abs=1e-9
        )

    # The hand-computed month: $3.00 unmetered Sonnet a day; the third day's Haiku billed $0.04
    # less than metered, shown as a negative amount, not hidden.
    assert float(days["2026-10-01"]["data-unmetered-usd"]) == pytest.approx(3.00)
    assert float(days["2026-10-03"]["data-unmetered-usd"]) == pytest.approx(2.96)
    assert days["2026-10-03"]["data-verdicts"] == "unmetered,price drift"
    assert "-$0.04" in text
    assert float(total["data-billed-usd"]) == pytest.approx(3 * 4.0 - 0.04 + 0.50)
    # The drifted price: model, token type, both prices, the first day.
    assert re.search(
        r"claude-haiku-4-5 output_tokens standard, 0-200k, not_available "
        r"\$4\.0000 \$5\.0000 2026-10-03",
        text,
    )
    assert "UTC day" in text and "Asia/Tokyo" in text


def test_without_a_stored_bill_the_section_says_how_to_get_one(
    db_path: Path, make_calls: Any, tmp_path: Path
) -> None:
    write_calls(db_path, _calls(make_calls))
    config = tmp_path / "clauditor.toml"
    config.write_text("")
    section = _section(_report(db_path, config, tmp_path / "report.html"))
    text = " ".join(" ".join(section.text).split())
    assert {"data-bill": "none", "data-first-day": "2026-10-01", "data-last-day": "2026-10-04"} in [
        {k: a.get(k) for k in ("data-bill", "data-first-day", "data-last-day")}
        for a in section.attrs
    ]
    assert "No bill stored for 2026-10-01 … 2026-10-04" in text
    assert "run clauditor reconcile --fetch with ANTHROPIC_ADMIN_KEY set" in text


def test_everything_in_the_section_is_escaped(billed, tmp_path: Path) -> None:
    db, config = billed
    page = _report(db, config, tmp_path / "report.html")
    start = page.index('id="reconcile"')
    body = page[start : page.index("</section>", start)]
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # And the parsed section reads it back as the model's own name, over-billed $0.50.
    assert EVIL in " ".join(_section(page).text)
