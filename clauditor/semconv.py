"""Every span attribute, resource attribute, baggage key and environment variable name, once.

Three families of names meet here:

* OpenTelemetry GenAI semantic conventions (``gen_ai.*``). ``gen_ai.usage.input_tokens`` is
  INCLUSIVE of cache reads and writes, as the semconv defines it.
* The anthropic SDK's own native spans (SDK >= 2), which add ``anthropic.*`` names and call the
  cache write count ``gen_ai.usage.cache_write.input_tokens``.
* clauditor's own ``clauditor.*`` names. ``clauditor.usage.input_tokens`` carries the UNCACHED
  count in Anthropic's meaning, so a reader never has to do cache arithmetic on our own spans.

Names used by other instrumentations (OpenLLMetry, OpenInference, OpenLIT, ...) that ingest must
recognise are listed at the bottom, grouped by source.
"""

from __future__ import annotations

# --- OpenTelemetry GenAI semantic conventions -------------------------------------------------
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # older name of the provider attribute
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"  # inclusive of cache reads and writes
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"  # metric
GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"  # metric
# Content (recorded only when content capture is on): JSON strings in the semconv message schema.
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"

ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT = "http.request.resend_count"
SERVER_ADDRESS = "server.address"
# OTel general semconv: on a client span, the region of the called destination (a Bedrock or
# Vertex region, or "global"); on a resource it is where the app runs, which is not read.
CLOUD_REGION = "cloud.region"

# Resource attributes.
SERVICE_NAME = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT = "deployment.environment"  # older name

# --- anthropic SDK >= 2 native spans -------------------------------------------------------------
ANTHROPIC_SCOPE = "com.anthropic.sdk.python"
ANTHROPIC_SPAN_MESSAGES_CREATE = "anthropic.messages.create"
ANTHROPIC_SPAN_COUNT_TOKENS = "anthropic.messages.count_tokens"
ANTHROPIC_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
ANTHROPIC_CACHE_5M_INPUT_TOKENS = "anthropic.usage.cache_creation.ephemeral_5m_input_tokens"
ANTHROPIC_CACHE_1H_INPUT_TOKENS = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
ANTHROPIC_RESPONSE_SERVICE_TIER = "anthropic.response.service_tier"
ANTHROPIC_REQUEST_SERVICE_TIER = "anthropic.request.service_tier"
ANTHROPIC_STOP_REASON = "anthropic.message.stop_reason"
ANTHROPIC_REQUEST_ID = "anthropic.request.id"
ANTHROPIC_COUNT_TOKENS_INPUT_TOKENS = "anthropic.message.count_tokens.input_tokens"

# --- clauditor's own ---------------------------------------------------------------------------
CLAUDITOR_SCOPE = "clauditor"
FEATURE = "clauditor.feature"
USER_ID = "clauditor.user_id"
CODE_LOCATION = "clauditor.code_location"
OPERATION = "clauditor.operation"  # chat | count_tokens | batch
INPUT_TOKENS_UNCACHED = "clauditor.usage.input_tokens"  # Anthropic meaning: excludes cache
INFERENCE_GEO = "clauditor.usage.inference_geo"
SPEED = "clauditor.usage.speed"
# Anthropic's usage.server_tool_use counts (no other convention names them), and the code
# execution container of the response (message.container.id; not OTel's container.id, which is
# the app's own container).
WEB_SEARCH_REQUESTS = "clauditor.usage.server_tool_use.web_search_requests"
WEB_FETCH_REQUESTS = "clauditor.usage.server_tool_use.web_fetch_requests"
CODE_EXECUTION_REQUESTS = "clauditor.usage.server_tool_use.code_execution_requests"
CONTAINER_ID = "clauditor.container.id"
TTFT_MS = "clauditor.ttft_ms"
STREAM_OUTCOME = "clauditor.stream.outcome"  # completed | abandoned | error
TAG_PREFIX = "clauditor.tag."
ERROR_BODY = "clauditor.error.body"  # JSON of a failed call's error body (content capture only)
CONTENT_TRUNCATED = "clauditor.content.truncated"  # true when captured content was shortened

# W3C baggage keys: carry the feature and user across service boundaries.
BAGGAGE_FEATURE = "clauditor.feature"
BAGGAGE_USER_ID = "clauditor.user_id"

# Environment variables.
ENV_DB = "CLAUDITOR_DB"
ENV_CONFIG = "CLAUDITOR_CONFIG"
ENV_SLACK_WEBHOOK_URL = "CLAUDITOR_SLACK_WEBHOOK_URL"
ENV_WEBHOOK_URL = "CLAUDITOR_WEBHOOK_URL"
ENV_RECEIVER_TOKEN = "CLAUDITOR_RECEIVER_TOKEN"
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_CAPTURE_CONTENT = "CLAUDITOR_CAPTURE_CONTENT"  # off | errors_only | a sample rate in [0, 1]
# The Admin API key (sk-ant-admin...) `clauditor reconcile --fetch` reads the bill with; it is sent
# only as the x-api-key header and never stored. The base URL is for proxies and tests.
ENV_ADMIN_KEY = "ANTHROPIC_ADMIN_KEY"
ENV_ADMIN_BASE_URL = "ANTHROPIC_ADMIN_BASE_URL"

# --- other instrumentations, as ingest meets them --------------------------------------------
# OpenLLMetry (opentelemetry-instrumentation-anthropic), older underscore names.
OPENLLMETRY_CACHE_READ = "gen_ai.usage.cache_read_input_tokens"
OPENLLMETRY_CACHE_CREATION = "gen_ai.usage.cache_creation_input_tokens"
OPENLLMETRY_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
OPENLLMETRY_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
OPENLLMETRY_REQUEST_TYPE = "llm.request.type"
# OpenInference.
OPENINFERENCE_MODEL_NAME = "llm.model_name"
OPENINFERENCE_PROVIDER = "llm.provider"
OPENINFERENCE_SYSTEM = "llm.system"
OPENINFERENCE_PROMPT_TOKENS = "llm.token_count.prompt"  # inclusive of cache
OPENINFERENCE_COMPLETION_TOKENS = "llm.token_count.completion"
OPENINFERENCE_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OPENINFERENCE_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_USER_ID = "user.id"
# OTel general semconv: the end user of the request (a fallback for the user column).
ENDUSER_ID = "enduser.id"
OPENINFERENCE_SESSION_ID = "session.id"
OPENLLMETRY_SCOPE = "opentelemetry.instrumentation.anthropic"
OPENLLMETRY_IS_STREAMING = "gen_ai.is_streaming"  # 0.56 and newer
OPENLLMETRY_IS_STREAMING_OLD = "llm.is_streaming"
OPENLLMETRY_FINISH_REASON = "gen_ai.completion.0.finish_reason"  # older releases
OPENLLMETRY_ASSOCIATION_PREFIX = "traceloop.association.properties."  # traceloop-sdk context
# OpenInference (continued).
OPENINFERENCE_SCOPE = "openinference.instrumentation.anthropic"
OPENINFERENCE_REQUEST_MODEL_NAME = "llm.request.model_name"
OPENINFERENCE_FINISH_REASON = "llm.finish_reason"
OPENINFERENCE_INVOCATION_PARAMETERS = "llm.invocation_parameters"  # JSON text
OPENINFERENCE_METADATA = "metadata"  # JSON text of the app's using_metadata(...)
# OpenLIT.
OPENLIT_SCOPE_PREFIX = "openlit."
OPENLIT_USAGE_COST = "gen_ai.usage.cost"
OPENLIT_CACHE_READ = "gen_ai.usage.cache_read_input_tokens"
OPENLIT_TTFT_S = "gen_ai.server.time_to_first_token"  # seconds

# Attribute keys whose values are secrets: an attribute whose lower-cased key contains one of
# these is dropped wherever it appears (see clauditor.redact).
SECRET_KEY_MARKERS = (
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "auth_token",
    "access_token",
    "secret",
    "password",
    "webhook_url",
    "cookie",
)

# --- Claude Code's own telemetry (CLAUDE_CODE_ENABLE_TELEMETRY=1) ------------------------------
# Log events and their attribute keys as Anthropic's monitoring page documents them; what each
# one means and where it was checked is in clauditor.ingest.claude_code.
CLAUDE_CODE_SCOPE = "com.anthropic.claude_code"  # Claude Code's meter (and logger) name
CLAUDE_CODE_RECORD_SCOPE = "clauditor.claude_code"  # scope of the records made from its events
CLAUDE_CODE_EVENT_PREFIX = "claude_code."
CLAUDE_CODE_API_REQUEST = "api_request"
CLAUDE_CODE_API_ERROR = "api_error"
CLAUDE_CODE_SERVICE = "claude-code"  # the service.name Claude Code sets
EVENT_NAME = "event.name"
EVENT_TIMESTAMP = "event.timestamp"
CC_MODEL = "model"
CC_COST_USD = "cost_usd"
CC_DURATION_MS = "duration_ms"
CC_INPUT_TOKENS = "input_tokens"  # uncached, Anthropic's meaning
CC_OUTPUT_TOKENS = "output_tokens"
CC_CACHE_READ_TOKENS = "cache_read_tokens"
CC_CACHE_CREATION_TOKENS = "cache_creation_tokens"
CC_REQUEST_ID = "request_id"
CC_SPEED = "speed"
CC_QUERY_SOURCE = "query_source"
CC_ERROR = "error"
CC_STATUS_CODE = "status_code"
CC_ATTEMPT = "attempt"
SESSION_ID = "session.id"
PROMPT_ID = "prompt.id"
USER_EMAIL = "user.email"
USER_ACCOUNT_UUID = "user.account_uuid"
ORGANIZATION_ID = "organization.id"
APP_ENTRYPOINT = "app.entrypoint"
