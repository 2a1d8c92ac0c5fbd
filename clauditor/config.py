"""Configuration: ``clauditor.toml`` or ``[tool.clauditor]`` in pyproject.toml.

Lookup order for commands that read it: ``--config FILE``, then ``$CLAUDITOR_CONFIG``, then
``./clauditor.toml``, then ``./pyproject.toml`` (its ``[tool.clauditor]`` table). No file at all
means the defaults. Secrets never live here: the Slack webhook URL and the receiver token come
only from environment variables (see :mod:`clauditor.semconv`).

Example::

    timezone = "Europe/Berlin"

    [budget]
    monthly_usd = 5000
    thresholds = [0.8, 1.0, 1.2]          # fractions of the budget: 0.8 is 80 %, at most 5

    [budget.features]
    summarization = 1500

    [prices."claude-sonnet-5-5"]          # override or add a rate card ($/MTok)
    input = 1.8
    output = 9.0
    cache_read = 0.09
    cache_write_5m = 2.25
    cache_write_1h = 3.6
    effective_from = 2026-11-01

    [pricing]
    cache_ttl = "5m"                      # TTL assumed when a source does not split writes
    [pricing.cache_ttl_by_service]
    claude-code = "1h"

    [ingest]
    feature_attributes = ["clauditor.feature", "app.feature"]

    [claude_code]                         # Claude Code's own telemetry (source claude-code)
    feature_attribute = "feature"         # resource (then event) attribute naming the feature
    billing = "api"                       # api | subscription (usage shown, never spend)

    [capture]
    policy = "off"                        # off | errors_only | sample
    sample_rate = 0.05

    [alerts]                              # rules; see clauditor.alerts

    [report]
    url = "https://reports.example.com/clauditor/report.html"   # where the team opens the
                                          # report; `report --notify` links it (default: the path)
    [reconcile]                           # `clauditor reconcile`: clauditor vs Anthropic's bill
    tolerance = 0.005                     # dollars within 0.5 % match
    settle_days = 3                       # refetch a day until this long after it ended
    [reconcile.api_keys]                  # Anthropic API key ids (not keys) -> the service
    apikey_01Rj2N8SVvo6BePZj99NhmiT = "support-bot"
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clauditor.errors import ConfigError
from clauditor.semconv import ENV_CONFIG, FEATURE

if TYPE_CHECKING:
    from clauditor.pricing import PriceTable

__all__ = [
    "BudgetConfig",
    "CaptureConfig",
    "ClaudeCodeConfig",
    "Config",
    "ReconcileConfig",
    "ReportConfig",
    "find_config_file",
    "load_config",
]

_TOP_KEYS = {
    "timezone", "budget", "prices", "price_files", "pricing", "ingest", "capture", "alerts",
    "report",
    "reconcile",
    "claude_code",
}  # fmt: skip
# The largest budget threshold: 5x the budget. Anything above reads as a percentage (80 for 80 %).
MAX_THRESHOLD = 5.0
DEFAULT_PRICE_FILE = "clauditor-prices.toml"  # what `clauditor prices import` writes by default


@dataclass(frozen=True)
class BudgetConfig:
    """Monthly budget in dollars, total and per feature, and the alert thresholds (fractions)."""

    monthly_usd: float | None = None
    thresholds: tuple[float, ...] = (0.8, 1.0, 1.2)
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureConfig:
    """Prompt and response capture policy: ``off`` (default), ``errors_only`` or ``sample``."""

    policy: str = "off"
    sample_rate: float = 0.0


CLAUDE_CODE_BILLING = ("api", "subscription")


@dataclass(frozen=True)
class ClaudeCodeConfig:
    """How Claude Code's own telemetry is read and counted (``[claude_code]``).

    ``feature_attribute``: the attribute that names a Claude Code call's feature, looked up on
    the resource (``OTEL_RESOURCE_ATTRIBUTES``) and then on the event; without it the feature is
    ``claude-code``. ``billing``: ``"api"`` (the default) when Claude Code runs on API keys, so
    its calls are spend; ``"subscription"`` when it runs on a Claude plan, so its calls are shown
    (tokens, list-price equivalent) and never counted as spend or against a budget.
    """

    feature_attribute: str = "feature"
    billing: str = "api"

    @property
    def is_spend(self) -> bool:
        """Whether Claude Code's calls cost money beyond a subscription."""
        return self.billing == "api"


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: ``url``, where the team opens the published HTML report (an http(s) URL);
    the daily digest links it instead of the path the report was written to."""

    url: str | None = None


@dataclass(frozen=True)
class ReconcileConfig:
    """How `clauditor reconcile` compares clauditor with Anthropic's bill.

    ``api_keys`` maps Anthropic API key ids (``apikey_…``, as the usage report names them) to
    the service whose calls use that key, so a key's spend that clauditor did not meter is
    named by its service. ``tolerance`` is the fraction of the billed dollars within which
    metered dollars match; ``settle_days`` how long after a day ends its bill is fetched again.
    """

    api_keys: Mapping[str, str] = field(default_factory=dict)
    tolerance: float = 0.005
    settle_days: int = 3


@dataclass(frozen=True)
class Config:
    """The validated configuration; ``source`` is the file it came from (None: defaults)."""

    source: Path | None = None
    timezone: str = "UTC"
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    price_files: tuple[Path, ...] = ()
    cache_ttl: str = "5m"
    cache_ttl_by_service: Mapping[str, str] = field(default_factory=dict)
    feature_attributes: tuple[str, ...] = (FEATURE,)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    alerts: Mapping[str, Any] = field(default_factory=dict)
    report: ReportConfig = field(default_factory=ReportConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    claude_code: ClaudeCodeConfig = field(default_factory=ClaudeCodeConfig)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def price_table(self) -> PriceTable:
        """The built-in prices, then ``price_files`` (default ``./clauditor-prices.toml`` when it
        exists), then the ``[prices]`` overrides."""
        from clauditor.pricing import load_price_table

        files = self.price_files
        if not files and Path(DEFAULT_PRICE_FILE).is_file():
            files = (Path(DEFAULT_PRICE_FILE),)
        return load_price_table(
            self.prices,
            files,
            cache_ttl=self.cache_ttl,
            cache_ttl_by_service=self.cache_ttl_by_service,
        )


def find_config_file(explicit: str | Path | None = None) -> tuple[Path | None, bool]:
    """The config file to read and whether it is a pyproject.toml. ``(None, False)``: none."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path, path.name == "pyproject.toml"
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"${ENV_CONFIG} names {path}, which does not exist")
        return path, path.name == "pyproject.toml"
    if Path("clauditor.toml").is_file():
        return Path("clauditor.toml"), False
    if Path("pyproject.toml").is_file():
        return Path("pyproject.toml"), True
    return None, False


def load_config(explicit: str | Path | None = None) -> Config:
    """Find, read and validate the configuration (see the module docstring for the order)."""
    path, is_pyproject = find_config_file(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if is_pyproject:
        data = data.get("tool", {}).get("clauditor", {})
    return parse_config(data, source=path)


def parse_config(data: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate an already-parsed config mapping; errors name the file and key."""
    where = str(source) if source else "config"
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")

    tz = data.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: timezone {tz!r} is not a known IANA time zone") from None

    budget = _parse_budget(data.get("budget", {}), where)

    prices = data.get("prices", {})
    if not isinstance(prices, Mapping) or not all(isinstance(v, Mapping) for v in prices.values()):
        raise ConfigError(f'{where}: [prices] must hold tables like [prices."claude-sonnet-4-5"]')
    # Validate now so that a bad override fails at load, naming the key.
    from clauditor.errors import PricingError
    from clauditor.pricing import load_price_table

    pricing = data.get("pricing", {})
    if not isinstance(pricing, Mapping) or set(pricing) - {"cache_ttl", "cache_ttl_by_service"}:
        raise ConfigError(
            f'{where}: [pricing] takes cache_ttl = "5m"|"1h" and [pricing.cache_ttl_by_service]'
        )
    cache_ttl = pricing.get("cache_ttl", "5m")
    by_service = pricing.get("cache_ttl_by_service", {})
    if not isinstance(by_service, Mapping):
        raise ConfigError(f"{where}: [pricing.cache_ttl_by_service] maps a service to 5m or 1h")
    try:
        load_price_table(prices, cache_ttl=cache_ttl, cache_ttl_by_service=by_service)
    except PricingError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    files = data.get("price_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where}: price_files must be a list of paths")
    base = source.parent if source else Path(".")
    price_files = tuple(base / f for f in files)
    for f in price_files:
        if not f.is_file():
            raise ConfigError(f"{where}: price_files names {f}, which does not exist")

    ingest = data.get("ingest", {})
    attrs = ingest.get("feature_attributes", [FEATURE]) if isinstance(ingest, Mapping) else None
    if not isinstance(attrs, list) or not all(isinstance(a, str) and a for a in attrs):
        raise ConfigError(f"{where}: [ingest] feature_attributes must be a list of attribute names")

    capture = _parse_capture(data.get("capture", {}), where)
    claude_code = _parse_claude_code(data.get("claude_code", {}), where)

    alerts = data.get("alerts", {})
    if not isinstance(alerts, Mapping):
        raise ConfigError(f"{where}: [alerts] must be a table")

    return Config(
        source=source,
        timezone=str(tz),
        budget=budget,
        prices=dict(prices),
        price_files=price_files,
        cache_ttl=cache_ttl,
        cache_ttl_by_service=dict(by_service),
        feature_attributes=tuple(attrs),
        capture=capture,
        alerts=dict(alerts),
        report=_parse_report(data.get("report", {}), where),
        reconcile=_parse_reconcile(data.get("reconcile", {}), where),
        claude_code=claude_code,
        raw=dict(data),
    )


def _parse_claude_code(raw: Any, where: str) -> ClaudeCodeConfig:
    if not isinstance(raw, Mapping) or set(raw) - {"feature_attribute", "billing"}:
        raise ConfigError(
            f'{where}: [claude_code] takes feature_attribute = "<attribute>" and '
            f'billing = "api"|"subscription"'
        )
    attribute = raw.get("feature_attribute", "feature")
    if not isinstance(attribute, str) or not attribute:
        raise ConfigError(f"{where}: [claude_code] feature_attribute must be an attribute name")
    billing = raw.get("billing", "api")
    if billing not in CLAUDE_CODE_BILLING:
        raise ConfigError(
            f'{where}: [claude_code] billing must be "api" or "subscription", not {billing!r}'
        )
    return ClaudeCodeConfig(feature_attribute=attribute, billing=billing)


def _number(value: Any, key: str, where: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: {key} must be greater than 0, got {value!r}")
    return float(value)


def _parse_budget(raw: Any, where: str) -> BudgetConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: [budget] must be a table")
    unknown = set(raw) - {"monthly_usd", "thresholds", "features"}
    if unknown:
        raise ConfigError(f"{where}: [budget] has unknown key(s) {sorted(unknown)}")
    monthly = raw.get("monthly_usd")
    monthly_usd = None if monthly is None else _number(monthly, "budget.monthly_usd", where)
    thresholds = raw.get("thresholds", [0.8, 1.0, 1.2])
    if not isinstance(thresholds, list) or not thresholds:
        raise ConfigError(f"{where}: budget.thresholds must be a non-empty list like [0.8, 1.0]")
    values = tuple(_number(t, "budget.thresholds[]", where) for t in thresholds)
    for value in values:
        if value > MAX_THRESHOLD:
            # 80 for 80 % would never be crossed: say how to write it instead of never alerting.
            raise ConfigError(
                f"{where}: budget.thresholds are fractions of the budget: write "
                f"{value / 100:g} for {value:g} %, got {value:g} (at most {MAX_THRESHOLD:g}, "
                f"i.e. {MAX_THRESHOLD:.0%})"
            )
    if list(values) != sorted(set(values)):
        raise ConfigError(f"{where}: budget.thresholds must be increasing, got {list(values)}")
    features = raw.get("features", {})
    if not isinstance(features, Mapping):
        raise ConfigError(f"{where}: [budget.features] must map feature names to dollars")
    per_feature = {str(k): _number(v, f"budget.features.{k}", where) for k, v in features.items()}
    return BudgetConfig(monthly_usd=monthly_usd, thresholds=values, features=per_feature)


def _parse_capture(raw: Any, where: str) -> CaptureConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: [capture] must be a table")
    policy = raw.get("policy", "off")
    if policy not in ("off", "errors_only", "sample"):
        raise ConfigError(
            f"{where}: capture.policy must be 'off', 'errors_only' or 'sample', got {policy!r}"
        )
    rate = raw.get("sample_rate", 0.0)
    rate = _number(rate, "capture.sample_rate", where, positive=False)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{where}: capture.sample_rate must be between 0 and 1, got {rate}")
    return CaptureConfig(policy=str(policy), sample_rate=rate)


def _parse_report(raw: Any, where: str) -> ReportConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: [report] must be a table")
    unknown = set(raw) - {"url"}
    if unknown:
        raise ConfigError(f"{where}: [report] has unknown key(s) {sorted(unknown)}; known: ['url']")
    url = raw.get("url")
    if url is None:
        return ReportConfig()
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # an unclosed IPv6 bracket, say
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        raise ConfigError(
            f"{where}: report.url must be an http(s) URL such as "
            f'"https://reports.example.com/report.html", got {url!r}'
        )
    return ReportConfig(url=url)


def _parse_reconcile(raw: Any, where: str) -> ReconcileConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: [reconcile] must be a table")
    unknown = set(raw) - {"api_keys", "tolerance", "settle_days"}
    if unknown:
        raise ConfigError(
            f"{where}: [reconcile] has unknown key(s) {sorted(unknown)}; "
            "known: ['api_keys', 'settle_days', 'tolerance']"
        )
    keys = raw.get("api_keys", {})
    if not isinstance(keys, Mapping):
        raise ConfigError(
            f'{where}: [reconcile.api_keys] maps key ids to services: apikey_… = "svc"'
        )
    for key_id, service in keys.items():
        if str(key_id).startswith("sk-ant-"):
            # A secret in a config file is a leak waiting to happen: refuse it, never echo it.
            raise ConfigError(
                f"{where}: [reconcile.api_keys] holds an API key itself; use the key's id "
                "(apikey_…, shown in the Console and the usage report) and revoke that key"
            )
        if not isinstance(service, str) or not service.strip():
            raise ConfigError(
                f"{where}: reconcile.api_keys.{key_id} must name a service (a non-empty string), "
                f"got {service!r}"
            )
    tolerance = _number(raw.get("tolerance", 0.005), "reconcile.tolerance", where, positive=False)
    if not 0.0 <= tolerance < 1.0:
        raise ConfigError(
            f"{where}: reconcile.tolerance is a fraction of the bill (0.005 = 0.5 %), "
            f"got {tolerance}"
        )
    settle = raw.get("settle_days", 3)
    if isinstance(settle, bool) or not isinstance(settle, int) or not 0 <= settle <= 31:
        raise ConfigError(
            f"{where}: reconcile.settle_days must be a whole number of days from 0 to 31, "
            f"got {settle!r}"
        )
    return ReconcileConfig(
        api_keys={str(k): str(v).strip() for k, v in keys.items()},
        tolerance=tolerance,
        settle_days=settle,
    )
