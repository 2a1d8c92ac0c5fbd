"""The DuckDB store: migrations, idempotent batch writes, busy files, the spool, the views."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from clauditor.errors import DatabaseBusyError, StoreError
from clauditor.schema import CALLS_COLUMNS, conform
from clauditor.store import (
    SCHEMA_VERSION,
    drain_spool,
    insert_in_transaction,
    load_calls,
    read_connection,
    schema_version,
    spool_dir,
    write_calls,
    write_connection,
)
from tests.conftest import call_row, database_at_version

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)").fetchall()
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


class LockHolder:
    """Another process holding the database file open for writing until released."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


def test_new_file_gets_every_column_and_view(db_path: Path) -> None:
    with write_connection(db_path):
        pass
    with read_connection(db_path) as con:
        columns = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls' "
            "ORDER BY ordinal_position"
        ).fetchall()
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        assert schema_version(con) == SCHEMA_VERSION
    assert [c[0] for c in columns] == [name for name, _, _ in CALLS_COLUMNS]
    assert {"daily_costs", "feature_costs", "errors"} <= views


def test_old_file_is_upgraded_when_opened(db_path: Path) -> None:
    # A file as version 1 left it: only the first migration applied.
    database_at_version(db_path, 1).close()
    with read_connection(db_path) as con:
        assert schema_version(con) == SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]


def test_writes_are_idempotent_on_span_id(db_path: Path, make_calls) -> None:
    frame = make_calls({"span_id": "a" * 16}, {"span_id": "b" * 16}, {"span_id": "a" * 16})
    first = write_calls(db_path, frame)
    second = write_calls(db_path, frame)
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (second.inserted, second.duplicates) == (0, 3)
    assert sorted(load_calls(db_path).get_column("span_id")) == ["a" * 16, "b" * 16]


@pytest.mark.parametrize("optimistic", [True, False])
def test_a_batch_with_a_stored_span_is_written_once_either_way(
    db_path: Path, make_calls, optimistic: bool
) -> None:
    """The unchecked insert fails on the stored span; the batch is then written again,
    checked: same rows, same counts, and what runs before the commit takes effect once."""
    write_calls(db_path, make_calls({"span_id": "a" * 16}, {"span_id": "b" * 16}))
    with write_connection(db_path) as con:
        con.execute("CREATE TABLE batch_log (n INTEGER)").fetchall()

        def log(c: duckdb.DuckDBPyConnection) -> None:
            c.execute("INSERT INTO batch_log VALUES (1)").fetchall()

        batch = conform(make_calls({"span_id": "b" * 16}, {"span_id": "c" * 16}))
        result = insert_in_transaction(con, batch, log, optimistic=optimistic)
        assert (result.inserted, result.duplicates) == (1, 1)
        assert con.execute("SELECT count(*) FROM batch_log").fetchall() == [(1,)]
        fresh = conform(make_calls({"span_id": "d" * 16}))
        assert insert_in_transaction(con, fresh, log, optimistic=optimistic).inserted == 1
        assert con.execute("SELECT count(*) FROM batch_log").fetchall() == [(2,)]
    assert sorted(load_calls(db_path).get_column("span_id")) == [c * 16 for c in "abcd"]


def test_a_failing_optimistic_batch_leaves_nothing(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({"span_id": "a" * 16}))

    def explode(con: duckdb.DuckDBPyConnection) -> None:
        raise RuntimeError("crash mid-batch")

    with write_connection(db_path) as con, pytest.raises(RuntimeError, match="crash"):
        batch = conform(make_calls({"span_id": "a" * 16}, {"span_id": "b" * 16}))
        insert_in_transaction(con, batch, explode, optimistic=True)
    assert load_calls(db_path).get_column("span_id").to_list() == ["a" * 16]


def test_views_sum_costs(db_path: Path, make_calls) -> None:
    # Two Sonnet 4.5 calls of 1,000 input tokens: $0.003 each, $0.006 together.
    write_calls(db_path, make_calls({}, {}, {"request_model": "nope", "response_model": None}))
    with read_connection(db_path) as con:
        rows = con.execute(
            "SELECT feature, model, calls, cost_usd, unpriced_calls FROM daily_costs ORDER BY model"
        ).fetchall()
    assert rows[0][0] == "chat" and rows[0][1] == "claude-sonnet-4-5-20250929"
    assert rows[0][2] == 2 and rows[0][3] == pytest.approx(0.006) and rows[0][4] == 0
    assert rows[1][1] == "nope" and rows[1][3] is None and rows[1][4] == 1


def test_reader_fails_naming_the_holder(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}))
    holder = LockHolder(db_path)
    try:
        with pytest.raises(DatabaseBusyError) as caught, read_connection(db_path, timeout_s=0.3):
            pass
        assert str(holder.proc.pid) in str(caught.value)
        assert "locked" in str(caught.value)
    finally:
        holder.release()


def test_reader_waits_for_a_writer_to_finish(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}))
    holder = LockHolder(db_path)
    # Release only after the reader has started waiting; the reader's budget is generous.
    threading.Timer(0.3, holder.release).start()
    with read_connection(db_path, timeout_s=60) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchall() == [(1,)]


def test_busy_file_spools_and_next_write_drains(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}))
    holder = LockHolder(db_path)
    try:
        result = write_calls(db_path, make_calls({}, {}), timeout_s=0.2, spool_on_busy=True)
        assert result.spooled == 2 and result.inserted == 0
        assert len(list(spool_dir(db_path).glob("*.parquet"))) == 1
        with pytest.raises(DatabaseBusyError):
            write_calls(db_path, make_calls({}), timeout_s=0.2)
    finally:
        holder.release()
    drained = write_calls(db_path, make_calls({}))
    assert drained.inserted == 3  # its own row plus the two spooled ones
    assert list(spool_dir(db_path).glob("*.parquet")) == []
    assert load_calls(db_path).height == 4


def test_drain_spool_twice_counts_once(db_path: Path, make_calls) -> None:
    frame = make_calls({}, {})
    write_calls(db_path, frame)
    holder = LockHolder(db_path)
    try:
        write_calls(db_path, frame, timeout_s=0.1, spool_on_busy=True)
    finally:
        holder.release()
    result = drain_spool(db_path)
    assert (result.inserted, result.duplicates) == (0, 2)
    assert load_calls(db_path).height == 2


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"), read_connection(tmp_path / "x.duckdb"):
        pass


def test_failed_batch_leaves_nothing(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}))

    def explode(con: duckdb.DuckDBPyConnection) -> None:
        raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError), write_connection(db_path) as con:
        insert_in_transaction(con, conform(make_calls({}, {})), explode)
    assert load_calls(db_path).height == 1


def test_view_token_sums_are_integers(db_path: Path, make_calls) -> None:
    write_calls(db_path, make_calls({}, {}))
    with read_connection(db_path) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name IN ('daily_costs', 'feature_costs') "
                "AND column_name = 'input_tokens'"
            ).fetchall()
        )
    assert set(types.values()) == {"BIGINT"}


# --- one row per call across batches ------------------------------------------------------------

RID = "msg_01SameCallSeenTwice"


def _seen_by(source: str, span: str, **overrides: object) -> dict[str, object]:
    """A row of one instrumentation for the call RID (the attributes carry its response id)."""
    row: dict[str, object] = {
        "span_id": span * 16,
        "source": source,
        "attributes": json.dumps({"gen_ai.response.id": RID}),
    }
    row.update(overrides)
    return row


def test_a_better_source_arriving_later_replaces_the_stored_row(db_path: Path, make_calls) -> None:
    # OpenLLMetry's span of the call lands first (it carries the feature), the SDK's own span
    # of the same call in a later batch: one row stays, the SDK's, with the feature.
    write_calls(db_path, make_calls(_seen_by("openllmetry", "a", feature="summarize")))
    result = write_calls(db_path, make_calls(_seen_by("anthropic-sdk", "b", feature=None)))
    assert (result.inserted, result.duplicates, result.merged) == (0, 1, 1)
    rows = load_calls(db_path).to_dicts()
    assert [(r["span_id"], r["source"], r["feature"]) for r in rows] == [
        ("b" * 16, "anthropic-sdk", "summarize")
    ]
    # One Sonnet 4.5 call of 1,000 input tokens: $0.003, counted once.
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.003)


def test_a_worse_source_arriving_later_is_folded_into_the_stored_row(
    db_path: Path, make_calls
) -> None:
    write_calls(db_path, make_calls(_seen_by("clauditor", "a", feature=None, user_id=None)))
    later = make_calls(_seen_by("openinference", "b", feature="search", user_id="u-7"))
    result = write_calls(db_path, later)
    assert (result.inserted, result.merged) == (0, 1)
    rows = load_calls(db_path).to_dicts()
    assert [(r["span_id"], r["feature"], r["user_id"]) for r in rows] == [
        ("a" * 16, "search", "u-7")
    ]
    # Re-sending the folded span changes nothing, and the kept row keeps its own feature.
    again = write_calls(db_path, later)
    assert (again.inserted, again.duplicates) == (0, 1)
    assert load_calls(db_path).height == 1


def test_rows_of_one_source_or_of_different_calls_are_never_merged(
    db_path: Path, make_calls
) -> None:
    write_calls(db_path, make_calls(_seen_by("clauditor", "a")))
    # Same source and response id, another span: kept (only the span_id key dedupes one
    # source). Another source with another response id: another call.
    other_call = _seen_by("anthropic-sdk", "c", attributes=json.dumps({"gen_ai.response.id": "x"}))
    result = write_calls(db_path, make_calls(_seen_by("clauditor", "b"), other_call))
    assert (result.inserted, result.merged) == (2, 0)
    with read_connection(db_path) as con:
        stored = con.execute("SELECT span_id, response_id FROM calls ORDER BY 1").fetchall()
    assert stored == [("a" * 16, RID), ("b" * 16, RID), ("c" * 16, "x")]


# The calls table had 42 columns at version 5 (response_id the last one).
V5_COLUMNS = 42


def test_upgrade_to_v6_fills_the_rates_of_rows_priced_by_todays_card(db_path: Path) -> None:
    # A file as version 5 left it: two Sonnet 4.5 rows priced then by today's card, one row of
    # a model that had no price. Version 6 adds the new columns; the rates of the first rows are
    # the card's ($3 in, $15 out, $0.30 read, $3.75 5m, $6 1h per MTok), the unpriced row keeps
    # NULL rates and costs until `clauditor reprice` (its costs are not changed on upgrade).
    from clauditor.pricing import price_calls
    from clauditor.schema import frame_from_rows

    con = database_at_version(db_path, 5)
    rows = price_calls(frame_from_rows([
        call_row(span_id="a" * 16), call_row(span_id="b" * 16, cache_creation_input_tokens=10),
        call_row(span_id="c" * 16, request_model="claude-opus-5-5", response_model=None),
    ]))  # fmt: skip
    rows = rows.with_columns(
        pl.when(pl.col("span_id") == "c" * 16).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("cost_usd", "cost_input_usd", "price_version")
    )
    old = rows.select([n for n, _, _ in CALLS_COLUMNS][:V5_COLUMNS])  # noqa: F841
    con.execute("INSERT INTO calls SELECT * FROM old").fetchall()
    con.close()
    with write_connection(db_path) as con:
        assert schema_version(con) == SCHEMA_VERSION
    got = {r["span_id"][0]: r for r in load_calls(db_path).to_dicts()}
    assert (got["a"]["rate_input"], got["a"]["rate_output"]) == (3.0, 15.0)
    assert (got["a"]["rate_cache_read"], got["a"]["rate_cache_write_1h"]) == (0.30, 6.0)
    assert got["a"]["cache_ttl_assumed"] is None and got["b"]["cache_ttl_assumed"] == "5m"
    assert got["a"]["cost_tools_usd"] == 0.0
    assert got["c"]["rate_input"] is None and got["c"]["cost_usd"] is None


def test_upgrade_fills_the_response_id_of_stored_rows(db_path: Path, make_calls) -> None:
    # A file as version 4 left it, with a row in it: version 5 adds the column and fills it,
    # so a later batch merges with rows written before the upgrade.
    con = database_at_version(db_path, 4)
    con.close()
    # The row as version 4 stored it: no response_id column yet.
    v4 = [n for n, _, _ in CALLS_COLUMNS][: V5_COLUMNS - 1]
    old = conform(make_calls(_seen_by("openlit", "a", feature="triage"))).select(v4)  # noqa: F841
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO calls SELECT * FROM old").fetchall()
    con.close()
    result = write_calls(db_path, make_calls(_seen_by("clauditor", "b", feature=None)))
    assert result.merged == 1
    rows = load_calls(db_path).to_dicts()
    assert [(r["span_id"], r["feature"]) for r in rows] == [("b" * 16, "triage")]
