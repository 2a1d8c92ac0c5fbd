"""How clauditor prints data: the two consoles, the output formats, and tables whose dollars
and ratios read as such. The CLI's commands and :mod:`clauditor.demo` print through here (it
sits below both, so the demo never imports the CLI)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    import polars as pl

# Piped output keeps whole rows on one line instead of squeezing tables into 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    """How commands that print data print it."""

    table = "table"
    csv = "csv"
    json = "json"


def count(n: int, noun: str) -> str:
    """``1 call``, ``2,000 calls``: a number and its noun in agreement (regular plurals)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def emit(
    frame: pl.DataFrame, fmt: Format, *, title: str | None = None, exact: bool = False
) -> None:
    """Print a frame as a rich table, CSV or a JSON array of objects.

    Tables are for reading: dollars as ``$1,234.56`` / ``-$0.0135`` (see :func:`usd`), ratios
    as percentages, other floats to four decimals. ``exact`` (``clauditor query``) prints the
    numbers as they came: every digit of each float and decimal, no ``$`` or ``%``, because
    the user's SQL chose the precision.
    """
    import polars as pl

    # Whole-number decimals (DuckDB's sum of BIGINT) print as numbers, not strings; other
    # decimals too, except in an exact table, which prints their digits.
    frame = frame.with_columns(
        pl.col(c).cast(pl.Int64 if t.scale == 0 else pl.Float64)  # type: ignore[attr-defined]
        for c, t in frame.schema.items()
        if isinstance(t, pl.Decimal) and not (exact and fmt is Format.table and t.scale)  # type: ignore[attr-defined]
    )
    if fmt is Format.csv:
        nested = [c for c, t in frame.schema.items() if t.is_nested()]
        flat = frame.with_columns(
            pl.col(c).map_elements(
                lambda v: json.dumps(v.to_list() if hasattr(v, "to_list") else v, default=str),
                return_dtype=pl.String,
            )
            for c in nested
        )
        text = flat.write_csv()
        sys.stdout.write(text if text.endswith("\n") else text + "\n")  # a bare header too
        return
    if fmt is Format.json:
        rows = frame.with_columns(
            pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
            for c, t in frame.schema.items()
            if isinstance(t, pl.Datetime)
        ).to_dicts()
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
        return
    from rich.table import Table

    # Text, not markup: values are data (a feature named "[/]" would break rich's markup
    # parser, and "[budget]" in an evidence text would vanish).
    table = Table(
        title=None if title is None else Text(title), title_justify="left", header_style="bold"
    )
    for name, dtype in frame.schema.items():
        table.add_column(Text(name), justify="right" if dtype.is_numeric() else "left")
    cell = _exact_cell if exact else _cell
    for row in frame.iter_rows():
        table.add_row(*(Text(cell(v, n)) for v, n in zip(row, frame.columns, strict=True)))
    out.print(table)


def usd(value: float) -> str:
    """Dollars in a table: ``$1,234.56``; under $1 four decimals (``$0.0135``), and a nonzero
    amount too small for them keeps two significant digits (``$0.0000060``) rather than
    reading as zero. The sign comes first: ``-$0.0135``."""
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 1:
        return f"{sign}${size:,.2f}"
    if size == 0 or size >= 0.00005:  # four decimals show it
        return f"{sign}${size:.4f}"
    decimals = 1 - math.floor(math.log10(size))  # two significant digits
    return f"{sign}${size:.{decimals}f}"


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if column in ("share", "fraction", "change") or column.endswith(
            ("_ratio", "_rate", "_share")
        ):
            return f"{value:.1%}"
        if "usd" in column or column.startswith("cost"):
            return usd(value)
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _exact_cell(value: Any, column: str) -> str:
    """A query's value as it came: floats in their shortest exact decimal, never rounded;
    integers without thousands separators (a year is 2026, not 2,026)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return format(decimal.Decimal(repr(value)), "f")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return _cell(value, column)


__all__ = ["Format", "count", "emit", "err", "out", "usd"]
