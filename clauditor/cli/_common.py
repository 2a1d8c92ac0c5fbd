"""What every ``clauditor`` command shares: the app class whose help reads well, the options
defined once, errors at the boundary, and how a command finds its database and config
(printing is :mod:`clauditor.output`'s)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from clauditor.errors import ClauditorError, ConfigError
from clauditor.output import Format, err

if TYPE_CHECKING:
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

_F = TypeVar("_F", bound=Callable[..., Any])

JOBS_PANEL = "Analytics jobs"  # where --help lists the commands of clauditor.cli.jobs


def handles_errors(func: _F) -> _F:
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


def resolve_span(config: Path | None, period: str, as_of: str | None) -> tuple[Config, Any]:
    """The config and ``--period`` resolved as of ``--as-of``, both in the config's time zone."""
    from clauditor.analytics import resolve_period

    cfg = resolve_config(config)
    return cfg, resolve_period(period, as_of=parse_as_of(as_of, cfg.timezone), tz=cfg.timezone)


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


__all__ = [
    "JOBS_PANEL",
    "AsOfOpt",
    "CliApp",
    "ConfigOpt",
    "DbOpt",
    "FormatOpt",
    "PeriodOpt",
    "handles_errors",
    "parse_as_of",
    "resolve_config",
    "resolve_db",
    "resolve_span",
    "split_keys",
]
