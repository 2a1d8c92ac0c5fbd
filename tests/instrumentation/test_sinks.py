"""instrument() end to end: a script's calls land in the DuckDB file, whatever goes wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

from tests.fakeanthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


APP = """
    import anthropic, clauditor, sys
    clauditor.instrument(service="support-bot", environment="prod", db=sys.argv[0] and {db!r})
    client = anthropic.Anthropic(base_url={url!r}, api_key="sk-ant-api03-SECRET", max_retries=0)
    with clauditor.feature("summarize", user_id="u-42"):
        m = client.messages.create(model="claude-haiku-4-5", max_tokens=64,
                                   messages=[{{"role": "user", "content": "hi"}}])
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=300,
                                messages=[{{"role": "user", "content": "hi"}}]) as s:
        s.get_final_message()
    print(m.usage.output_tokens)
"""


def test_script_calls_are_in_the_db_when_it_exits(tmp_path: Path) -> None:
    db = tmp_path / "calls.duckdb"
    with FakeAnthropic() as fake:
        done = _run(APP.format(db=str(db), url=fake.base_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "34"
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT service, environment, feature, user_id, operation, stream, input_tokens, "
        "output_tokens, status, cost_usd, attributes FROM calls ORDER BY stream"
    ).fetchall()
    con.close()
    assert len(rows) == 2
    plain, streamed = rows
    assert plain[:10] == (
        "support-bot",
        "prod",
        "summarize",
        "u-42",
        "chat",
        False,
        12,
        34,
        "ok",
        # claude-haiku-4-5 at $1 / $5 per MTok: 12 * 1e-6 + 34 * 5e-6 = 0.000182
        plain[9],
    )
    assert abs(plain[9] - 0.000182) < 1e-12
    assert streamed[5] is True and streamed[7] == 201  # the delta's count, not the placeholder
    assert "sk-ant" not in json.dumps([str(r) for r in rows])


def test_locked_database_spools_and_app_is_unaffected(tmp_path: Path) -> None:
    db = tmp_path / "calls.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(db)!r}); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with FakeAnthropic() as fake:
            done = _run(APP.format(db=str(db), url=fake.base_url))
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "34"
    spool = [p for p in tmp_path.rglob("*") if p.is_file() and p != db and "spool" in str(p)]
    assert spool, list(tmp_path.rglob("*"))
