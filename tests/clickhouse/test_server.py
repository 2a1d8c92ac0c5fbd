"""The connection layer against a real ClickHouse server, only when one is named.

Set ``CLAUDITOR_TEST_CLICKHOUSE_URL`` (e.g. ``clickhouse://default@127.0.0.1:8123``, password in
``CLAUDITOR_CLICKHOUSE_PASSWORD``): the test works in two fresh databases of its own
(``clauditor_test_<random>`` and ``..._otel``), whatever database the URL names, and drops
only those.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from pathlib import Path

import pytest

from clauditor.clickhouse import connect, init

from .exporter_rows import COLUMNS, records, row

URL = os.environ.get("CLAUDITOR_TEST_CLICKHOUSE_URL")
FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "sample_logs"
    / "conventions"
    / "otel-genai"
    / "opentelemetry-util-genai-1.3b0.jsonl"
)

pytestmark = pytest.mark.skipif(not URL, reason="CLAUDITOR_TEST_CLICKHOUSE_URL is not set")


def test_init_and_the_view_on_a_server() -> None:
    assert URL is not None
    fresh = f"clauditor_test_{secrets.token_hex(4)}"
    client = connect(urllib.parse.urlsplit(URL)._replace(path="/" + fresh).geturl())
    assert client.database == fresh
    otel = client.database + "_otel"
    try:
        assert init(client, otel_database=otel).view_created
        assert not init(client, otel_database=otel).view_created
        spans = records([FIXTURE])
        client.insert(f"{otel}.otel_traces", [row(s) for s in spans], COLUMNS)
        stored = client.rows(f"SELECT count() FROM {client.database}.calls FINAL")[0][0]
        assert 0 < stored <= len(spans)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {client.database}")
        client.command(f"DROP DATABASE IF EXISTS {otel}")
        client.close()
