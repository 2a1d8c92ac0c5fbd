"""Rate cards: what Anthropic charges per model and period, as data.

A :class:`RateCard` holds one model's prices from one date on (``effective_from``), in US dollars
per million tokens, as five explicit rates — uncached input, output, cache read, 5-minute cache
write, 1-hour cache write — because Anthropic's cache rates are not uniform multipliers of the
input rate (Opus 5.5 reads its cache at 0.05x input, Haiku 3 at $0.03 on $0.25). A card may add:

* prompt-size ``tiers``: above a threshold on input + cache read + cache write tokens, five
  other rates that apply to the WHOLE request, output included (Haiku 5.5 above 100K, Sonnet 4
  and 4.5 above 200K, Opus 4.6 above 200K until 2026-03-13);
* ``fast`` rates for fast mode (``speed = fast``), per model and period;
* ``us_only_multiplier`` for US-only inference (``inference_geo = us``) where it is offered;
* ``regional_multiplier``: the premium of a regional Bedrock/Vertex endpoint over the global one
  on the models that carry it;
* ``source``: where every number came from.

Server-tool fees (web search per 1,000 requests, web fetch, code execution per container-hour)
are model independent and dated on their own (:class:`ServerToolFees`).

The built-in cards are ``prices.toml`` beside this module; users add or override cards in their
config (``[prices."<model>"]``, the same keys) or in extra price files. How the parts combine is
stated once, in :mod:`clauditor.pricing`.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from clauditor.errors import PricingError

__all__ = [
    "CACHE_TTLS",
    "MAX_TIERS",
    "RATE_NAMES",
    "PriceTable",
    "RateCard",
    "Rates",
    "ServerToolFees",
    "Tier",
    "load_price_table",
    "normalize_model_id",
    "parse_price_file",
]

# The five rates of a card, tier or fast-mode block, in $ per million tokens.
RATE_NAMES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
# Prompt-size tiers one card may carry (Anthropic's cards have at most one today).
MAX_TIERS = 2
CACHE_TTLS = ("5m", "1h")

# Spellings of one model id: provider prefixes (Bedrock `anthropic.`, its cross-region profiles
# `us.`/`eu.`/`jp.`/`au.`/`apac.`/`global.`, routers' `anthropic/`, an inference-profile ARN),
# version suffixes (`-v1:0`), `-latest`, the `[1m]` context suffix, and dated snapshots
# (`-20250929`, Vertex `@20250929`).
_ARN_PREFIX = r"^arn:aws:bedrock:[^/]*/"
_PROVIDER_PREFIX = r"^(?:(?:us|eu|jp|au|apac|global)\.)?anthropic[./]"
_CONTEXT_SUFFIX = r"\[1m\]$"
_VERSION_SUFFIX = r"-v\d+(?::\d+)?$"
_LATEST_SUFFIX = r"-latest$"
_DATE_SUFFIX = r"[-@]\d{8}$"
# Applied in this order to the lower-cased, trimmed id. The version suffix comes off twice:
# Bedrock puts it after the date (`-20241022-v2:0`), Vertex before it (`-v2@20241022`).
ID_PATTERNS = (
    _ARN_PREFIX,
    _PROVIDER_PREFIX,
    _CONTEXT_SUFFIX,
    _VERSION_SUFFIX,
    _LATEST_SUFFIX,
    _DATE_SUFFIX,
    _VERSION_SUFFIX,
)


def normalize_model_id(model: str) -> str:
    """The table key of a model id: lower case, without provider prefix, date or suffixes.

    ``claude-sonnet-4-5-20250929``, ``claude-sonnet-4-5-latest``, ``claude-sonnet-4-5[1m]``,
    ``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` (Bedrock) and
    ``claude-sonnet-4-5@20250929`` (Vertex) all give ``claude-sonnet-4-5``.
    """
    key = model.strip().lower()
    for pattern in ID_PATTERNS:
        key = re.sub(pattern, "", key)
    return key


@dataclass(frozen=True)
class Rates:
    """Five rates in $ per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        """The rates in :data:`RATE_NAMES` order."""
        return (self.input, self.output, self.cache_read, self.cache_write_5m, self.cache_write_1h)


@dataclass(frozen=True)
class Tier:
    """Rates for a request whose prompt (input + cache read + cache write) is over ``above``."""

    above: int
    rates: Rates


@dataclass(frozen=True)
class RateCard:
    """One model's prices from ``effective_from`` on (see the module docstring)."""

    id: str
    effective_from: dt.date
    rates: Rates
    source: str
    aliases: tuple[str, ...] = ()
    tiers: tuple[Tier, ...] = ()
    fast: Rates | None = None
    us_only_multiplier: float | None = None
    regional_multiplier: float | None = None
    deprecated_on: dt.date | None = None
    retired_on: dt.date | None = None
    notes: str = ""
    # Why clauditor's card differs from the upstream price data (clauditor.upstream), if it does.
    upstream_note: str = ""
    origin: str = "builtin"

    @property
    def version(self) -> str:
        """The ``price_version`` stamped on the rows this card prices."""
        tag = "" if self.origin == "builtin" else f"+{self.origin}"
        return f"{self.id}@{self.effective_from.isoformat()}{tag}"

    @property
    def input(self) -> float:
        """The base (uncached) input rate."""
        return self.rates.input

    @property
    def output(self) -> float:
        """The base output rate."""
        return self.rates.output


@dataclass(frozen=True)
class ServerToolFees:
    """Per-use fees of Anthropic's server tools from ``effective_from`` on.

    ``web_search_per_1k`` and ``web_fetch_per_1k`` are dollars per 1,000 requests (added to the
    call that made them); code execution is billed per container-hour beyond
    ``code_execution_free_hours_per_month`` per organization, at least 5 minutes a container, so
    it is priced in period totals.
    """

    effective_from: dt.date
    web_search_per_1k: float
    web_fetch_per_1k: float
    code_execution_per_hour: float
    code_execution_free_hours_per_month: float
    source: str


_CARD_KEYS = {
    "id",
    "aliases",
    "effective_from",
    *RATE_NAMES,
    "tiers",
    "fast",
    "us_only_multiplier",
    "regional_multiplier",
    "deprecated_on",
    "retired_on",
    "notes",
    "upstream_note",
    "source",
}
_TOOL_KEYS = {
    "effective_from",
    "web_search_per_1k",
    "web_fetch_per_1k",
    "code_execution_per_hour",
    "code_execution_free_hours_per_month",
    "source",
}


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PricingError(f"{where}: {name} must be a number, not {value!r}")
    if value < 0:
        raise PricingError(f"{where}: {name} must not be negative ({value})")
    return float(value)


def _rates(data: Mapping[str, Any], where: str, inherit: Rates | None = None) -> Rates:
    """Five rates from ``data``; a missing one comes from ``inherit`` or is an error."""
    values = []
    for name in RATE_NAMES:
        if name in data:
            values.append(_number(data[name], name, where))
        elif inherit is not None:
            values.append(getattr(inherit, name))
        else:
            missing = [n for n in RATE_NAMES if n not in data]
            raise PricingError(
                f"{where}: missing rate(s) {', '.join(missing)} — a rate card states all five "
                f"({', '.join(RATE_NAMES)}) in $ per million tokens"
            )
    return Rates(*values)


def _as_date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PricingError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _opt_date(value: Any, where: str) -> dt.date | None:
    return None if value is None else _as_date(value, where)


def _opt_multiplier(data: Mapping[str, Any], name: str, where: str) -> float | None:
    return None if data.get(name) is None else _number(data[name], name, where)


def _tiers(value: Any, where: str) -> tuple[Tier, ...]:
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise PricingError(f"{where}: tiers must be an array of tables ([{{above = ..., ...}}])")
    if len(value) > MAX_TIERS:
        raise PricingError(f"{where}: at most {MAX_TIERS} prompt-size tiers per card")
    tiers = []
    for i, data in enumerate(value):
        here = f"{where} tier #{i + 1}"
        unknown = set(data) - {"above", *RATE_NAMES}
        if unknown:
            raise PricingError(f"{here}: unknown key(s) {sorted(unknown)}")
        above = data.get("above")
        if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
            raise PricingError(f"{here}: `above` must be a positive whole number of tokens")
        tiers.append(Tier(above, _rates(data, here)))
    tiers.sort(key=lambda t: t.above)
    if len({t.above for t in tiers}) != len(tiers):
        raise PricingError(f"{where}: two tiers share one threshold")
    return tuple(tiers)


def _card(data: Mapping[str, Any], *, where: str, origin: str, base: RateCard | None) -> RateCard:
    unknown = set(data) - _CARD_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown key(s) {sorted(unknown)}")
    if "id" not in data or not isinstance(data["id"], str) or not data["id"].strip():
        raise PricingError(f"{where}: missing required key 'id' (the model id)")
    aliases = data.get("aliases", base.aliases if base else ())
    if not isinstance(aliases, list | tuple) or not all(isinstance(a, str) for a in aliases):
        raise PricingError(f"{where}: aliases must be a list of model ids")
    fast = data.get("fast")
    if fast is not None and not isinstance(fast, Mapping):
        raise PricingError(f"{where}: fast must be a table of the five rates")
    card = RateCard(
        id=normalize_model_id(data["id"]),
        effective_from=_as_date(data.get("effective_from", dt.date(1970, 1, 1)), where),
        rates=_rates(data, where, base.rates if base else None),
        source=str(data.get("source", base.source if base else origin)),
        aliases=tuple(normalize_model_id(a) for a in aliases),
        tiers=_tiers(data["tiers"], where) if "tiers" in data else (base.tiers if base else ()),
        fast=(
            _rates(fast, f"{where} fast", base.fast if base else None)
            if fast is not None
            else (base.fast if base else None)
        ),
        us_only_multiplier=(
            _opt_multiplier(data, "us_only_multiplier", where)
            if "us_only_multiplier" in data
            else (base.us_only_multiplier if base else None)
        ),
        regional_multiplier=(
            _opt_multiplier(data, "regional_multiplier", where)
            if "regional_multiplier" in data
            else (base.regional_multiplier if base else None)
        ),
        deprecated_on=_opt_date(data.get("deprecated_on"), where),
        retired_on=_opt_date(data.get("retired_on"), where),
        notes=str(data.get("notes", "")),
        upstream_note=str(data.get("upstream_note", "")),
        origin=origin,
    )
    if base is None:
        return card
    return replace(
        card,
        deprecated_on=card.deprecated_on or base.deprecated_on,
        retired_on=card.retired_on or base.retired_on,
    )


def _tool_fees(data: Mapping[str, Any], where: str) -> ServerToolFees:
    unknown = set(data) - _TOOL_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown key(s) {sorted(unknown)}")
    missing = sorted(_TOOL_KEYS - {"source"} - set(data))
    if missing:
        raise PricingError(f"{where}: missing key(s) {missing}")
    return ServerToolFees(
        effective_from=_as_date(data["effective_from"], where),
        web_search_per_1k=_number(data["web_search_per_1k"], "web_search_per_1k", where),
        web_fetch_per_1k=_number(data["web_fetch_per_1k"], "web_fetch_per_1k", where),
        code_execution_per_hour=_number(
            data["code_execution_per_hour"], "code_execution_per_hour", where
        ),
        code_execution_free_hours_per_month=_number(
            data["code_execution_free_hours_per_month"],
            "code_execution_free_hours_per_month",
            where,
        ),
        source=str(data.get("source", "")),
    )


@dataclass(frozen=True)
class PriceTable:
    """Every rate card and server-tool fee schedule in force, built-in and the user's."""

    cards: tuple[RateCard, ...] = ()
    tool_fees: tuple[ServerToolFees, ...] = field(default_factory=tuple)
    # The TTL assumed for cache writes whose 5m/1h split the source did not report.
    cache_ttl: str = "5m"
    cache_ttl_by_service: Mapping[str, str] = field(default_factory=dict)
    # Models the upstream price data knows and clauditor deliberately does not: id -> why.
    upstream_only: Mapping[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> tuple[RateCard, ...]:
        """The rate cards (an older name, kept for readers of the table)."""
        return self.cards

    def lookup(self, model: str, on: dt.date | None = None) -> RateCard | None:
        """The card that prices ``model`` on date ``on`` (default: today), or None."""
        key = normalize_model_id(model)
        day = on or dt.date.today()
        found = [
            c for c in self.cards if (key == c.id or key in c.aliases) and c.effective_from <= day
        ]
        return max(found, key=lambda c: c.effective_from) if found else None

    def fees_on(self, day: dt.date) -> ServerToolFees | None:
        """The server-tool fees in force on ``day``."""
        found = [f for f in self.tool_fees if f.effective_from <= day]
        return max(found, key=lambda f: f.effective_from) if found else None

    def with_cards(self, extra: Iterable[RateCard]) -> PriceTable:
        """This table plus ``extra``; an extra card replaces one with the same id and date."""
        extra = tuple(extra)
        replaced = {(c.id, c.effective_from) for c in extra}
        kept = tuple(c for c in self.cards if (c.id, c.effective_from) not in replaced)
        return replace(self, cards=kept + extra)

    def newest(self, model: str) -> RateCard | None:
        """The model's newest card, whatever its date."""
        key = normalize_model_id(model)
        known = [c for c in self.cards if c.id == key]
        return max(known, key=lambda c: c.effective_from) if known else None


def parse_price_file(data: Mapping[str, Any], *, where: str, origin: str) -> PriceTable:
    """Rate cards (``[[model]]``) and server-tool fees (``[[server_tools]]``) of a TOML document."""
    models = data.get("model", [])
    if not isinstance(models, list):
        raise PricingError(f"{where}: `model` must be an array of tables ([[model]])")
    tools = data.get("server_tools", [])
    if not isinstance(tools, list):
        raise PricingError(f"{where}: `server_tools` must be an array of tables")
    unknown = set(data) - {"model", "server_tools", "upstream_only"}
    if unknown:
        raise PricingError(f"{where}: unknown top-level key(s) {sorted(unknown)}")
    cards = tuple(
        _card(m, where=f"{where} [[model]] #{i + 1} ({m.get('id', '?')})", origin=origin, base=None)
        for i, m in enumerate(models)
    )
    fees = tuple(_tool_fees(t, f"{where} [[server_tools]] #{i + 1}") for i, t in enumerate(tools))
    upstream_only = data.get("upstream_only", {})
    if not isinstance(upstream_only, Mapping):
        raise PricingError(f"{where}: [upstream_only] maps a model id to the reason")
    return PriceTable(cards, fees, upstream_only={str(k): str(v) for k, v in upstream_only.items()})


def load_price_table(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    extra_files: Iterable[Path] = (),
    *,
    cache_ttl: str = "5m",
    cache_ttl_by_service: Mapping[str, str] | None = None,
) -> PriceTable:
    """The built-in table, then cards from ``extra_files``, then config ``overrides``.

    ``overrides`` maps a model id to a card without ``id`` (as ``[prices."<id>"]`` in
    clauditor.toml gives it). Keys an override leaves out (rates, tiers, fast rates, multipliers,
    aliases) come from the model's newest built-in card, so a negotiated input price keeps the
    model's other rules. Without ``effective_from`` the override replaces every card of the
    model: it prices all calls, whatever their date. A model clauditor does not know needs all
    five rates. ``cache_ttl`` (``5m`` or ``1h``), per service in ``cache_ttl_by_service``, is
    the TTL assumed for cache writes whose split the source did not report.
    """
    by_service = dict(cache_ttl_by_service or {})
    for where, value in (("cache_ttl", cache_ttl), *by_service.items()):
        if value not in CACHE_TTLS:
            raise PricingError(f"[pricing] {where}: {value!r} is not a cache TTL (5m or 1h)")
    text = resources.files("clauditor").joinpath("prices.toml").read_text(encoding="utf-8")
    table = parse_price_file(tomllib.loads(text), where="prices.toml", origin="builtin")
    for path in extra_files:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PricingError(f"{path}: cannot read price file: {exc}") from None
        extra = parse_price_file(data, where=str(path), origin="file")
        table = replace(table.with_cards(extra.cards), tool_fees=table.tool_fees + extra.tool_fees)
    for model, entry in (overrides or {}).items():
        table = _apply_override(table, model, entry)
    return replace(table, cache_ttl=cache_ttl, cache_ttl_by_service=by_service)


def _apply_override(table: PriceTable, model: str, entry: Mapping[str, Any]) -> PriceTable:
    """``table`` with the config override ``[prices."<model>"]`` applied."""
    where = f"[prices.{model!r}]"
    if "id" in entry:
        raise PricingError(f"{where}: the model id is the table's name; remove `id`")
    key = normalize_model_id(model)
    card = _card({"id": model, **entry}, where=where, origin="override", base=table.newest(key))
    if "effective_from" not in entry:
        return replace(table, cards=tuple(c for c in table.cards if c.id != key) + (card,))
    return table.with_cards([card])
