"""One client for a ClickHouse server and for embedded chDB: :func:`connect`.

``--db`` URLs:

* ``clickhouse://user@host:8123/db`` — a server over HTTP(S). The password and TLS settings come
  from environment variables only (:data:`PASSWORD_ENV`, :data:`SECURE_ENV`,
  :data:`CA_CERT_ENV`, :data:`VERIFY_ENV`), never from the command line: a URL that carries a
  password is refused, since command lines end up in shell histories and process lists.
* ``chdb:///path/to/dir`` — the embedded ClickHouse engine (chDB) keeping its data in that
  folder; ``chdb://memory`` for a throwaway in-memory one.

Both go through ``clickhouse-connect``'s client: from 1.12 it has a chDB backend
(``get_client(dsn="chdb://...")``), so the tests on chDB run the very client code a server
uses. The database named in the URL (default ``clauditor``) holds ``calls`` and the rate
cards; it is created when absent.

``clickhouse-connect`` is an optional dependency (``pip install 'clauditor[clickhouse]'``, and
``chdb`` for the embedded engine); it is imported when a client is made.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clauditor.errors import ClauditorError

__all__ = [
    "CA_CERT_ENV",
    "DEFAULT_DATABASE",
    "PASSWORD_ENV",
    "SECURE_ENV",
    "VERIFY_ENV",
    "ClickHouse",
    "ClickHouseError",
    "Target",
    "connect",
    "parse_url",
]

PASSWORD_ENV = "CLAUDITOR_CLICKHOUSE_PASSWORD"
SECURE_ENV = "CLAUDITOR_CLICKHOUSE_SECURE"  # "1"/"true": HTTPS
CA_CERT_ENV = "CLAUDITOR_CLICKHOUSE_CA_CERT"  # a CA bundle file for the server's certificate
VERIFY_ENV = "CLAUDITOR_CLICKHOUSE_VERIFY"  # "0"/"false": do not verify the certificate
DEFAULT_DATABASE = "clauditor"
_TRUE = ("1", "true", "yes", "on")


class ClickHouseError(ClauditorError):
    """A ClickHouse URL that cannot be used, a missing client library, or a failed statement."""


def _said(exc: Exception, limit: int = 1500) -> str:
    """What the server said, cut: its messages quote the whole (generated) statement."""
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + " [...]"


@dataclass(frozen=True)
class Target:
    """Where a ``--db`` URL points: a server (``host``/``port``/``user``) or chDB (``path``)."""

    kind: str  # "server" or "chdb"
    database: str
    host: str = ""
    port: int = 8123
    user: str = "default"
    path: str = ""


def parse_url(url: str) -> Target:
    """The :class:`Target` of a ``clickhouse://`` or ``chdb://`` URL (see the module docstring).

    Raises :class:`ClickHouseError` naming the problem for any other scheme, a password in the
    URL, or a database name that is not a plain identifier.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc == "memory":
            path, database = ":memory:", parts.path.strip("/")
        elif parts.netloc:
            raise ClickHouseError(
                f"{url!r}: a chDB URL is chdb:///absolute/path or chdb://memory "
                "(three slashes before a path)"
            )
        else:
            path, database = parts.path, ""
            if not path or path == "/":
                raise ClickHouseError(f"{url!r}: name the chDB folder, e.g. chdb:///var/clauditor")
        return Target("chdb", _identifier(database or DEFAULT_DATABASE, url), path=path)
    if scheme not in ("clickhouse", "clickhouse+http"):
        raise ClickHouseError(
            f"{url!r} is not a ClickHouse URL: use clickhouse://user@host:8123/db for a server "
            "or chdb:///path for embedded chDB"
        )
    if parts.password is not None:
        raise ClickHouseError(
            f"the ClickHouse URL carries a password: remove it and set {PASSWORD_ENV} instead "
            "(a password on the command line ends up in shell history and process lists)"
        )
    if not parts.hostname:
        raise ClickHouseError(f"{url!r}: the URL names no host")
    try:
        port = parts.port or 8123
    except ValueError:
        raise ClickHouseError(f"{url!r}: the port is not a number") from None
    database = parts.path.strip("/") or DEFAULT_DATABASE
    return Target(
        "server",
        _identifier(database, url),
        host=parts.hostname,
        port=port,
        user=urllib.parse.unquote(parts.username or "default"),
    )


def _identifier(name: str, url: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ClickHouseError(
            f"{url!r}: {name!r} is not a plain database name (letters, digits, _)"
        )
    return name


class ClickHouse:
    """A connected client: statements, queries and inserts in the URL's database.

    Wraps one ``clickhouse_connect`` client (HTTP or chDB). ``database`` is where ``calls``
    lives; statements name every other database explicitly.
    """

    def __init__(self, raw: Any, target: Target) -> None:
        self.raw = raw
        self.target = target
        self.database = target.database

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        """Run one statement that returns no rows (DDL, INSERT ... SELECT)."""
        try:
            self.raw.command(sql, settings=dict(settings or {}))
        except Exception as exc:  # the driver's own hierarchy differs by backend
            raise ClickHouseError(f"ClickHouse refused a statement: {_said(exc)}") from exc

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of one query, as tuples."""
        try:
            return list(self.raw.query(sql, parameters=dict(parameters or {})).result_rows)
        except Exception as exc:
            raise ClickHouseError(f"ClickHouse query failed: {_said(exc)}") from exc

    def columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and rows of one query."""
        try:
            result = self.raw.query(sql)
        except Exception as exc:
            raise ClickHouseError(f"ClickHouse query failed: {_said(exc)}") from exc
        return list(result.column_names), list(result.result_rows)

    def insert(
        self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]
    ) -> None:
        """Insert ``rows`` (in ``column_names`` order) into ``table`` (``db.table`` or a name
        in :attr:`database`)."""
        database, _, name = table.rpartition(".")
        try:
            self.raw.insert(
                name,
                [list(r) for r in rows],
                column_names=list(column_names),
                database=database or self.database,
            )
        except Exception as exc:
            raise ClickHouseError(f"ClickHouse insert into {table} failed: {_said(exc)}") from exc

    def close(self) -> None:
        """Release the connection (for chDB, the folder's lock)."""
        self.raw.close()

    def __enter__(self) -> ClickHouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _server_settings(env: Mapping[str, str]) -> dict[str, Any]:
    secure = env.get(SECURE_ENV, "").strip().lower() in _TRUE
    kwargs: dict[str, Any] = {"password": env.get(PASSWORD_ENV, "")}
    if secure:
        kwargs["interface"] = "https"
        kwargs["secure"] = True
        if env.get(CA_CERT_ENV):
            kwargs["ca_cert"] = env[CA_CERT_ENV]
        if env.get(VERIFY_ENV, "").strip().lower() in ("0", "false", "no", "off"):
            kwargs["verify"] = False
    return kwargs


def connect(url: str, env: Mapping[str, str] | None = None) -> ClickHouse:
    """A :class:`ClickHouse` client for ``url``; the URL's database is created when absent.

    ``env`` (default: the process environment) supplies the server password and TLS settings.
    Raises :class:`ClickHouseError` for a bad URL, a missing library or an unreachable server.
    """
    target = parse_url(url)
    try:
        import clickhouse_connect
    except ImportError:
        raise ClickHouseError(
            "ClickHouse support needs clickhouse-connect: pip install 'clauditor[clickhouse]'"
        ) from None
    try:
        if target.kind == "chdb":
            where = "memory" if target.path == ":memory:" else target.path
            raw = clickhouse_connect.get_client(dsn=f"chdb://{where}")
        else:
            raw = clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.user,
                **_server_settings(os.environ if env is None else env),
            )
    except ImportError as exc:
        raise ClickHouseError(f"{exc} (embedded chDB: pip install chdb)") from None
    except Exception as exc:
        raise ClickHouseError(f"cannot connect to ClickHouse at {url}: {exc}") from exc
    client = ClickHouse(raw, target)
    client.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
    return client
