"""What every ``clauditor`` command shares: the app, the options defined once, errors at the
boundary, and printing (:mod:`clauditor.cli` has the commands; :mod:`clauditor._cli_jobs`
the analytics jobs')."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import inspect
import json
import math
import sys
import zoneinfo
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from clauditor.errors import ClauditorError, ConfigError

if TYPE_CHECKING:
    import polars as pl

    from clauditor.config import Config


def _unwrapped(help_text: str | None) -> str | None:
    """A docstring's paragraphs as one line each, so the terminal wraps them (lists and
    ``\\b`` blocks keep their lines)."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(
        p
        if p.startswith("\b") or any(ln.lstrip().startswith(("- ", "* ")) for ln in p.splitlines())
        else " ".join(ln.strip() for ln in p.splitlines())
        for p in paragraphs
    )


class _HelpReadsWell:
    """Help as a terminal should show it.

    Typer's rich help keeps a docstring's own line breaks after its first paragraph, so a
    terminal narrower than the source wraps each line again and breaks sentences mid-way
    ("the messages are" / "printed."): paragraphs are joined into single lines. And it prints
    every option's type, flags included (``--help <bool>``), as if a flag took a value; an
    empty metavar makes it print nothing there instead."""

    help: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _unwrapped(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_HelpReadsWell, TyperCommand):
    pass


class _Group(_HelpReadsWell, TyperGroup):
    pass


class CliApp(typer.Typer):
    """A ``typer.Typer`` whose commands and groups print help as :class:`_HelpReadsWell` says."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """:meth:`typer.Typer.command`, with the flag-aware command class."""
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = CliApp(
    name="clauditor",
    help="See, explain and control what your Claude API usage costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prices_app = CliApp(help="Show the price table, or import a newer one.", no_args_is_help=False)
app.add_typer(prices_app, name="prices")

# Piped output keeps whole rows on one line instead of squeezing tables into 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    """How commands that print data print it."""

    table = "table"
    csv = "csv"
    json = "json"


# --- shared options (defined once) ------------------------------------------------------------

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB file. Default: $CLAUDITOR_DB, else ./clauditor.duckdb.",
        show_default=False,
    ),
]
# The job commands' --db: also a ClickHouse URL (kept a string: a Path would fold "//").
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="DuckDB file, Parquet folder, clickhouse://user@host:8123/db (password and TLS "
        "from CLAUDITOR_CLICKHOUSE_* variables) or chdb:///path. Default: $CLAUDITOR_DB, else "
        "./clauditor.duckdb.",
        show_default=False,
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file. Default: $CLAUDITOR_CONFIG, ./clauditor.toml, ./pyproject.toml.",
        show_default=False,
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Evaluate as of this moment (ISO 8601; without an offset it is in the config's "
        "time zone). Default: now.",
        show_default=False,
    ),
]
PeriodOpt = Annotated[
    str,
    typer.Option(
        "--period",
        "-p",
        help="today, yesterday, 7d, 30d, Nd, mtd, YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])

JOBS_PANEL = "Analytics jobs"  # where --help lists the commands of clauditor._cli_jobs


def handles_errors(func: F) -> F:
    """Turn library errors into ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ClauditorError, ValueError) as exc:  # ValueError: bad option values
            _print_error(exc)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _print_error(exc: Exception) -> None:
    """One line on stderr; the message is text, never markup (it may quote user input)."""

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    err.print(Text("error: ", style="bold red") + Text(first), highlight=False)


def count(n: int, noun: str) -> str:
    """``1 call``, ``2,000 calls``: a number and its noun in agreement (regular plurals)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def split_keys(by: str) -> list[str]:
    """``--by feature, model`` as ``["feature", "model"]``."""
    return [k.strip() for k in by.split(",") if k.strip()]


def resolve_db(db: Path | None) -> Path:
    """The database path: ``--db``, else $CLAUDITOR_DB, else ./clauditor.duckdb.

    Every command gets its database here, so this is where the span files apps wrote beside
    it are ingested first (once per command; see :mod:`clauditor.ingest.span_folder`).
    """
    from clauditor.store import default_db_path

    path = db or default_db_path()
    _caught_up(path)
    return path


@functools.cache
def _caught_up(path: Path) -> None:
    """Hand the span files of ``path`` to the writer; a failure is a warning, not an error:
    the command then reads what the database already has, and the files wait for the next."""
    from clauditor.span_files import span_folder

    if not span_folder(path).is_dir():
        return
    from clauditor.ingest.span_folder import catch_up

    try:
        catch_up(path)
    except (ClauditorError, OSError) as exc:
        err.print(
            Text("warning: ", style="bold yellow")
            + Text(f"span files not ingested yet ({exc}); showing what {path} already holds"),
            highlight=False,
        )


def resolve_source(db: str | None) -> Path | str:
    """The job commands' source: a ClickHouse URL as given, else :func:`resolve_db`'s path."""
    from clauditor.analytics.engine import is_clickhouse

    if db is not None and is_clickhouse(db):
        return db
    return resolve_db(Path(db) if db is not None else None)


def resolve_config(path: Path | None) -> Config:
    """The config: ``--config``, else the lookup order of :mod:`clauditor.config`."""
    from clauditor.config import load_config

    return load_config(path)


def parse_as_of(value: str | None, tz: str = "UTC", *, option: str = "--as-of") -> dt.datetime:
    """``--as-of`` as an aware UTC datetime; naive values are read in ``tz``; None is now."""
    if value is None or value.strip().lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not an ISO 8601 moment (e.g. 2026-10-24T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return moment.astimezone(dt.UTC)


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
