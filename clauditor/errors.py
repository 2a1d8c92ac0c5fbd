"""clauditor's exceptions. Library code raises these; the CLI turns them into clean messages.

::

    ClauditorError
    ├── ConfigError          the config file is missing, unreadable or invalid
    ├── PricingError         the price table or an imported price list is invalid
    ├── StoreError           the DuckDB file cannot be used
    │   ├── DatabaseBusyError    another process holds the file past the retry budget
    │   └── ReadOnlyQueryError   a write statement was given to a read-only query
    ├── IngestError          an input file cannot be read at all
    └── DeliveryError        an alert could not be delivered
"""

from __future__ import annotations

__all__ = [
    "ClauditorError",
    "ConfigError",
    "DatabaseBusyError",
    "DeliveryError",
    "IngestError",
    "PricingError",
    "ReadOnlyQueryError",
    "StoreError",
]


class ClauditorError(Exception):
    """Base class of every error clauditor raises on purpose."""


class ConfigError(ClauditorError):
    """The configuration is invalid; the message names the file, the key and the problem."""


class PricingError(ClauditorError):
    """The price table, an override or an imported price list is invalid."""


class StoreError(ClauditorError):
    """The DuckDB file cannot be opened, migrated or written."""


class DatabaseBusyError(StoreError):
    """Another process held the database file for longer than the retry budget.

    ``holder`` is what DuckDB said about the process holding the lock (program and PID) when it
    said anything.
    """

    def __init__(self, path: str, holder: str | None, waited_s: float) -> None:
        self.path = path
        self.holder = holder
        self.waited_s = waited_s
        who = f" by {holder}" if holder else " by another process"
        super().__init__(
            f"database {path} is locked{who}; gave up after {waited_s:.1f}s. "
            "DuckDB allows one writer at a time: wait for it to finish, or send telemetry to "
            "`clauditor serve` so that only one process writes."
        )


class ReadOnlyQueryError(StoreError):
    """A statement other than a read was given to ``clauditor query``."""


class IngestError(ClauditorError):
    """An input cannot be read at all (not a single span could be taken from it)."""


class DeliveryError(ClauditorError):
    """An alert message could not be delivered after all retries."""
