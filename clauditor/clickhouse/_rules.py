"""The one place the ClickHouse view reads the Python normalizer's rules from.

Everything the generated SQL is made of comes through here: the conventions table, the
GenAI key lists, the error-type aliases, the status-message patterns, the clauditor markers and
the refine steps (recognised by identity, so a new or renamed refine step makes generation fail
loudly instead of being skipped). When the conventions move to another module, only the import
below changes.
"""

from __future__ import annotations

import importlib

nz = importlib.import_module("clauditor.ingest.normalize")

CONVENTIONS = nz.CONVENTIONS
Convention = nz.Convention
Markers = nz.Markers
GENAI_KEYS = nz.GENAI_KEYS
MAX_TOKEN_COUNT: int = nz.MAX_TOKEN_COUNT
BAGGAGE_FEATURE_ATTRIBUTE: str = nz.BAGGAGE_FEATURE_ATTRIBUTE
CLAUDITOR_PREFIX: str = nz._CLAUDITOR_PREFIX
CLAUDITOR_KEYS: frozenset[str] = nz._CLAUDITOR_KEYS
ERROR_TYPE_ALIASES: dict[str, str] = nz._ERROR_TYPE_ALIASES
ERROR_TYPE_BY_STATUS: dict[int, str] = nz._ERROR_TYPE_BY_STATUS
OPERATION_BY_SPAN_NAME: dict[str, str] = nz._OPERATION_BY_SPAN_NAME
OPERATION_BY_GENAI_NAME: dict[str, str] = nz._OPERATION_BY_GENAI_NAME
CALL_SPAN_NAMES: frozenset[str] = nz._CALL_SPAN_NAMES
TEXT_COLUMNS: tuple[str, ...] = nz._TEXT_COLUMNS
STATUS_HTTP_PATTERN: str = nz._STATUS_HTTP.pattern
STATUS_ERROR_TYPE_PATTERN: str = nz._STATUS_ERROR_TYPE.pattern
decided_by_keys = nz.decided_by_keys

# Detectors that are functions, by identity: their SQL lives in view.py beside these names.
MATCHER_CLAUDITOR = nz._is_clauditor
MATCHER_ANTHROPIC_SDK = nz._is_anthropic_sdk
MATCHER_ALWAYS = nz._always
# Refine steps, by identity.
REFINE_OPENLLMETRY = nz._refine_openllmetry
REFINE_OPENINFERENCE = nz._refine_openinference
REFINE_OPENLIT = nz._refine_openlit
REFINE_CLAUDE_CODE = nz._refine_claude_code
