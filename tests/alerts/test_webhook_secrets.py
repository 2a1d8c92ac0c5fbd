"""The configured webhook URL is a secret in every spelling: a gateway that echoes the request
path back (as typed, upper-cased, or past the 200-character cut of the error text) must not get
any of it into `clauditor alerts check`'s output, its logs or the ``alerts`` table."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clauditor.pricing import price_calls
from clauditor.schema import frame_from_rows
from clauditor.store import read_connection, write_calls
from tests.conftest import call_row

DAY = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
TOKEN = "s3cr3tT0kenXYZ4v9QmR2pL7"  # a stand-in for the secret part of a Slack webhook URL
SECRET_PATH = f"/services/T0SECRET1/B0SECRET2/{TOKEN}"
LONG_SECRET_PATH = SECRET_PATH + "/" + "Zq7" * 90  # 300 characters past the host

# Runs the CLI with every logger at DEBUG, so that httpx's request lines (which name the URL)
# and clauditor's warnings all reach stderr.
CLI = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
    "from clauditor.cli import main; sys.argv[0] = 'clauditor'; main()"
)


class EchoingGateway:
    """A webhook stand-in on 127.0.0.1 that answers every POST ``404 Cannot POST <path>``,
    the path ``upper``-cased when asked (as some gateways print it)."""

    def __init__(self, *, upper: bool = False) -> None:
        self.paths: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                gateway.paths.append(self.path)
                path = self.path.upper() if upper else self.path
                body = f"<pre>Cannot POST {path}</pre>".encode()
                self.send_response(404)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def error_storm_db(tmp_path: Path) -> Path:
    """Ten calls a minute from 10:00 to 11:10, half of them failing from 11:00: the
    error-rate alert starts as of 11:10."""
    rows = []
    for minute in range(70):
        for i in range(10):
            start = DAY.replace(hour=10) + dt.timedelta(minutes=minute, seconds=6 * i)
            row: dict[str, Any] = {
                "span_id": f"{minute:04d}{i:02d}".ljust(16, "0"),
                "start_time": start,
                "end_time": start + dt.timedelta(seconds=2),
            }
            if minute >= 60 and i % 2 == 0:
                row.update(status="error", error_type="overloaded_error", http_status=529)
            rows.append(call_row(**row))
    db = tmp_path / "clauditor.duckdb"
    write_calls(db, price_calls(frame_from_rows(rows)))
    return db


@pytest.fixture
def gateway(request: pytest.FixtureRequest) -> Iterator[EchoingGateway]:
    server = EchoingGateway(upper=getattr(request, "param", False))
    yield server
    server.close()


def every_table_as_text(db: Path) -> str:
    with read_connection(db) as con:
        tables = [
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        ]
        assert "alerts" in tables
        return "".join(con.sql(f'SELECT * FROM "{t}"').pl().write_csv() for t in tables)


def assert_no_piece_of(secret: str, where: str, text: str) -> None:
    """No 8-character run of ``secret`` (in any letter case) is in ``text``."""
    lowered, secret = text.lower(), secret.lower()
    for i in range(len(secret) - 7):
        assert secret[i : i + 8] not in lowered, f"{secret[i : i + 8]!r} found in {where}"


@pytest.mark.parametrize(
    ("gateway", "path"),
    [(False, SECRET_PATH), (True, SECRET_PATH), (False, LONG_SECRET_PATH)],
    ids=["echoed", "echoed-upper-case", "echoed-300-chars"],
    indirect=["gateway"],
)
def test_gateway_echoing_the_secret_path_leaks_it_nowhere(
    gateway: EchoingGateway, path: str, error_storm_db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "clauditor.toml"
    config.write_text('[alerts]\ncooldown = "15m"\nlookback = "5m"\n')
    env = {
        **os.environ,
        "CLAUDITOR_SLACK_WEBHOOK_URL": gateway.base + path,
        "CLAUDITOR_WEBHOOK_URL": gateway.base + path + "?sig=QUERYsecret77",
    }
    done = subprocess.run(
        [sys.executable, "-c", CLI, "alerts", "check", "--db", str(error_storm_db)]
        + ["--config", str(config), "--as-of", "2026-10-05T11:10:00Z"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    # The alert fired, both destinations were tried and answered 404 with the path echoed.
    assert done.returncode == 1, done.stderr
    assert sorted(gateway.paths) == [path, path + "?sig=QUERYsecret77"]
    assert "delivery failed" in done.stderr and "HTTP 404: <pre>Cannot POST" in done.stderr
    assert "HTTP Request: POST" in done.stderr  # httpx's own log line, URL redacted
    last_error = every_table_as_text(error_storm_db)
    assert "Cannot POST" in last_error
    secret = path.split("/", 2)[2]  # everything after "/services/"
    for where, text in [
        ("stdout", done.stdout),
        ("stderr (output and logs)", done.stderr),
        ("the database", last_error),
    ]:
        assert_no_piece_of(secret, where, text)
        assert_no_piece_of("QUERYsecret77", where, text)
