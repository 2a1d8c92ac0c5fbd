"""No secret reaches the database through any door: columns, nested or JSON-string attributes,
resource attributes, rejection reasons."""

from __future__ import annotations

import json
from pathlib import Path

from clauditor.ingest import ingest_paths
from clauditor.store import read_connection

KEY = "sk-ant-test-KEYfake-1234"
PROXY = "proxy-key-PLAIN123"


def kv(key: str, value: object) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def span(span_id: str, *attributes: dict) -> dict:
    return {
        "traceId": "a" * 32, "spanId": span_id, "name": "anthropic.messages.create", "kind": 3,
        "startTimeUnixNano": "1790000000000000000", "endTimeUnixNano": "1790000001000000000",
        "attributes": [kv("gen_ai.request.model", "claude-haiku-4-5"), *attributes],
    }  # fmt: skip


def test_no_secret_in_any_stored_byte(tmp_path: Path) -> None:
    headers = json.dumps({"extra_headers": {"x-api-key": PROXY, "Authorization": "Basic QUJD"}})
    good = span(
        "b" * 16,
        kv("clauditor.feature", f"search {KEY}"),
        kv("clauditor.user_id", KEY),
        kv("gen_ai.usage.input_tokens", 10),
        kv("llm.invocation_parameters", headers),
        {"key": "deep", "value": {"kvlistValue": {"values": [
            kv("inner", f"token={KEY}"), kv("authorization", "Basic QUJD")]}}},
    )  # fmt: skip
    bad = span("c" * 16, kv("gen_ai.usage.input_tokens", KEY))
    request = {"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", f"svc {KEY}")]},
        "scopeSpans": [{"scope": {"name": "app"}, "spans": [good, bad]}],
    }]}  # fmt: skip
    source = tmp_path / "secrets.jsonl"
    source.write_text(json.dumps(request) + "\n")
    db = tmp_path / "s.duckdb"
    summary = ingest_paths([source], db)
    assert (summary.calls_written, summary.rejected) == (1, 1)
    assert all(KEY not in r.reason for r in summary.rejections)
    with read_connection(db) as con:
        # Every table as text (through Polars: TIMESTAMPTZ to Python objects would need pytz).
        dump = "".join(
            con.sql(f"SELECT * FROM {table}").pl().write_csv() for table in ("calls", "quarantine")
        )
        feature = con.execute("SELECT feature FROM calls").fetchall()[0][0]
    for secret in (KEY, PROXY, "Basic QUJD", "KEYfake"):
        assert secret not in dump
        for path in tmp_path.glob("s.duckdb*"):
            assert secret.encode() not in path.read_bytes()
    assert feature == "search [REDACTED]"


# --- long values: scrubbed before they are cut, by `clauditor serve` and `clauditor ingest` ---

BEARER = "abcdefgh12345678"
FAKE_KEY = "sk-ant-test-xxxxxxxxxxxx"
PLAIN_SECRET = "plain-vault-Q9Z8Y7X6W5"  # no pattern gives it away: only its key name does
SECRETS = (BEARER, FAKE_KEY, PLAIN_SECRET, BEARER[:6], PLAIN_SECRET[-10:])


def long_attributes() -> dict[str, str]:
    """Attribute values over the receiver's 64 KiB cut that carry secrets: a JSON text naming
    secret fields, and a header dump whose bearer token straddles the cut."""
    from clauditor.ingest.writer import MAX_ATTRIBUTE_CHARS

    options = json.dumps(
        {
            "headers": {
                "authorization": f"Bearer {BEARER}",
                "x-api-key": FAKE_KEY,
                "X-Vault-Api-Key": PLAIN_SECRET,
            },
            "filler": "f" * (MAX_ATTRIBUTE_CHARS + 1000),
        }
    )
    head = "GET /v1 HTTP/1.1 Authorization: Bearer "
    dump = "h" * (MAX_ATTRIBUTE_CHARS - len(head) - 3) + head + BEARER + " " + "t" * 1000
    assert dump.index(BEARER) < MAX_ATTRIBUTE_CHARS < dump.index(BEARER) + len(BEARER)
    return {"llm.request.options": options, "http.request.dump": dump}


def long_request() -> dict:
    from .receiver_support import call_attributes, json_request, json_span

    long = long_attributes()
    kept = json_span(call_attributes(**long))
    # A count that is not a number: rejected, its value quoted (cut to 40) in the reason.
    broken_count = "x" * 27 + f"Bearer {BEARER}"
    quarantined = json_span(call_attributes(**long, gen_ai__usage__input_tokens=broken_count))
    return json_request([kept, quarantined])


def every_table_as_text(db: Path) -> str:
    with read_connection(db) as con:
        tables = [
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        ]
        assert {"calls", "quarantine"} <= set(tables)
        return "".join(con.sql(f'SELECT * FROM "{t}"').pl().write_csv() for t in tables)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in {where}"


def assert_db_clean(db: Path) -> None:
    dump = every_table_as_text(db)
    assert "[cut from" in dump  # the long values were kept, cut: the test reached the cut
    assert_no_secret("the database tables", dump)
    for path in db.parent.glob(db.name + "*"):  # the file (checkpointed on close) and any WAL
        assert_no_secret(path.name, path.read_bytes().decode("latin-1"))


def test_long_values_lose_their_secrets_before_the_cut_in_serve(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys
    import threading

    import httpx

    db = tmp_path / "served.duckdb"
    server = subprocess.Popen(
        [sys.executable, "-m", "clauditor.cli", "serve", "--db", str(db)]
        + ["--http-port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    lines: list[str] = []
    try:
        first = server.stderr.readline()
        lines.append(first)
        match = re.search(r"OTLP/HTTP (\S+)", first)
        assert match, first
        reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
        reader.start()
        response = httpx.post(match.group(1), json=long_request(), timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
        assert_no_secret("the receiver's answer", response.text)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    reader.join(10)
    assert_db_clean(db)
    assert_no_secret("the receiver's stderr", "".join(lines))


def test_long_values_lose_their_secrets_in_file_ingest(tmp_path: Path) -> None:
    import subprocess
    import sys

    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps(long_request()) + "\n")
    db = tmp_path / "ingested.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "clauditor.cli", "ingest", str(source), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 call written, 0 duplicates skipped, 1 rejected" in done.stderr, done.stderr
    assert_no_secret("ingest's output", done.stdout + done.stderr)
    dump = every_table_as_text(db)
    assert_no_secret("the database tables", dump)
    for path in tmp_path.glob("ingested.duckdb*"):
        assert_no_secret(path.name, path.read_bytes().decode("latin-1"))
