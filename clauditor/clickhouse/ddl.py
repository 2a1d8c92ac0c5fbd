"""``clauditor clickhouse init``: the tables, the rate-card dictionary and the view, idempotently.

What :func:`init` leaves in place (every statement is ``IF NOT EXISTS`` or replaces what it
generated itself, so running it again changes nothing):

* ``<db>.calls`` by numbered migrations (:data:`MIGRATIONS`, recorded in
  ``<db>.clauditor_migrations``): the ``calls`` columns of :data:`clauditor.schema.CALLS_COLUMNS`
  in ClickHouse types, partitioned by month of ``start_time``. One row per call: the engine is
  a ``ReplacingMergeTree`` keyed by ``call_key`` (the response id, else the span id) whose
  version is ``source_preference`` (the preferred instrumentation of ``schema.SOURCES`` is
  highest), so a re-sent span and a second instrumentation's span of the same call end as one
  row. Read it with ``FINAL`` (merges run in the background; until then both rows are stored).
* ``<db>.rate_cards`` and the dictionary ``<db>.rate_cards_dict`` over it, rewritten from the
  :class:`~clauditor.rate_cards.PriceTable` on every run (one row per model key and period).
* the exporter's ``otel_traces`` and ``otel_logs`` in its database (default ``default``), created
  only when absent, with the schema of the contrib ``clickhouseexporter``'s
  ``internal/sql_templates/traces_table.sql``/``logs_table.sql`` (the layout with ``ScopeName``
  and ``ScopeVersion`` columns; an older table without them is read through
  ``otel.scope.name``).
* the materialized view ``<db>.calls_from_otel_traces`` (otel_traces → priced calls), generated
  by :mod:`.view`. When its SQL changed (new conventions, prices, config) it is dropped and
  created again, and ``calls`` is backfilled from every row already in ``otel_traces``.

Where ClickHouse's merge differs from the Python store's (:func:`clauditor.store.insert_calls`):

* the Python store gives the kept row the feature, user and conversation of the row it drops;
  the ReplacingMergeTree keeps one row whole, so a feature only the dropped span carried (an
  OpenLLMetry span's association property beside the SDK's own span) is lost;
* the Python store merges two rows of one response id only when their sources differ; here any
  two rows of one response id are one call;
* of two spans with the same span id and source, the Python store keeps the first stored; here
  the last inserted (they are the same span re-sent, so the same row);
* merging happens within a month partition: two spans of one call on either side of a month
  boundary stay two rows.

With ``cluster``, every statement runs ``ON CLUSTER`` and the tables are ``Replicated*`` engines
(path ``/clickhouse/tables/{shard}/{database}/{table}``, replica ``{replica}``: the server's
macros).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clauditor import semconv as sc
from clauditor.rate_cards import MAX_TIERS, RATE_NAMES, PriceTable, RateCard, load_price_table
from clauditor.schema import CALLS_COLUMNS

from .client import ClickHouse
from .view import CALL_KEY, SOURCE_PREFERENCE, UNPRICED, lit, priced_select, spans_select

__all__ = [
    "EXPORTER_SCHEMA",
    "MIGRATIONS",
    "InitResult",
    "Migration",
    "Layout",
    "calls_type",
    "exporter_tables",
    "schema_statements",
    "init",
    "reprice",
]

# Where the exporter's table layout comes from (named in docs/clickhouse.md too).
EXPORTER_SCHEMA = (
    "opentelemetry-collector-contrib exporter/clickhouseexporter/internal/sql_templates/"
    "traces_table.sql and logs_table.sql at commit ff7a946"
)
_DATE_MAX = dt.date(2149, 6, 6)  # the last day a ClickHouse Date holds


@dataclass(frozen=True)
class Layout:
    """The names :func:`init` uses: ``database`` holds clauditor's objects, ``otel_database``
    the exporter's tables."""

    database: str = "clauditor"
    otel_database: str = "default"
    traces_table: str = "otel_traces"
    logs_table: str = "otel_logs"
    cluster: str | None = None

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def engine(self, name: str, table: str, args: str = "") -> str:
        """``name`` (e.g. ``ReplacingMergeTree``), replicated when there is a cluster."""
        if not self.cluster:
            return f"{name}({args})"
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'"
        return f"Replicated{name}({path}{', ' + args if args else ''})"


def calls_type(name: str, duckdb_type: str) -> str:
    """The ClickHouse type of one ``calls`` column, from its DuckDB type."""
    if name == "span_id":
        return "String"
    if name in ("start_time", "end_time"):
        return "DateTime64(6, 'UTC')"
    base = duckdb_type.split()[0]
    mapping = {
        "VARCHAR": "Nullable(String)",
        "DOUBLE": "Nullable(Float64)",
        "INTEGER": "Nullable(Int32)",
        "BIGINT": "Nullable(Int64)",
        "BOOLEAN": "Nullable(Bool)",
        "JSON": "String",
    }
    if base not in mapping:
        raise ValueError(f"calls column {name}: no ClickHouse type for DuckDB {duckdb_type}")
    return mapping[base]


def _column(name: str) -> str:
    duckdb_type = next(t for n, t, _ in CALLS_COLUMNS if n == name)
    return f"{name} {calls_type(name, duckdb_type)}"


# The calls columns as the first migration creates them (the schema of clauditor 0.1); a column
# added to CALLS_COLUMNS later gets a migration of its own (ADD COLUMN), and
# tests/clickhouse/test_ddl.py fails until it has one.
_FIRST_COLUMNS = tuple(name for name, _, _ in CALLS_COLUMNS)


def _create_calls(layout: Layout) -> list[str]:
    columns = ",\n    ".join(
        [_column(n) for n in _FIRST_COLUMNS] + [f"{CALL_KEY} String", f"{SOURCE_PREFERENCE} UInt8"]
    )
    engine = layout.engine("ReplacingMergeTree", "calls", SOURCE_PREFERENCE)
    return [
        f"CREATE TABLE IF NOT EXISTS {layout.database}.calls{layout.on_cluster} (\n    {columns}\n)"
        f" ENGINE = {engine} PARTITION BY toYYYYMM(start_time) ORDER BY {CALL_KEY}"
    ]


@dataclass(frozen=True)
class Migration:
    """One numbered step of the ``calls`` schema: ``statements(layout)`` runs once; ``columns``
    names the ``calls`` columns it adds."""

    number: int
    description: str
    statements: Callable[[Layout], list[str]]
    columns: tuple[str, ...] = ()


def _add_columns(number: int, *names: str) -> Migration:
    """A migration adding ``names`` (appended to ``CALLS_COLUMNS``) to ``calls``."""

    def statements(layout: Layout) -> list[str]:
        return [
            f"ALTER TABLE {layout.database}.calls{layout.on_cluster} "
            f"ADD COLUMN IF NOT EXISTS {_column(n)}"
            for n in names
        ]

    return Migration(number, "add " + ", ".join(names), statements, names)


# Append only; never edit a released one. A later column: ``_add_columns(2, "new_column")``.
MIGRATIONS: tuple[Migration, ...] = (Migration(1, "create calls", _create_calls, _FIRST_COLUMNS),)


def migration_columns() -> tuple[str, ...]:
    """Every ``calls`` column the migrations create, in order (for the schema test)."""
    return tuple(name for m in MIGRATIONS for name in m.columns)


# --- the exporter's tables ---------------------------------------------------------------------


def _traces_table(layout: Layout) -> str:
    attrs = "Map(LowCardinality(String), String)"
    name = f"{layout.otel_database}.{layout.traces_table}"
    engine = layout.engine("MergeTree", layout.traces_table)
    return f"""CREATE TABLE IF NOT EXISTS {name}{layout.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {attrs} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {attrs} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes {attrs})
        CODEC(ZSTD(1)),
    Links Nested (TraceId String, SpanId String, TraceState String, Attributes {attrs})
        CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def _logs_table(layout: Layout) -> str:
    attrs = "Map(LowCardinality(String), String)"
    name = f"{layout.otel_database}.{layout.logs_table}"
    engine = layout.engine("MergeTree", layout.logs_table)
    return f"""CREATE TABLE IF NOT EXISTS {name}{layout.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {attrs} CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {attrs} CODEC(ZSTD(1)),
    LogAttributes {attrs} CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


# --- rate cards ----------------------------------------------------------------------------------

_CARD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model_key", "String"),
    ("effective_from", "Date"),
    ("effective_to", "Date"),
    ("price_version", "String"),
    ("geo", "Nullable(Float64)"),
    ("regional", "Nullable(Float64)"),
    *((f"b_{n}", "Float64") for n in RATE_NAMES),
    *((f"f_{n}", "Nullable(Float64)") for n in RATE_NAMES),
    *(
        item
        for i in range(MAX_TIERS)
        for item in (
            (f"t{i}_above", "Nullable(Int64)"),
            *((f"t{i}_{n}", "Nullable(Float64)") for n in RATE_NAMES),
        )
    ),
)


def card_rows(table: PriceTable) -> list[tuple[object, ...]]:
    """One row per model key (id or alias) and period, in :data:`_CARD_COLUMNS` order: the
    card in force from ``effective_from`` to the day before that key's next card."""
    by_key: dict[str, dict[dt.date, RateCard]] = {}
    for card in table.cards:  # later cards replace earlier ones of the same key and date
        for key in (card.id, *card.aliases):
            by_key.setdefault(key, {})[card.effective_from] = card
    rows: list[tuple[object, ...]] = []
    for key, cards in sorted(by_key.items()):
        days = sorted(cards)
        for i, day in enumerate(days):
            card = cards[day]
            end = days[i + 1] - dt.timedelta(days=1) if i + 1 < len(days) else _DATE_MAX
            fast = card.fast.as_tuple() if card.fast else (None,) * 5
            row: list[object] = [
                key,
                max(day, dt.date(1970, 1, 1)),
                end,
                card.version,
                card.us_only_multiplier,
                card.regional_multiplier,
                *card.rates.as_tuple(),
                *fast,
            ]
            tiers = card.tiers
            for t in range(MAX_TIERS):
                tier = tiers[t] if t < len(tiers) else None
                row.append(tier.above if tier else None)
                row += list(tier.rates.as_tuple() if tier else (None,) * 5)
            rows.append(tuple(row))
    return rows


def _rate_card_statements(layout: Layout) -> list[str]:
    columns = ", ".join(f"{n} {t}" for n, t in _CARD_COLUMNS)
    db = layout.database
    engine = layout.engine("MergeTree", "rate_cards")
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.rate_cards{layout.on_cluster} ({columns}) "
        f"ENGINE = {engine} ORDER BY (model_key, effective_from)",
        f"CREATE DICTIONARY IF NOT EXISTS {db}.rate_cards_dict{layout.on_cluster} ({columns}) "
        f"PRIMARY KEY model_key SOURCE(CLICKHOUSE(DB {lit(db)} TABLE 'rate_cards')) "
        "LIFETIME(0) LAYOUT(COMPLEX_KEY_RANGE_HASHED()) RANGE(MIN effective_from MAX effective_to)",
    ]


def _write_rate_cards(client: ClickHouse, layout: Layout, table: PriceTable) -> int:
    rows = card_rows(table)
    db = layout.database
    client.command(f"TRUNCATE TABLE IF EXISTS {db}.rate_cards{layout.on_cluster}")
    client.insert(f"{db}.rate_cards", rows, [n for n, _ in _CARD_COLUMNS])
    client.command(f"SYSTEM RELOAD DICTIONARY {db}.rate_cards_dict{layout.on_cluster}")
    return len(rows)


# --- the view ------------------------------------------------------------------------------------


def _has_scope_columns(client: ClickHouse, layout: Layout) -> bool:
    rows = client.rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": layout.otel_database, "t": layout.traces_table},
    )
    return "ScopeName" in {r[0] for r in rows}


def view_query(
    layout: Layout, table: PriceTable, feature_attributes: Sequence[str], scope_columns: bool
) -> str:
    """The view's SELECT: spans of ``otel_traces`` to priced ``calls`` rows."""
    source = f"{layout.otel_database}.{layout.traces_table}"
    spans = spans_select(source, feature_attributes=feature_attributes, scope_columns=scope_columns)
    return priced_select(spans, table, f"{layout.database}.rate_cards_dict")


def exporter_tables(layout: Layout) -> list[str]:
    """The exporter's ``otel_traces`` and ``otel_logs`` DDL (``IF NOT EXISTS``) for ``layout``."""
    return [_traces_table(layout), _logs_table(layout)]


def schema_statements(layout: Layout) -> list[str]:
    """Every DDL statement :func:`init` runs for ``layout`` apart from the view (for review)."""
    statements = [s for m in MIGRATIONS for s in m.statements(layout)]
    return [*statements, *_rate_card_statements(layout), *exporter_tables(layout)]


@dataclass(frozen=True)
class InitResult:
    """What :func:`init` did: migrations applied, rate-card rows written, whether the view was
    (re)created, and how many ``otel_traces`` rows the backfill read."""

    migrations_applied: tuple[int, ...]
    rate_card_rows: int
    view_created: bool
    backfilled_spans: int


def init(
    client: ClickHouse,
    *,
    otel_database: str = "default",
    cluster: str | None = None,
    table: PriceTable | None = None,
    feature_attributes: Sequence[str] = (sc.FEATURE,),
) -> InitResult:
    """Create or bring up to date everything of the module docstring in ``client``'s database.

    Idempotent: a second run with the same clauditor, prices and config applies nothing,
    rewrites the rate cards to the same rows and leaves the view alone.
    """
    layout = Layout(client.database, otel_database, cluster=cluster)
    table = table or load_price_table()
    db = layout.database
    engine = layout.engine("ReplacingMergeTree", "clauditor_migrations", "applied_at")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.clauditor_migrations{layout.on_cluster} "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC')) "
        f"ENGINE = {engine} ORDER BY version"
    )
    done = {r[0] for r in client.rows(f"SELECT version FROM {db}.clauditor_migrations FINAL")}
    applied = []
    for migration in MIGRATIONS:
        if migration.number in done:
            continue
        for statement in migration.statements(layout):
            client.command(statement)
        client.insert(
            f"{db}.clauditor_migrations",
            [(migration.number, migration.description, dt.datetime.now(dt.UTC))],
            ["version", "description", "applied_at"],
        )
        applied.append(migration.number)
    for statement in _rate_card_statements(layout):
        client.command(statement)
    cards = _write_rate_cards(client, layout, table)
    client.command(f"CREATE DATABASE IF NOT EXISTS {otel_database}{layout.on_cluster}")
    for statement in exporter_tables(layout):
        client.command(statement)

    query = view_query(layout, table, feature_attributes, _has_scope_columns(client, layout))
    digest = "clauditor " + hashlib.sha256(query.encode()).hexdigest()[:16]
    view = f"{db}.calls_from_otel_traces"
    current = client.rows(
        "SELECT comment FROM system.tables WHERE database = {db:String} AND name = {n:String}",
        {"db": db, "n": "calls_from_otel_traces"},
    )
    if current and current[0][0] == digest:
        return InitResult(tuple(applied), cards, False, 0)
    client.command(f"DROP VIEW IF EXISTS {view}{layout.on_cluster}")
    client.command(
        f"CREATE MATERIALIZED VIEW {view}{layout.on_cluster} TO {db}.calls AS {query} "
        f"COMMENT {lit(digest)}"
    )
    # Backfill: every span already stored (and any that arrived while the view was replaced);
    # a span the view also saw becomes the same row again, which the engine merges.
    spans = client.rows(f"SELECT count() FROM {layout.otel_database}.{layout.traces_table}")[0][0]
    if spans:
        client.command(f"INSERT INTO {db}.calls {query}")
    return InitResult(tuple(applied), cards, True, int(spans))


def reprice(
    client: ClickHouse, table: PriceTable | None = None, *, cluster: str | None = None
) -> int:
    """Price every stored call again at ``table`` (default: the built-in cards), in place.

    Rewrites the rate cards, then inserts every call of ``calls FINAL`` priced anew; the engine
    keeps the newer of two equal-preference rows, so the repriced row replaces the old one.
    Returns the number of calls repriced.
    """
    layout = Layout(client.database, cluster=cluster)
    table = table or load_price_table()
    _write_rate_cards(client, layout, table)
    db = layout.database
    count = int(client.rows(f"SELECT count() FROM {db}.calls FINAL")[0][0])
    if not count:
        return 0
    source = f"SELECT {', '.join((*UNPRICED, CALL_KEY, SOURCE_PREFERENCE))} FROM {db}.calls FINAL"
    query = priced_select(source, table, f"{db}.rate_cards_dict")
    client.command(f"INSERT INTO {db}.calls {query}")
    return count
