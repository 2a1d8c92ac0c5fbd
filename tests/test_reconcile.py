"""`clauditor reconcile` against a local fake Admin API: a hand-built month, to the cent.

The month (2026-10-01..30, UTC), every day:

* support-bot (key apikey_support, instrumented): one Sonnet 4.5 call, 100,000 uncached input,
  20,000 output, 50,000 cache read, 10,000 5-minute writes = $0.30 + $0.30 + $0.015 + $0.0375
  = $0.6525 at the built-in card ($3 / $15 / $0.30 / $3.75 per MTok).
* search-api (key apikey_search, instrumented): one Haiku 4.5 call, 200,000 input, 40,000
  output, 50,000 1-hour writes, 10 web searches = $0.20 + $0.20 + $0.10 + $0.10 (searches at
  $10 per 1,000) = $0.60 ($1 / $5 / $2 per MTok).
* batch-etl (key apikey_etl, NOT instrumented): Sonnet 4.5, 1,000,000 input and 100,000 output
  = $3.00 + $1.50 = $4.50 a day that clauditor never saw.
* From 2026-10-15 the bill charges Haiku 4.5 output at $4/MTok (a price clauditor's card does
  not have): $0.16 instead of $0.20.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from clauditor.cli import app
from clauditor.ingest.admin_api import AdminApiError, AdminClient, AdminKeyError
from clauditor.ingest.bill import fetch_bill, load_bill
from clauditor.store import write_calls
from tests.fakeadmin import ADMIN_KEY, FakeAdmin, fake_admin, usage_row

runner = CliRunner()
UTC = dt.UTC
FIRST = dt.date(2026, 10, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(30)]
STALE_FROM = dt.date(2026, 10, 15)
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
KEYS = {"apikey_support": "support-bot", "apikey_search": "search-api", "apikey_etl": "batch-etl"}


def _calls(make_calls: Any) -> Any:
    rows = []
    for day in DAYS:
        noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        rows.append(
            {
                "start_time": noon,
                "service": "support-bot",
                "request_model": "claude-sonnet-4-5",
                "response_model": SONNET,
                "input_tokens": 100_000,
                "output_tokens": 20_000,
                "cache_read_input_tokens": 50_000,
                "cache_creation_input_tokens": 10_000,
                "cache_creation_5m_input_tokens": 10_000,
                "cache_creation_1h_input_tokens": 0,
            }
        )
        rows.append(
            {
                "start_time": noon,
                "service": "search-api",
                "request_model": "claude-haiku-4-5",
                "response_model": HAIKU,
                "input_tokens": 200_000,
                "output_tokens": 40_000,
                "cache_creation_input_tokens": 50_000,
                "cache_creation_5m_input_tokens": 0,
                "cache_creation_1h_input_tokens": 50_000,
                "web_search_requests": 10,
            }
        )
    return make_calls(*rows)


def _cost(
    day: dt.date, model: str | None, token_type: str | None, cents: str, kind: str = "tokens"
):
    return {
        "day": day,
        "amount_cents": cents,
        "workspace_id": "wrkspc_default",
        "description": f"{model} {token_type}",
        "cost_type": kind,
        "token_type": token_type,
        "model": model,
        "service_tier": "standard" if model else None,
        "context_window": "0-200k" if model else None,
        "inference_geo": "not_available" if model else None,
    }


def _bill(server: FakeAdmin) -> None:
    for day in DAYS:
        server.usage += [
            usage_row(day, "apikey_support", SONNET, uncached_input_tokens=100_000,
                   output_tokens=20_000, cache_read_input_tokens=50_000, cache_creation_5m=10_000),
            usage_row(day, "apikey_etl", SONNET, uncached_input_tokens=1_000_000,
                   output_tokens=100_000),
            usage_row(day, "apikey_search", HAIKU, uncached_input_tokens=200_000,
                   output_tokens=40_000, cache_creation_1h=50_000, web_search_requests=10),
        ]  # fmt: skip
        server.costs += [
            # Sonnet, both keys: 1,100,000 in x $3 = $3.30; 120,000 out x $15 = $1.80; 50,000
            # read x $0.30 = $0.015; 10,000 5m writes x $3.75 = $0.0375 (amounts in cents).
            _cost(day, SONNET, "uncached_input_tokens", "330"),
            _cost(day, SONNET, "output_tokens", "180"),
            _cost(day, SONNET, "cache_read_input_tokens", "1.5"),
            _cost(day, SONNET, "cache_creation.ephemeral_5m_input_tokens", "3.75"),
            _cost(day, HAIKU, "uncached_input_tokens", "20"),
            _cost(day, HAIKU, "output_tokens", "16" if day >= STALE_FROM else "20"),
            _cost(day, HAIKU, "cache_creation.ephemeral_1h_input_tokens", "10"),
            _cost(day, None, None, "10", kind="web_search"),
        ]


@pytest.fixture
def month(db_path: Path, make_calls: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_calls(db_path, _calls(make_calls))
    config = tmp_path / "clauditor.toml"
    config.write_text(
        "timezone = 'America/Los_Angeles'\n[reconcile.api_keys]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in KEYS.items())
    )
    with fake_admin() as server:
        _bill(server)
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.setenv("ANTHROPIC_ADMIN_BASE_URL", server.url)
        yield db_path, config, server


def _reconcile(db: Path, config: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        ["reconcile", "--period", "2026-10-01..2026-10-30", "--as-of", "2026-11-10T00:00:00Z",
         "--db", str(db), "--config", str(config), *extra],
    )  # fmt: skip


def test_the_month_names_the_unmetered_service_and_the_stale_price_exactly(month) -> None:
    db, config, server = month
    result = _reconcile(db, config, "--fetch", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by = {(r["day"], r["model"]): r for r in rows}
    assert len(rows) == 30 * 3  # two models and the server tools, every day
    for day in DAYS:
        sonnet = by[(day.isoformat(), "claude-sonnet-4-5")]
        assert sonnet["billed_usd"] == pytest.approx(5.1525)
        assert sonnet["metered_usd"] == pytest.approx(0.6525)
        assert sonnet["unmetered_usd"] == pytest.approx(4.50)
        assert sonnet["verdict"] == "unmetered"
        assert sonnet["token_gaps"] == "input +1,000,000; output +100,000"
        haiku = by[(day.isoformat(), "claude-haiku-4-5")]
        tools = by[(day.isoformat(), "(server tools)")]
        assert (tools["billed_usd"], tools["verdict"]) == (pytest.approx(0.10), "matches")
        if day < STALE_FROM:
            assert haiku["verdict"] == "matches" and haiku["price_drift"] is None
            assert haiku["unmetered_usd"] == pytest.approx(0.0)
        else:
            assert haiku["verdict"] == "price drift"
            assert haiku["unmetered_usd"] == pytest.approx(-0.04)  # never hidden when negative
            assert haiku["price_drift"] == (
                "output_tokens billed $4.0/MTok, card $5.0/MTok, since 2026-10-15"
            )
    assert "price drift: claude-haiku-4-5 output_tokens billed at $4.0000/MTok, clauditor's card " \
        "says $5.0000/MTok, from 2026-10-15" in result.stderr  # fmt: skip
    assert "UTC days" in result.stderr

    # By key: the unmetered dollars carry the service's name, derived from the usage report.
    keyed = _reconcile(db, config, "--by", "api_key", "--format", "json")
    assert keyed.exit_code == 0, keyed.output
    rows = json.loads(keyed.stdout)
    unmetered = [r for r in rows if r["verdict"] != "matches"]
    assert {(r["service"], r["api_key_id"], r["verdict"]) for r in unmetered} == {
        ("batch-etl", "apikey_etl", "unmetered")
    }
    assert [r["unmetered_usd"] for r in unmetered] == [pytest.approx(4.50)] * 30
    assert {r["billed_basis"] for r in rows} == {"usage report x rate cards"}
    assert "no dollars per API key" in keyed.stderr
    # By workspace: the cost report's own dollars; every key here is in one workspace.
    spaces = _reconcile(db, config, "--by", "workspace", "--format", "json")
    assert spaces.exit_code == 0, spaces.output
    sonnet = [r for r in json.loads(spaces.stdout) if r["model"] == "claude-sonnet-4-5"]
    assert {(r["workspace_id"], r["verdict"], r["unmetered_usd"]) for r in sonnet} == {
        ("wrkspc_default", "unmetered", 4.5)
    }

    # A narrower period still names the first day the price differs, and the days it lacks.
    def narrow(spec: str) -> Any:
        args = ["reconcile", "--period", spec, "--as-of", "2026-11-10T00:00:00Z", "--db", str(db)]
        result = runner.invoke(app, [*args, "--config", str(config), "--format", "json"])
        assert result.exit_code == 0, result.output
        return result

    late = json.loads(narrow("2026-10-18..2026-10-20").stdout)
    assert {r["price_drift"] for r in late if r["model"] == "claude-haiku-4-5"} == {
        "output_tokens billed $4.0/MTok, card $5.0/MTok, since 2026-10-15"
    }
    early = narrow("2026-09-29..2026-10-02")
    assert "no bill stored for 2 day(s) of the period (2026-09-29..2026-09-30)" in early.stderr
    # The later runs read the stored bill: every day was settled, nothing was fetched.
    assert len(server.requests) == 2


def test_the_admin_key_is_sent_only_as_a_header_and_never_stored_or_printed(month) -> None:
    db, config, server = month
    outputs = [_reconcile(db, config, "--fetch", "--format", f) for f in ("json", "csv", "table")]
    assert all(r.exit_code == 0 for r in outputs), outputs[0].output
    assert server.requests
    for request in server.requests:
        assert request.headers["x-api-key"] == ADMIN_KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert ADMIN_KEY not in request.raw_path
        assert all(ADMIN_KEY not in v for k, v in request.headers.items() if k != "x-api-key")
    for result in outputs:
        assert ADMIN_KEY not in result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        assert {"bill_usage", "bill_costs", "bill_days"} <= set(tables)
        for table in tables:
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            text = " OR ".join(f"CAST(\"{c}\" AS VARCHAR) LIKE '%sk-ant-%'" for c in columns)
            assert con.execute(f"SELECT count(*) FROM {table} WHERE {text}").fetchall() == [(0,)]
    finally:
        con.close()
    assert ADMIN_KEY.encode() not in db.read_bytes()


def test_pages_are_followed_and_429_is_retried_after_retry_after(month) -> None:
    db, _, server = month
    server.script = [(429, {"retry-after": "0"}), (503, {"retry-after": "1"})]
    with AdminClient() as client:
        buckets = client.usage_buckets(
            dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)
        )
    # 31 days: the client asks for 31 buckets a page; force pages with a smaller range below.
    assert [b["starting_at"][:10] for b in buckets] == [
        (FIRST + dt.timedelta(days=i)).isoformat() for i in range(31)
    ]
    assert len(server.requests) == 3  # 429, 503, then the answer
    server.requests.clear()
    with AdminClient() as client:
        buckets = client.cost_buckets(
            dt.datetime(2026, 9, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)
        )
    assert len(buckets) == 61
    pages = [dict(r.query).get("page") for r in server.requests]
    assert len(pages) == 2 and pages[0] is None and pages[1]  # the second asked for next_page
    assert sum(len(b["results"]) for b in buckets) == 30 * 8


def test_retries_are_bounded(month) -> None:
    _, _, server = month
    server.script = [(529, {"retry-after": "0"})] * 3
    with AdminClient(max_attempts=3) as client, pytest.raises(AdminApiError, match="529"):
        client.usage_buckets(
            dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 10, 2, tzinfo=UTC)
        )
    assert len(server.requests) == 3


def test_a_wrong_or_missing_key_is_a_clear_error(month, monkeypatch: pytest.MonkeyPatch) -> None:
    db, config, server = month
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-wrong")
    result = _reconcile(db, config, "--fetch")
    assert result.exit_code == 2
    assert "rejected the key in $ANTHROPIC_ADMIN_KEY (401" in result.stderr
    assert "sk-ant-admin01-wrong" not in result.output
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY")
    result = _reconcile(db, config, "--fetch")
    assert result.exit_code == 2 and "set $ANTHROPIC_ADMIN_KEY" in result.stderr
    # Without --fetch and nothing stored, it says how to get the bill.
    result = _reconcile(db, config)
    assert result.exit_code == 2 and "run `clauditor reconcile --fetch`" in result.stderr


def test_what_the_api_rejects_is_reported_with_its_reason(month) -> None:
    _, _, server = month
    day, next_day = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 10, 2, tzinfo=UTC)
    rejected = r"400: group_by: invalid value\(s\) \['model'\]"
    # The cost report does not group by model (only the usage report does).
    with AdminClient() as client, pytest.raises(AdminApiError, match=rejected):
        client.cost_buckets(day, next_day, group_by=["model"])
    assert [v for k, v in server.requests[-1].query if k == "group_by[]"] == ["model"]


def test_partial_and_unsettled_days_are_fetched_again_and_settled_ones_not(month) -> None:
    db, _, server = month
    noon = dt.datetime(2026, 10, 30, 12, tzinfo=UTC)
    fetch_bill(db, dt.date(2026, 10, 1), dt.date(2026, 10, 30), now=noon)
    bill = load_bill(db, dt.date(2026, 10, 1), dt.date(2026, 10, 30))
    partial = bill.days.filter("partial")["day"].to_list()
    assert partial == [dt.date(2026, 10, 30)]
    # The day goes on: more usage arrives, and the next run (two days later) fetches the days
    # that were not settled (fetched less than 3 days after they ended), not the whole month.
    server.usage.append(usage_row(dt.date(2026, 10, 30), "apikey_etl", SONNET, output_tokens=7))
    server.requests.clear()
    later = dt.datetime(2026, 11, 1, 12, tzinfo=UTC)
    got = fetch_bill(db, dt.date(2026, 10, 1), dt.date(2026, 10, 30), now=later)
    assert got.days[0] == dt.date(2026, 10, 27) and got.days[-1] == dt.date(2026, 10, 30)
    starts = {dict(r.query)["starting_at"] for r in server.requests}
    assert starts == {"2026-10-27T00:00:00Z"}
    bill = load_bill(db, dt.date(2026, 10, 30), dt.date(2026, 10, 30))
    assert bill.usage["output_tokens"].sum() == 20_000 + 100_000 + 40_000 + 7
    assert bill.days["partial"].to_list() == [False]
    assert bill.days["usage_fetched_at"].to_list()[0] == later


def test_a_forbidden_key_is_not_retried_and_a_bad_bucket_width_is_refused(month) -> None:
    _, _, server = month
    day, next_day = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 10, 2, tzinfo=UTC)
    server.script = [(403, {})]
    with AdminClient() as client:
        with pytest.raises(AdminKeyError, match=r"\(403 "):
            client.usage_buckets(day, next_day)
        assert len(server.requests) == 1
        with pytest.raises(ValueError, match="bucket_width"):
            client.usage_buckets(day, next_day, bucket_width="1w")
