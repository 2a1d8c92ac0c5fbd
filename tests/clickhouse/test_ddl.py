"""`clickhouse init`: the tables, the rate-card dictionary and the view, created idempotently."""

from __future__ import annotations

import datetime as dt

import pytest

from clauditor.clickhouse import ClickHouse, ClickHouseError, init, parse_url
from clauditor.clickhouse.ddl import (
    MIGRATIONS,
    Layout,
    migration_columns,
    schema_statements,
    view_query,
)
from clauditor.rate_cards import load_price_table
from clauditor.schema import CALLS_COLUMNS


def _tables(ch: ClickHouse, database: str) -> dict[str, str]:
    rows = ch.rows(
        "SELECT name, engine FROM system.tables WHERE database = {d:String}", {"d": database}
    )
    return dict(rows)


def test_init_creates_everything_and_a_second_run_changes_nothing(ch: ClickHouse) -> None:
    first = init(ch)
    assert first.migrations_applied == tuple(m.number for m in MIGRATIONS)
    assert first.view_created and first.rate_card_rows > 0
    tables = _tables(ch, "clauditor")
    assert tables["calls"] == "ReplacingMergeTree"
    assert tables["rate_cards_dict"] == "Dictionary"
    assert tables["calls_from_otel_traces"] == "MaterializedView"
    assert {"otel_traces", "otel_logs"} <= set(_tables(ch, "default"))
    types = dict(
        ch.rows(
            "SELECT name, type FROM system.columns WHERE database = 'default' "
            "AND table = 'otel_traces'"
        )
    )
    assert types["SpanAttributes"] == types["ResourceAttributes"]
    assert types["SpanAttributes"] == "Map(LowCardinality(String), String)"
    partition = ch.rows(
        "SELECT partition_key, sorting_key FROM system.tables "
        "WHERE database = 'clauditor' AND name = 'calls'"
    )
    assert partition == [("toYYYYMM(start_time)", "call_key")]

    second = init(ch)
    assert second.migrations_applied == ()
    assert not second.view_created
    assert second.rate_card_rows == first.rate_card_rows
    assert ch.rows("SELECT count() FROM clauditor.rate_cards") == [(first.rate_card_rows,)]


def test_every_calls_column_is_created_by_a_migration(ch: ClickHouse) -> None:
    # A column added to CALLS_COLUMNS without a ClickHouse migration fails here.
    names = tuple(name for name, _, _ in CALLS_COLUMNS)
    assert migration_columns() == names
    init(ch)
    stored = [
        r[0]
        for r in ch.rows(
            "SELECT name FROM system.columns WHERE database = 'clauditor' AND table = 'calls' "
            "ORDER BY position"
        )
    ]
    assert stored == [*names, "call_key", "source_preference"]


def test_the_dictionary_gives_the_card_the_python_table_gives(ch: ClickHouse) -> None:
    table = load_price_table()
    init(ch, table=table)
    checked = 0
    for card in table.cards:
        for key in (card.id, *card.aliases):
            for day in (card.effective_from, card.effective_from + dt.timedelta(days=400)):
                got = ch.rows(
                    "SELECT dictGetOrNull('clauditor.rate_cards_dict', 'price_version', "
                    "{k:String}, {d:Date})",
                    {"k": key, "d": day},
                )[0][0]
                want = table.lookup(key, day)
                assert got == (want.version if want else None), (key, day)
                checked += 1
    assert checked > 20
    before = ch.rows(
        "SELECT dictGetOrNull('clauditor.rate_cards_dict', 'price_version', "
        "'claude-sonnet-4-5', toDate('1969-12-31'))"
    )
    assert before == [(None,)]


def test_cluster_mode_runs_every_statement_on_the_cluster() -> None:
    # No cluster in the default run: the statements are checked as text.
    statements = schema_statements(Layout(cluster="prod"))
    assert all(" ON CLUSTER prod" in s for s in statements if s.startswith("CREATE"))
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/calls'"
        in (statements[0])
    )
    assert "ReplicatedMergeTree(" in statements[-1]


def test_the_view_follows_an_older_exporter_table_without_scope_columns() -> None:
    query = view_query(Layout(), load_price_table(), ("clauditor.feature",), False)
    assert "SpanAttributes['otel.scope.name']" in query
    assert "ScopeName" not in query


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("clickhouse://u:hunter2@db:8123/x", "CLAUDITOR_CLICKHOUSE_PASSWORD"),
        ("postgres://db/x", "not a ClickHouse URL"),
        ("chdb://relative/path", "three slashes"),
        ("clickhouse://db:8123/no-such;name", "not a plain database name"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ClickHouseError, match=problem) as caught:
        parse_url(url)
    assert "hunter2" not in str(caught.value)


def test_a_server_url_names_host_port_user_and_database() -> None:
    target = parse_url("clickhouse://reader@ch.internal:8443/costs")
    assert (target.kind, target.host, target.port, target.user, target.database) == (
        "server",
        "ch.internal",
        8443,
        "reader",
        "costs",
    )
    assert parse_url("chdb:///var/lib/clauditor").path == "/var/lib/clauditor"
    assert parse_url("chdb:///var/lib/clauditor").database == "clauditor"
