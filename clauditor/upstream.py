"""clauditor's rate cards against a maintained upstream: Pydantic's ``genai-prices``.

Decision (evaluated on genai-prices 0.2.3): clauditor's own table stays the base and the
upstream is the cross-check. The upstream's Anthropic data is well kept for list prices, and
every base rate of the current lineup agrees with clauditor's, but it cannot express what
clauditor must price exactly: US-only inference, Batch API rates before 2026-10-14, fast mode on
Opus 4.6 and 4.7, Sonnet 5.5's cache read before its cut, the long-context tier of Sonnet 4, the
Mythos models. Pricing from it would be wrong in exactly the places a bill is checked, so
:func:`check` lists every disagreement and every model only one side knows, and each one the
pinned upstream shows carries a note in ``prices.toml`` (``upstream_note`` on the card, or an
``[upstream_only]`` entry) saying why clauditor differs.

``clauditor prices update`` upgrades the installed upstream package from the package index
(never at import time, never in an instrumented app), so that ``clauditor prices check`` shows
what a newer release knows: a model it prices that clauditor does not is the sign to add a card
(or an override) before its calls go unpriced.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from clauditor.errors import PricingError
from clauditor.rate_cards import RATE_NAMES, PriceTable, Rates, normalize_model_id

__all__ = ["UPSTREAM", "UpdateResult", "check", "update", "upstream_version"]

UPSTREAM = "genai-prices"
_MTOK = 1_000_000
_TOLERANCE = 1e-9


def _module() -> Any:
    try:
        import genai_prices
    except ImportError:
        raise PricingError(
            f"the upstream price data is not installed: pip install {UPSTREAM} "
            "(or clauditor[upstream])"
        ) from None
    return genai_prices


def upstream_version() -> str | None:
    """The installed genai-prices version, or None when it is not installed."""
    try:
        return str(_module().__version__)
    except PricingError:
        return None


def _usage(rate: str, n: int) -> dict[str, int]:
    """A usage of ``n`` tokens of one kind, in genai-prices' terms (its input is inclusive)."""
    return {
        "input": {"input_tokens": n},
        "output": {"output_tokens": n},
        "cache_read": {"input_tokens": n, "cache_read_tokens": n},
        "cache_write_5m": {"input_tokens": n, "cache_write_tokens": n, "cache_write_5m_tokens": n},
        "cache_write_1h": {"input_tokens": n, "cache_write_tokens": n, "cache_write_1h_tokens": n},
    }[rate]


def _upstream_rates(model: str, day: dt.date, *, fast: bool, prompt: int) -> Rates | None:
    """The upstream's five rates for ``model`` on ``day`` at a prompt of ``prompt`` tokens."""
    gp = _module()
    when = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    context = {"speed": "fast"} if fast else None
    values = []
    for rate in RATE_NAMES:
        usage = _usage(rate, prompt)
        if rate == "output":  # the prompt decides the tier; output rides along
            usage = {"input_tokens": prompt, "output_tokens": _MTOK}
        try:
            priced = gp.calc_price(gp.Usage(**usage), model, provider_id="anthropic",
                                   genai_request_timestamp=when, price_context=context)  # fmt: skip
        except LookupError:
            return None
        total = float(priced.total_price)
        if rate == "output":
            base = float(
                gp.calc_price(gp.Usage(input_tokens=prompt), model, provider_id="anthropic",
                              genai_request_timestamp=when, price_context=context).total_price
            )  # fmt: skip
            values.append((total - base) / _MTOK * 1e6)
        else:
            values.append(total / prompt * 1e6)
    return Rates(*values)


def _probes(table: PriceTable) -> Iterator[tuple[Any, str, Rates, bool, int]]:
    for card in table.cards:
        if card.origin != "builtin":
            continue
        # Below the card's first tier (exactly at a threshold is not above it).
        below = min([_MTOK, *(t.above for t in card.tiers)])
        yield card, "standard", card.rates, False, below
        for tier in card.tiers:
            yield card, f"above {tier.above:,}", tier.rates, False, tier.above + _MTOK
        if card.fast is not None:
            yield card, "fast", card.fast, True, _MTOK


@dataclass(frozen=True)
class _Row:
    model: str
    effective_from: dt.date | None
    part: str
    rate: str
    clauditor: float | None
    upstream: float | None
    note: str


def check(table: PriceTable) -> pl.DataFrame:
    """Every disagreement between ``table``'s built-in cards and the installed upstream.

    One row per model, period, part (standard, a tier, fast) and rate that differ by more than
    1e-9 $/MTok, plus a row per model only one side knows (``rate`` = ``(model)``). ``note`` is
    clauditor's stated reason (empty when there is none: a new disagreement to look at).
    """
    rows: list[_Row] = []
    missing: set[str] = set()
    for card, part, ours, fast, prompt in _probes(table):
        if card.id in missing:
            continue
        theirs = _upstream_rates(card.id, card.effective_from, fast=fast, prompt=prompt)
        if theirs is None:
            missing.add(card.id)
            rows.append(_Row(card.id, None, "", "(model)", None, None,
                             card.upstream_note))  # fmt: skip
            continue
        for name, a, b in zip(RATE_NAMES, ours.as_tuple(), theirs.as_tuple(), strict=True):
            if abs(a - b) > _TOLERANCE:
                rows.append(_Row(card.id, card.effective_from, part, name, a, round(b, 9),
                                 card.upstream_note))  # fmt: skip
    known = {key for card in table.cards for key in (card.id, *card.aliases)}
    gp = _module()
    provider = next(p for p in gp.data.providers if p.id == "anthropic")
    for model in provider.models:
        key = normalize_model_id(model.id)
        if key not in known:
            rows.append(_Row(key, None, "", "(model)", None, None,
                             table.upstream_only.get(key, "")))  # fmt: skip
    schema = {"model": pl.String, "effective_from": pl.Date, "part": pl.String,
              "rate": pl.String, "clauditor": pl.Float64, "upstream": pl.Float64,
              "note": pl.String}  # fmt: skip
    return pl.DataFrame([r.__dict__ for r in rows], schema=schema)


@dataclass(frozen=True)
class UpdateResult:
    """What ``clauditor prices update`` did: versions before and after, and pip's last words."""

    before: str | None
    after: str | None
    ok: bool
    message: str


def update(index_url: str | None = None, timeout_s: float = 120.0) -> UpdateResult:
    """Fetch the newest genai-prices wheel from the package index and install it if newer.

    With ``index_url`` pip ignores its configuration and asks that index alone. The message
    names the file fetched, or pip's reason when nothing could be fetched.
    """
    before = upstream_version()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if index_url:
        pip += ["--isolated"]
    with tempfile.TemporaryDirectory() as folder:
        fetch = [*pip, "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
                 "--retries", "1", "--timeout", "10", "-d", folder, UPSTREAM]  # fmt: skip
        if index_url:
            fetch += ["--index-url", index_url]
        done = _run(fetch, timeout_s)
        wheels = sorted(Path(folder).glob("*.whl"))
        if done is None or done.returncode != 0 or not wheels:
            reason = _last_line(done) if done is not None else "pip did not finish in time"
            return UpdateResult(before, before, False, reason)
        wheel = wheels[0]
        fetched = wheel.name.split("-")[1]
        if fetched == before:
            return UpdateResult(before, before, True, f"fetched {wheel.name}: already installed")
        done = _run([*pip, "install", "--no-deps", "--no-index", str(wheel)], timeout_s)
        if done is None or done.returncode != 0:
            return UpdateResult(before, before, False, f"fetched {wheel.name}, install failed: "
                                + (_last_line(done) if done else "timed out"))  # fmt: skip
    return UpdateResult(before, _installed_version_in_new_process(), True, f"fetched {wheel.name}")


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]


def _installed_version_in_new_process() -> str | None:
    probe = "import importlib.metadata as m; print(m.version('genai-prices'))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None
