"""Price Claude API calls: one vectorized Polars function over a frame of calls (DESIGN §4).

The table is data (``prices.toml`` beside this module, plus the user's overrides). Each call is
priced by the newest entry of its model whose ``effective_from`` is on or before the call's start
date, so a price change never rewrites history. Rules, per million tokens, base = input price:

* cache read 0.1 x base; 5-minute cache write 1.25 x base; 1-hour write 2 x base; writes whose
  5m/1h split is unknown are priced as 5-minute writes;
* Batch API (``service_tier = 'batch'`` or ``operation = 'batch'``): every token price x 0.5,
  with the cache multipliers stacked on top;
* long context: on models with a long-context tier, when input + cache read + cache write exceed
  the threshold, the WHOLE request is billed at the multiplied input/output rates (cache prices
  follow the input rate);
* US-only inference (``inference_geo = 'us'``) and fast mode (``speed = 'fast'``) multiply every
  price on the models that offer them;
* ``count_tokens`` calls are free.

A call whose model is not in the table gets NULL costs (never a silent 0); :func:`unpriced_calls`
counts them so that every report can show them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from json import dumps as json_dumps
from json import loads as json_loads
from pathlib import Path
from typing import Any

import polars as pl

from clauditor.errors import PricingError

__all__ = [
    "CACHE_READ_MULTIPLIER",
    "CACHE_WRITE_1H_MULTIPLIER",
    "CACHE_WRITE_5M_MULTIPLIER",
    "BATCH_DISCOUNT",
    "PriceEntry",
    "PriceTable",
    "load_price_table",
    "model_key_expr",
    "model_key_sql",
    "import_litellm",
    "normalize_model_id",
    "price_calls",
    "price_table_frame",
    "unpriced_calls",
]

CACHE_READ_MULTIPLIER = 0.1
CACHE_WRITE_5M_MULTIPLIER = 1.25
CACHE_WRITE_1H_MULTIPLIER = 2.0
BATCH_DISCOUNT = 0.5
PER_TOKEN = 1e-6  # table prices are per million tokens

_DATE_SUFFIX = r"[-@]\d{8}$"
_PROVIDER_PREFIX = r"^(?:(?:us|eu|apac|global)\.)?anthropic[./]"
_VERSION_SUFFIX = r"-v\d+(?::\d+)?$"

_ENTRY_KEYS = {
    "id",
    "aliases",
    "effective_from",
    "input",
    "output",
    "long_context_threshold",
    "long_context_input_multiplier",
    "long_context_output_multiplier",
    "us_only_multiplier",
    "fast_multiplier",
    "deprecated_on",
    "retired_on",
    "source",
}


def normalize_model_id(model: str) -> str:
    """The table key of a model id: lower case, without date, provider prefix or version suffix.

    ``claude-sonnet-4-5-20250929``, ``claude-sonnet-4-5``,
    ``anthropic.claude-sonnet-4-5-20250929-v1:0`` (Bedrock) and ``claude-sonnet-4-5@20250929``
    (Vertex) all give ``claude-sonnet-4-5``.
    """
    key = model.strip().lower()
    key = re.sub(_PROVIDER_PREFIX, "", key)
    key = re.sub(_VERSION_SUFFIX, "", key)
    key = re.sub(r"-latest$", "", key)
    return re.sub(_DATE_SUFFIX, "", key)


def model_key_expr(column: str | pl.Expr) -> pl.Expr:
    """The vectorized :func:`normalize_model_id` of a string column."""
    expr = pl.col(column) if isinstance(column, str) else column
    return (
        expr.str.strip_chars()
        .str.to_lowercase()
        .str.replace(_PROVIDER_PREFIX, "")
        .str.replace(_VERSION_SUFFIX, "")
        .str.replace(r"-latest$", "")
        .str.replace(_DATE_SUFFIX, "")
    )


def model_key_sql(expression: str) -> str:
    """The DuckDB SQL of :func:`normalize_model_id` applied to the SQL ``expression``.

    For aggregates computed inside DuckDB, so that a dated snapshot and its undated id group as
    one model there too. The regular expressions are the same ones (RE2 accepts them).
    """
    key = f"lower(trim({expression}))"
    for pattern in (_PROVIDER_PREFIX, _VERSION_SUFFIX, r"-latest$", _DATE_SUFFIX):
        key = f"regexp_replace({key}, '{pattern}', '')"
    return key


@dataclass(frozen=True)
class PriceEntry:
    """One model's prices from one date on, in dollars per million tokens."""

    id: str
    effective_from: dt.date
    input: float
    output: float
    source: str
    aliases: tuple[str, ...] = ()
    long_context_threshold: int | None = None
    long_context_input_multiplier: float = 1.0
    long_context_output_multiplier: float = 1.0
    us_only_multiplier: float | None = None
    fast_multiplier: float | None = None
    deprecated_on: dt.date | None = None
    retired_on: dt.date | None = None
    origin: str = "builtin"

    @property
    def version(self) -> str:
        """The ``price_version`` stamped on the rows this entry prices."""
        tag = "" if self.origin == "builtin" else f"+{self.origin}"
        return f"{self.id}@{self.effective_from.isoformat()}{tag}"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str, origin: str) -> PriceEntry:
        """Validate one table entry; ``where`` names it in error messages."""
        unknown = set(data) - _ENTRY_KEYS
        if unknown:
            raise PricingError(f"{where}: unknown key(s) {sorted(unknown)}")
        try:
            model_id = str(data["id"])
            input_price = float(data["input"])
            output_price = float(data["output"])
        except KeyError as exc:
            raise PricingError(f"{where}: missing required key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise PricingError(f"{where}: input and output must be numbers ({exc})") from None
        if input_price < 0 or output_price < 0:
            raise PricingError(f"{where}: prices must not be negative")
        try:
            return cls._build(data, model_id, input_price, output_price, where, origin)
        except (TypeError, ValueError) as exc:
            raise PricingError(
                f"{where}: a multiplier or threshold is not a number ({exc})"
            ) from None

    @classmethod
    def _build(
        cls,
        data: Mapping[str, Any],
        model_id: str,
        input_price: float,
        output_price: float,
        where: str,
        origin: str,
    ) -> PriceEntry:
        return cls(
            id=normalize_model_id(model_id),
            effective_from=_as_date(data.get("effective_from", dt.date(1970, 1, 1)), where),
            input=input_price,
            output=output_price,
            source=str(data.get("source", origin)),
            aliases=_aliases(data.get("aliases", ()), where),
            long_context_threshold=(
                int(data["long_context_threshold"]) if "long_context_threshold" in data else None
            ),
            long_context_input_multiplier=float(data.get("long_context_input_multiplier", 1.0)),
            long_context_output_multiplier=float(data.get("long_context_output_multiplier", 1.0)),
            us_only_multiplier=_opt_float(data.get("us_only_multiplier")),
            fast_multiplier=_opt_float(data.get("fast_multiplier")),
            deprecated_on=_opt_date(data.get("deprecated_on"), where),
            retired_on=_opt_date(data.get("retired_on"), where),
            origin=origin,
        )


@dataclass(frozen=True)
class PriceTable:
    """All price entries; :meth:`frame` is what :func:`price_calls` joins against."""

    entries: tuple[PriceEntry, ...] = field(default_factory=tuple)

    def frame(self) -> pl.DataFrame:
        """One row per (model key, entry): aliases repeat their entry under their own key."""
        rows = []
        for e in self.entries:
            for key in (e.id, *e.aliases):
                rows.append(
                    {
                        "model_key": key,
                        "effective_from": e.effective_from,
                        "p_input": e.input * PER_TOKEN,
                        "p_output": e.output * PER_TOKEN,
                        "lc_threshold": e.long_context_threshold,
                        "lc_input": e.long_context_input_multiplier,
                        "lc_output": e.long_context_output_multiplier,
                        "geo_mult": e.us_only_multiplier,
                        "fast_mult": e.fast_multiplier,
                        "price_version": e.version,
                    }
                )
        schema = {
            "model_key": pl.String,
            "effective_from": pl.Date,
            "p_input": pl.Float64,
            "p_output": pl.Float64,
            "lc_threshold": pl.Int64,
            "lc_input": pl.Float64,
            "lc_output": pl.Float64,
            "geo_mult": pl.Float64,
            "fast_mult": pl.Float64,
            "price_version": pl.String,
        }
        return pl.DataFrame(rows, schema=schema).sort("effective_from")

    def lookup(self, model: str, on: dt.date | None = None) -> PriceEntry | None:
        """The entry that prices ``model`` on date ``on`` (default: today), or None."""
        key = normalize_model_id(model)
        day = on or dt.date.today()
        found = [
            e for e in self.entries if (key == e.id or key in e.aliases) and e.effective_from <= day
        ]
        return max(found, key=lambda e: e.effective_from) if found else None

    def with_entries(self, extra: Iterable[PriceEntry]) -> PriceTable:
        """This table plus ``extra``; an extra entry replaces one with the same id and date."""
        extra = tuple(extra)
        replaced = {(e.id, e.effective_from) for e in extra}
        kept = tuple(e for e in self.entries if (e.id, e.effective_from) not in replaced)
        return PriceTable(kept + extra)


def _as_date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PricingError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _aliases(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise PricingError(f"{where}: aliases must be a list of model ids")
    return tuple(normalize_model_id(a) for a in value)


def _opt_date(value: Any, where: str) -> dt.date | None:
    return None if value is None else _as_date(value, where)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_price_entries(data: Mapping[str, Any], *, where: str, origin: str) -> list[PriceEntry]:
    """Entries from a parsed TOML document with a ``[[model]]`` array."""
    models = data.get("model", [])
    if not isinstance(models, list):
        raise PricingError(f"{where}: `model` must be an array of tables ([[model]])")
    return [
        PriceEntry.from_mapping(m, where=f"{where} [[model]] #{i + 1}", origin=origin)
        for i, m in enumerate(models)
    ]


def load_price_table(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    extra_files: Iterable[Path] = (),
) -> PriceTable:
    """The built-in table, then entries from ``extra_files``, then config ``overrides``.

    ``overrides`` maps a model id to an entry without ``id`` (as ``[prices."<id>"]`` in
    clauditor.toml gives it).
    """
    text = resources.files("clauditor").joinpath("prices.toml").read_text(encoding="utf-8")
    table = PriceTable(
        tuple(parse_price_entries(tomllib.loads(text), where="prices.toml", origin="builtin"))
    )
    for path in extra_files:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PricingError(f"{path}: cannot read price file: {exc}") from None
        table = table.with_entries(parse_price_entries(data, where=str(path), origin="imported"))
    for model, entry in (overrides or {}).items():
        table = _apply_override(table, model, entry)
    return table


_INHERITED = (
    "aliases",
    "long_context_threshold",
    "long_context_input_multiplier",
    "long_context_output_multiplier",
    "us_only_multiplier",
    "fast_multiplier",
    "deprecated_on",
    "retired_on",
)


def _apply_override(table: PriceTable, model: str, entry: Mapping[str, Any]) -> PriceTable:
    """``table`` with the config override ``[prices."<model>"]`` applied.

    Keys the override leaves out (long-context tier, US-only and fast multipliers, aliases,
    dates) come from the model's newest built-in entry, so overriding the base prices keeps the
    model's pricing rules. Without ``effective_from`` the override replaces every entry of the
    model: it prices all calls, whatever their date.
    """
    key = normalize_model_id(model)
    known = [e for e in table.entries if e.id == key]
    base = max(known, key=lambda e: e.effective_from) if known else None
    merged: dict[str, Any] = {"id": model}
    if base is not None:
        for name in _INHERITED:
            value = getattr(base, name)
            if value is not None and value != ():
                merged[name] = list(value) if name == "aliases" else value
        if base.long_context_threshold is None:
            merged.pop("long_context_input_multiplier", None)
            merged.pop("long_context_output_multiplier", None)
    merged.update(entry)
    override = PriceEntry.from_mapping(merged, where=f"[prices.{model!r}]", origin="override")
    if "effective_from" not in entry:
        return PriceTable(tuple(e for e in table.entries if e.id != key) + (override,))
    return table.with_entries([override])


def price_calls(calls: pl.DataFrame, table: PriceTable | None = None) -> pl.DataFrame:
    """``calls`` with the five cost columns and ``price_version`` computed from ``table``.

    ``calls`` needs the token columns, ``start_time``, ``request_model``/``response_model`` and,
    when present, ``service_tier``, ``operation``, ``inference_geo``, ``speed``, the 5m/1h split.
    Row order and every other column are kept. Rows of unknown models get NULL costs.
    """
    table = table or load_price_table()
    if calls.height == 0:
        return calls.with_columns(
            *[pl.lit(None, dtype=pl.Float64).alias(c) for c in _COSTS],
            pl.lit(None, dtype=pl.String).alias("price_version"),
        )

    def col(name: str, dtype: Any) -> pl.Expr:
        if name in calls.columns:
            return pl.col(name).cast(dtype, strict=False)
        return pl.lit(None, dtype=dtype)

    def tokens(name: str) -> pl.Expr:
        return col(name, pl.Int64).fill_null(0).clip(lower_bound=0).cast(pl.Float64)

    def named(name: str) -> pl.Expr:  # an empty model string counts as no model
        value = col(name, pl.String)
        return pl.when(value.str.strip_chars() == "").then(None).otherwise(value)

    model = pl.coalesce(named("response_model"), named("request_model"))
    out_columns = list(calls.columns) + [
        c for c in (*_COSTS, "price_version") if c not in calls.columns
    ]
    keyed = calls.drop([c for c in (*_COSTS, "price_version") if c in calls.columns])
    keyed = keyed.with_row_index("__row").with_columns(
        model_key_expr(model).alias("__model_key"),
        col("start_time", pl.Datetime("us", "UTC")).dt.date().alias("__day"),
    )
    # join_asof wants both sides sorted by date; rows without a date or model cannot be priced.
    prices = table.frame().rename({"model_key": "__model_key", "effective_from": "__effective"})
    joined = (
        keyed.sort("__day", nulls_last=True)
        .join_asof(
            prices.sort("__effective"),
            left_on="__day",
            right_on="__effective",
            by="__model_key",
            strategy="backward",
            check_sortedness=False,
        )
        .sort("__row")
    )

    cache_write = tokens("cache_creation_input_tokens")
    write_1h = tokens("cache_creation_1h_input_tokens")
    # Unknown split: everything not known to be 1h is priced as a 5-minute write.
    write_5m = (cache_write - write_1h).clip(lower_bound=0)
    total_input = tokens("input_tokens") + tokens("cache_read_input_tokens") + cache_write
    long_context = pl.col("lc_threshold").is_not_null() & (total_input > pl.col("lc_threshold"))
    batch = (col("service_tier", pl.String).str.to_lowercase() == "batch").fill_null(False) | (
        col("operation", pl.String) == "batch"
    ).fill_null(False)
    us_only = col("inference_geo", pl.String).str.to_lowercase().is_in(["us", "us-only", "us_only"])
    fast = col("speed", pl.String).str.to_lowercase() == "fast"
    common = (
        pl.when(batch).then(BATCH_DISCOUNT).otherwise(1.0)
        * pl.when(us_only.fill_null(False)).then(pl.col("geo_mult").fill_null(1.0)).otherwise(1.0)
        * pl.when(fast.fill_null(False)).then(pl.col("fast_mult").fill_null(1.0)).otherwise(1.0)
    )
    free = (col("operation", pl.String) == "count_tokens").fill_null(False)
    unit_in = (
        pl.col("p_input") * pl.when(long_context).then(pl.col("lc_input")).otherwise(1.0) * common
    )
    unit_out = (
        pl.col("p_output") * pl.when(long_context).then(pl.col("lc_output")).otherwise(1.0) * common
    )
    zero_if_free = pl.when(free).then(0.0)
    priced = joined.with_columns(
        zero_if_free.otherwise(tokens("input_tokens") * unit_in).alias("cost_input_usd"),
        zero_if_free.otherwise(tokens("output_tokens") * unit_out).alias("cost_output_usd"),
        zero_if_free.otherwise(
            tokens("cache_read_input_tokens") * unit_in * CACHE_READ_MULTIPLIER
        ).alias("cost_cache_read_usd"),
        zero_if_free.otherwise(
            (write_5m * CACHE_WRITE_5M_MULTIPLIER + write_1h * CACHE_WRITE_1H_MULTIPLIER) * unit_in
        ).alias("cost_cache_write_usd"),
    ).with_columns(
        (
            pl.col("cost_input_usd")
            + pl.col("cost_output_usd")
            + pl.col("cost_cache_read_usd")
            + pl.col("cost_cache_write_usd")
        ).alias("cost_usd")
    )
    # Unpriced rows: p_input is NULL there, so every cost above is NULL already.
    return priced.select(out_columns)


_COSTS = (
    "cost_usd",
    "cost_input_usd",
    "cost_output_usd",
    "cost_cache_read_usd",
    "cost_cache_write_usd",
)


def unpriced_calls(calls: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Calls with no price, per model: ``model``, ``calls``. Empty when everything is priced."""
    lf = calls.lazy()
    return (
        lf.filter(pl.col("cost_usd").is_null())
        .with_columns(
            pl.coalesce("response_model", "request_model").fill_null("(no model)").alias("model")
        )
        .group_by("model")
        .agg(pl.len().alias("calls"))
        .sort(["calls", "model"], descending=[True, False])
        .collect()
    )


def price_table_frame(table: PriceTable) -> pl.DataFrame:
    """The table for people: one row per entry, prices in $/MTok, newest model first."""
    rows = [
        {
            "model": e.id,
            "aliases": ", ".join(e.aliases),
            "effective_from": e.effective_from,
            "input": e.input,
            "output": e.output,
            "cache_read": round(e.input * CACHE_READ_MULTIPLIER, 6),
            "cache_write_5m": round(e.input * CACHE_WRITE_5M_MULTIPLIER, 6),
            "cache_write_1h": round(e.input * CACHE_WRITE_1H_MULTIPLIER, 6),
            "long_context": (
                f">{e.long_context_threshold:,}: x{e.long_context_input_multiplier:g} in, "
                f"x{e.long_context_output_multiplier:g} out"
                if e.long_context_threshold
                else ""
            ),
            "us_only": f"x{e.us_only_multiplier:g}" if e.us_only_multiplier else "",
            "fast": f"x{e.fast_multiplier:g}" if e.fast_multiplier else "",
            "deprecated_on": e.deprecated_on,
            "source": e.source,
        }
        for e in table.entries
    ]
    return pl.DataFrame(rows).sort(["model", "effective_from"])


_LITELLM_LONG_INPUT = "input_cost_per_token_above_200k_tokens"
_LITELLM_LONG_OUTPUT = "output_cost_per_token_above_200k_tokens"


def import_litellm(source: str | Path, target: str | Path, *, today: dt.date | None = None) -> int:
    """Write the Anthropic chat models of LiteLLM's price list as a clauditor price file.

    A model the built-in table lacks gets ``effective_from = 1970-01-01`` so that its past calls
    are priced too; a model whose price differs from the built-in entry gets today's date, so the
    change applies from now on and history keeps its price; an unchanged model is skipped.
    Returns the number of entries written.
    """
    today = today or dt.date.today()
    try:
        data = json_loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PricingError(f"{source}: cannot read LiteLLM price list: {exc}") from None
    if not isinstance(data, dict):
        raise PricingError(f"{source}: expected a JSON object of models")
    builtin = load_price_table()
    entries: dict[str, dict[str, Any]] = {}
    for name, info in sorted(data.items()):
        if not isinstance(info, dict) or info.get("litellm_provider") != "anthropic":
            continue
        if info.get("mode", "chat") != "chat" or "claude" not in name:
            continue
        try:
            price_in = float(info["input_cost_per_token"]) * 1e6
            price_out = float(info["output_cost_per_token"]) * 1e6
        except (KeyError, TypeError, ValueError):
            continue
        key = normalize_model_id(name)
        if key in entries:
            continue
        current = builtin.lookup(key, today)
        if current and (current.input, current.output) == (round(price_in, 6), round(price_out, 6)):
            continue
        entry: dict[str, Any] = {
            "id": key,
            "effective_from": today if current else dt.date(1970, 1, 1),
            "input": round(price_in, 6),
            "output": round(price_out, 6),
            "source": f"LiteLLM model_prices_and_context_window.json, imported {today}",
        }
        if info.get(_LITELLM_LONG_INPUT) and price_in:
            entry["long_context_threshold"] = 200_000
            entry["long_context_input_multiplier"] = round(
                float(info[_LITELLM_LONG_INPUT]) * 1e6 / price_in, 4
            )
            long_out = info.get(_LITELLM_LONG_OUTPUT)
            if long_out and price_out:
                entry["long_context_output_multiplier"] = round(
                    float(long_out) * 1e6 / price_out, 4
                )
        if isinstance(info.get("deprecation_date"), str):
            with contextlib.suppress(ValueError):
                entry["deprecated_on"] = dt.date.fromisoformat(info["deprecation_date"])
        entries[key] = entry
    lines = [
        f"# Imported from {Path(source).name} on {today}; read by clauditor on top of its table.\n"
    ]
    for entry in entries.values():
        lines.append("\n[[model]]\n")
        for k, v in entry.items():
            lines.append(f"{k} = {_toml_value(v)}\n")
    Path(target).write_text("".join(lines), encoding="utf-8")
    return len(entries)


def _toml_value(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return json_dumps(value)  # a JSON string literal is a valid TOML basic string
    return repr(value)
