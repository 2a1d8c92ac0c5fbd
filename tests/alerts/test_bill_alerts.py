"""The bill's alert rules: unmetered spend and price drift start, hold and resolve like the rest.

The month of tests/test_reconcile.py: batch-etl's key spends $4.50 a day clauditor never sees
(of a $5.75 day: far above the 5 % default), and Haiku output is billed at $4/MTok instead of
the card's $5 from 2026-10-15.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from clauditor.alerts import check_alerts
from clauditor.alerts.message import AlertMessage
from clauditor.config import parse_config
from clauditor.store import write_calls
from tests.fakeadmin import ADMIN_KEY, fake_admin
from tests.test_reconcile import KEYS, SONNET, _bill, _calls

UTC = dt.UTC


@pytest.fixture
def billed(db_path: Path, make_calls: Any, monkeypatch: pytest.MonkeyPatch):
    write_calls(db_path, _calls(make_calls))
    with fake_admin() as server:
        _bill(server)
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.setenv("ANTHROPIC_ADMIN_BASE_URL", server.url)
        yield db_path, server


def _config(fetch: bool = True) -> Any:
    return parse_config({"alerts": {"fetch_bill": fetch}, "reconcile": {"api_keys": KEYS}})


def test_unmetered_and_drift_start_once_hold_and_resolve(billed) -> None:
    db, server = billed
    sent: list[AlertMessage] = []
    at = dt.datetime(2026, 10, 20, 6, tzinfo=UTC)

    check_alerts(db, _config(), as_of=at, sender=sent.append)
    starts = {(m.rule, m.key, m.transition) for m in sent}
    assert starts == {
        ("unmetered", "total", "start"),
        ("price_drift", "claude-haiku-4-5 output_tokens", "start"),
    }
    unmetered = next(m for m in sent if m.rule == "unmetered")
    assert "batch-etl $4.50" in unmetered.summary
    drift = next(m for m in sent if m.rule == "price_drift")
    assert "$4.0000/MTok from 2026-10-15" in drift.summary and "$5.0000/MTok" in drift.summary
    assert server.requests  # fetch_bill = true fetched the week first

    sent.clear()
    check_alerts(db, _config(), as_of=at + dt.timedelta(hours=1), sender=sent.append)
    assert sent == []  # holding: nothing new

    # batch-etl is instrumented... or stops: from 2026-10-20 the bill has only what was metered.
    clear = dt.date(2026, 10, 20)
    server.usage = [
        r for r in server.usage if not (r["api_key_id"] == "apikey_etl" and r["day"] >= clear)
    ]
    for row in server.costs:
        if row["day"] >= clear and row["model"] == SONNET:
            row["amount_cents"] = {"330": "30", "180": "30"}.get(
                row["amount_cents"], row["amount_cents"]
            )
    check_alerts(db, _config(), as_of=dt.datetime(2026, 10, 22, 6, tzinfo=UTC), sender=sent.append)
    assert {(m.rule, m.transition) for m in sent} == {("unmetered", "resolve")}


def test_a_dry_run_never_fetches_and_no_bill_is_silence(billed) -> None:
    db, server = billed
    result = check_alerts(
        db, _config(), as_of=dt.datetime(2026, 10, 20, 6, tzinfo=UTC), dry_run=True
    )
    assert server.requests == []
    assert not [m for m in result.printed if m.rule in ("unmetered", "price_drift")]


def test_without_fetch_bill_the_stored_bill_is_read_and_nothing_fetched(billed) -> None:
    db, server = billed
    sent: list[AlertMessage] = []
    check_alerts(
        db, _config(fetch=False), as_of=dt.datetime(2026, 10, 20, 6, tzinfo=UTC), sender=sent.append
    )
    assert server.requests == [] and not [m for m in sent if m.rule == "unmetered"]
