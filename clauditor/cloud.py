"""Where a Claude call on Amazon Bedrock or Google Vertex AI went: its region, from a host name.

The instrumentation reads a client's region from the client itself (``aws_region``, ``region``)
and falls back to the host it sends requests to; ingest reads ``cloud.region`` from the span and
falls back to the span's ``server.address``. Both fallbacks are this one rule, which a SQL
engine can run as well (:data:`HOST_RULES` are RE2-compatible patterns):

* ``{region}-aiplatform.googleapis.com`` -> the region; ``aiplatform.googleapis.com`` ->
  ``global``; ``aiplatform.{us|eu}.rep.googleapis.com`` -> the multi-region (``us``, ``eu``);
* ``bedrock-runtime.{region}.amazonaws.com`` (also ``bedrock.``, ``-fips``, and VPC endpoint
  hosts ``….bedrock-runtime.{region}.vpce.amazonaws.com``) -> the region.

Any other host (``api.anthropic.com``, a proxy) gives no region. Matching is case-blind.
"""

from __future__ import annotations

import functools
import re

__all__ = ["HOST_RULES", "region_from_host"]

# (pattern, region): the pattern is matched against the whole lower-cased host; region None
# means the pattern's first group is the region.
HOST_RULES: tuple[tuple[str, str | None], ...] = (
    (r"aiplatform\.googleapis\.com", "global"),
    (r"([a-z0-9]+(?:-[a-z0-9]+)*)-aiplatform\.googleapis\.com", None),
    (r"aiplatform\.([a-z0-9]+)\.rep\.googleapis\.com", None),
    (
        r"(?:[a-z0-9-]+\.)?bedrock(?:-runtime)?(?:-fips)?\.([a-z0-9]+(?:-[a-z0-9]+)*)"
        r"\.(?:vpce\.)?amazonaws\.com",
        None,
    ),
)
_COMPILED = tuple((re.compile(pattern), region) for pattern, region in HOST_RULES)


@functools.lru_cache(maxsize=1024)  # hosts repeat: one match per distinct host
def region_from_host(host: str) -> str | None:
    """The Bedrock or Vertex region that ``host`` serves, or ``None`` for any other host."""
    lowered = host.lower()
    for pattern, region in _COMPILED:
        match = pattern.fullmatch(lowered)
        if match is not None:
            return region if region is not None else match.group(1)
    return None
