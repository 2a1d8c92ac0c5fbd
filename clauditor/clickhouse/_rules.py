"""The one place the ClickHouse view reads the Python path's rules from.

Everything the generated SQL is made of comes through here, and nearly all of it is public
data of :mod:`clauditor.ingest.conventions` (the conventions table, their :class:`Markers`
detectors, the GenAI key lists, the error-type aliases, the status-message patterns) and
:mod:`clauditor.ingest.normalize` (the token-count bound, the baggage feature key, the text
columns it scrubs). The view turns each ``Markers`` into SQL from its fields, so a new detector
needs no code here.

Two kinds of name are read privately, on purpose:

- the refine steps, by identity: a refine step is code, and its SQL is written by hand beside
  these names in :mod:`.view`, so a new or replaced step must make generation fail loudly
  instead of being skipped (an identity cannot be derived from the table without losing that);
- two regular expressions other modules keep private (the scrubber's secret-value pattern,
  pricing's regional Bedrock id pattern), so the view uses the same text rather than a copy.
"""

from __future__ import annotations

import importlib

from clauditor.ingest.conventions import (
    CALL_SPAN_NAMES,
    CONVENTIONS,
    ERROR_TYPE_ALIASES,
    ERROR_TYPE_BY_STATUS,
    GENAI_KEYS,
    OPERATION_BY_GENAI_NAME,
    OPERATION_BY_SPAN_NAME,
    STATUS_ERROR_TYPE,
    STATUS_HTTP,
    Convention,
    Markers,
)
from clauditor.ingest.normalize import BAGGAGE_FEATURE_ATTRIBUTE, MAX_TOKEN_COUNT, TEXT_COLUMNS

__all__ = [
    "BAGGAGE_FEATURE_ATTRIBUTE",
    "BEDROCK_REGIONAL_PATTERN",
    "CALL_SPAN_NAMES",
    "CONVENTIONS",
    "ERROR_TYPE_ALIASES",
    "ERROR_TYPE_BY_STATUS",
    "GENAI_KEYS",
    "MAX_TOKEN_COUNT",
    "OPERATION_BY_GENAI_NAME",
    "OPERATION_BY_SPAN_NAME",
    "REFINE_CLAUDE_CODE",
    "REFINE_OPENINFERENCE",
    "REFINE_OPENLIT",
    "REFINE_OPENLLMETRY",
    "SECRET_VALUE_PATTERN",
    "STATUS_ERROR_TYPE_PATTERN",
    "STATUS_HTTP_PATTERN",
    "TEXT_COLUMNS",
    "Convention",
    "Markers",
]

_conventions = importlib.import_module("clauditor.ingest.conventions")
_redact = importlib.import_module("clauditor.redact")
_pricing = importlib.import_module("clauditor.pricing")

SECRET_VALUE_PATTERN: str = _redact._SECRET_VALUE.pattern
BEDROCK_REGIONAL_PATTERN: str = _pricing._BEDROCK_REGIONAL
STATUS_HTTP_PATTERN: str = STATUS_HTTP.pattern
STATUS_ERROR_TYPE_PATTERN: str = STATUS_ERROR_TYPE.pattern

# Refine steps, by identity (see the module docstring).
REFINE_OPENLLMETRY = _conventions._refine_openllmetry
REFINE_OPENINFERENCE = _conventions._refine_openinference
REFINE_OPENLIT = _conventions._refine_openlit
REFINE_CLAUDE_CODE = _conventions._refine_claude_code
