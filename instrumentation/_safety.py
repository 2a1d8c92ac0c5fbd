"""Telemetry never breaks the app: each internal failure is counted, logged once, never raised."""

from __future__ import annotations

import logging
import threading
from collections import Counter

__all__ = ["failure_counts", "report_failure"]

log = logging.getLogger("clauditor.instrumentation")

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def report_failure(where: str, exc: BaseException) -> None:
    """Count a failure of clauditor's own code at ``where``; log it at WARNING the first time.

    Callers catch ``Exception`` around telemetry code and hand it here, then carry on with the
    app's call exactly as if clauditor were not installed.
    """
    with _lock:
        _counts[where] += 1
        first = _counts[where] == 1
    if first:
        log.warning(
            "clauditor telemetry failed in %s (%s: %s); the app is unaffected, further failures "
            "here are counted silently",
            where,
            type(exc).__name__,
            exc,
        )


def failure_counts() -> dict[str, int]:
    """How many times each place in clauditor's telemetry code has failed in this process."""
    with _lock:
        return dict(_counts)
