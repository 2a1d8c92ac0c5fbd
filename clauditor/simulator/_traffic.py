"""The traffic model behind :func:`clauditor.simulator.simulate`: who calls Claude, and how.

Five resources (service x environment) run a dozen workloads. Each workload is a stream of calls
with its own model, load curve, caching behaviour and token sizes; the agent workload produces
whole conversations whose context grows turn by turn. :class:`TrafficGenerator` turns them into
:class:`Call` records one simulated hour at a time, planting the incidents it is given.

The models are the lineup a team runs in late 2026: support-bot and agent-worker moved to the
5.5 generation (Sonnet 5.5 for chat and agents, Haiku 5.5 for triage, Opus 5.5 for long
documents), while docs-app, the older service, still answers searches and writes titles on
Haiku 4.5 and one agent code path still compresses history on Sonnet 4.6. A call never goes to a
model before its release: earlier in time each workload runs the model it was upgraded from
(:data:`UPGRADED_FROM`, :func:`model_on`), so every simulated period, not only the committed
sample's November 2026, holds calls the API could have answered on their date.

Everything random comes from one ``random.Random`` consumed in a fixed order, so a seed fixes the
output exactly. Python loops are fine here: generation is per call by nature, and the hot path
stays around ten microseconds per call (serializing it costs about as much again).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime

__all__ = [
    "RESOURCES",
    "RESPONSE_MODEL",
    "RUNAWAY",
    "UNPRICED_MODEL",
    "UPGRADED_FROM",
    "WORKLOADS",
    "Call",
    "IncidentWindows",
    "TrafficGenerator",
    "Workload",
    "model_on",
]

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_S
NS_PER_DAY = 24 * NS_PER_HOUR
_EPOCH_ORDINAL = datetime(1970, 1, 1, tzinfo=UTC).toordinal()

# (service.name, deployment.environment.name); a Call refers to one by index.
RESOURCES: tuple[tuple[str, str], ...] = (
    ("support-bot", "prod"),
    ("docs-app", "prod"),
    ("agent-worker", "prod"),
    ("support-bot", "staging"),
    ("agent-worker", "staging"),
)
SUPPORT_PROD, DOCS_PROD, AGENT_PROD, SUPPORT_STAGING, AGENT_STAGING = range(5)

UNPRICED_MODEL = "claude-experimental-2026"

# Model -> (the day the API started serving it, the model a workload ran before that day).
# Followed back in time by model_on; the oldest models here are where the history stops.
UPGRADED_FROM: dict[str, tuple[date, str]] = {
    "claude-opus-5-5": (date(2026, 9, 22), "claude-opus-4-8"),
    "claude-opus-4-8": (date(2026, 5, 28), "claude-opus-4-6"),
    "claude-opus-4-6": (date(2026, 2, 5), "claude-opus-4-5"),
    "claude-opus-4-5": (date(2025, 11, 24), "claude-opus-4-1"),
    "claude-sonnet-5-5": (date(2026, 9, 28), "claude-sonnet-4-6"),
    "claude-sonnet-4-6": (date(2026, 2, 17), "claude-sonnet-4-5"),
    "claude-sonnet-4-5": (date(2025, 9, 29), "claude-sonnet-4"),
    "claude-haiku-5-5": (date(2026, 10, 7), "claude-haiku-4-5"),
    "claude-haiku-4-5": (date(2025, 10, 15), "claude-3-5-haiku"),
}

# Request model -> the id the API answers with (dated where Anthropic dates the model).
RESPONSE_MODEL = {
    "claude-opus-5-5": "claude-opus-5-5",
    "claude-opus-4-8": "claude-opus-4-8",
    "claude-opus-4-6": "claude-opus-4-6",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-5-5": "claude-sonnet-5-5",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-sonnet-4": "claude-sonnet-4-20250514",
    "claude-haiku-5-5": "claude-haiku-5-5",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-3-5-haiku": "claude-3-5-haiku-20241022",
    UNPRICED_MODEL: UNPRICED_MODEL,
}
# (time to first token in ms before prefill, output tokens per second, prefill ms per 1k tokens)
_SPEED = {
    "claude-haiku-5-5": (280.0, 170.0, 10.0),
    "claude-haiku-4-5": (300.0, 160.0, 12.0),
    "claude-3-5-haiku": (350.0, 130.0, 14.0),
    "claude-sonnet-5-5": (520.0, 85.0, 20.0),
    "claude-sonnet-4-6": (550.0, 80.0, 22.0),
    "claude-sonnet-4-5": (600.0, 75.0, 25.0),
    "claude-sonnet-4": (650.0, 70.0, 27.0),
    "claude-opus-5-5": (900.0, 60.0, 32.0),
    "claude-opus-4-8": (950.0, 55.0, 35.0),
    "claude-opus-4-6": (950.0, 55.0, 35.0),
    "claude-opus-4-5": (1000.0, 50.0, 40.0),
    "claude-opus-4-1": (1100.0, 40.0, 45.0),
    UNPRICED_MODEL: (800.0, 60.0, 30.0),
}


def model_on(model: str, day: date) -> str:
    """The model a workload configured with ``model`` calls on ``day`` (UTC).

    ``model`` itself once it is released, else the model it replaced, followed back through
    :data:`UPGRADED_FROM`; models without an entry (the unpriced one) are always ``model``.
    """
    while model in UPGRADED_FROM and day < UPGRADED_FROM[model][0]:
        model = UPGRADED_FROM[model][1]
    return model


# Hourly load weights (UTC, mean 1.0). Interactive traffic follows European and US office hours;
# the agents run on queued work and only lean towards the day.
_BUSINESS = (
    0.25, 0.2, 0.15, 0.15, 0.15, 0.2, 0.35, 0.6, 0.9, 1.1, 1.2, 1.3,
    1.4, 1.7, 1.9, 1.9, 1.9, 1.8, 1.6, 1.3, 1.0, 0.8, 0.55, 0.35,
)  # fmt: skip
_QUEUED = (
    0.7, 0.65, 0.6, 0.6, 0.6, 0.65, 0.75, 0.85, 0.95, 1.05, 1.15, 1.2,
    1.25, 1.35, 1.4, 1.4, 1.4, 1.35, 1.25, 1.15, 1.0, 0.9, 0.8, 0.75,
)  # fmt: skip


def _mean_one(weights: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(weights) / len(weights)
    return tuple(w / mean for w in weights)


BUSINESS = _mean_one(_BUSINESS)
QUEUED = _mean_one(_QUEUED)


@dataclass(frozen=True)
class Workload:
    """One stream of calls: a feature (or untagged code path) of one resource.

    ``per_day`` is the mean weekday count at scale 1: calls, or conversations for ``kind`` agent,
    or batch results for ``kind`` batch. Token sizes are log-normal (median, sigma). ``prefix`` is
    the cached prompt prefix (system prompt and, for chats, history); ``hit`` the probability that
    a call reads it rather than writes it.
    """

    resource: int
    feature: str | None
    code_location: str
    model: str
    per_day: float
    kind: str = "chat"  # chat | agent | batch | count_tokens
    profile: tuple[float, ...] = BUSINESS
    weekend: float = 0.4
    stream: bool = False
    max_tokens: int | None = 1024
    system: int = 0
    history: tuple[float, float] = (0.0, 0.0)
    hit: float = 0.0
    fresh: tuple[float, float] = (1000.0, 0.5)
    output: tuple[float, float] = (300.0, 0.5)
    users: int = 0
    user_prefix: str = "u"


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        SUPPORT_PROD, "support-chat", "support_bot.chat:reply", "claude-sonnet-5-5", 560,
        stream=True, system=3100, history=(1200.0, 0.9), hit=0.9, fresh=(250.0, 0.7),
        output=(280.0, 0.6), users=600, user_prefix="cust",
    ),
    Workload(
        SUPPORT_PROD, "ticket-triage", "support_bot.triage:classify_ticket", "claude-haiku-5-5",
        330, max_tokens=50, fresh=(1400.0, 0.5), output=(22.0, 0.5), users=600,
        user_prefix="cust",
    ),
    Workload(
        SUPPORT_PROD, None, "support_bot.admin:summarize_thread", "claude-sonnet-5-5", 30,
        max_tokens=8192, fresh=(2500.0, 0.6), output=(350.0, 0.5), users=12, user_prefix="agent",
    ),
    Workload(
        DOCS_PROD, "doc-summarize", "docs_app.summarize:summarize_document", "claude-opus-5-5",
        140, weekend=0.5, max_tokens=2048, fresh=(9000.0, 0.6), output=(650.0, 0.4),
    ),
    Workload(
        DOCS_PROD, "search-answer", "docs_app.search:answer_query", "claude-haiku-4-5", 320,
        weekend=0.3, stream=True, max_tokens=512, fresh=(3200.0, 0.4), output=(220.0, 0.5),
        users=1500,
    ),
    Workload(
        DOCS_PROD, "nightly-digest", "docs_app.jobs.digest:collect_results", "claude-sonnet-5-5",
        110, kind="batch", weekend=0.5, fresh=(6000.0, 0.5), output=(500.0, 0.4),
    ),
    Workload(
        DOCS_PROD, None, "docs_app.jobs.titles:generate_title", "claude-haiku-4-5", 35,
        max_tokens=8192, fresh=(1800.0, 0.5), output=(30.0, 0.4), weekend=0.5,
    ),
    Workload(
        AGENT_PROD, "agent-tools", "agent_worker.loop:run_step", "claude-sonnet-5-5", 38,
        kind="agent", profile=QUEUED, weekend=0.6, max_tokens=4096, system=5200,
        fresh=(400.0, 0.6), output=(350.0, 0.7), users=120, user_prefix="acct",
    ),
    Workload(
        AGENT_PROD, "agent-tools", "agent_worker.context:fits_window", "claude-sonnet-5-5", 55,
        kind="count_tokens", profile=QUEUED, weekend=0.6, max_tokens=None,
        fresh=(24000.0, 0.5), users=120, user_prefix="acct",
    ),
    Workload(
        AGENT_PROD, None, "agent_worker.memory:compress_history", "claude-sonnet-4-6", 30,
        profile=QUEUED, weekend=0.6, max_tokens=8192, fresh=(12000.0, 0.5),
        output=(800.0, 0.4),
    ),
    Workload(
        SUPPORT_STAGING, "support-chat", "support_bot.chat:reply", "claude-sonnet-5-5", 25,
        weekend=0.1, stream=True, system=3100, history=(600.0, 0.9), hit=0.6,
        fresh=(250.0, 0.7), output=(280.0, 0.6), users=5, user_prefix="qa",
    ),
    Workload(
        AGENT_STAGING, "agent-tools", "agent_worker.loop:run_step", UNPRICED_MODEL, 5,
        weekend=0.1, max_tokens=4096, fresh=(6000.0, 0.6), output=(400.0, 0.6), users=3,
        user_prefix="qa",
    ),
    Workload(
        AGENT_STAGING, "agent-tools", "agent_worker.loop:run_step", "claude-sonnet-5-5", 15,
        weekend=0.1, max_tokens=4096, fresh=(6000.0, 0.6), output=(400.0, 0.6), users=3,
        user_prefix="qa",
    ),
)  # fmt: skip

# The runaway loop: the agent re-sends its whole ~30k-token context to Opus every few seconds.
RUNAWAY = Workload(
    AGENT_PROD, "agent-tools", "agent_worker.loop:run_step", "claude-opus-5-5", 500 * 24,
    max_tokens=4096, system=5200, fresh=(30000.0, 0.05), output=(300.0, 0.4), users=120,
    user_prefix="acct",
)  # fmt: skip
SUPPORT_CHAT_PROD = WORKLOADS[0]

# Background failures: (share of failed calls, error.type, final HTTP status, resends).
_ERRORS = (
    (0.45, "rate_limit_error", 429, 2),
    (0.20, "api_error", 500, 2),
    (0.15, "client_timeout_error", None, 0),
    (0.20, "invalid_request_error", 400, 0),
)
ERROR_RATE = 0.015
RETRIED_OK_RATE = 0.02  # succeeded after one 429
STORM_FAIL_RATE = 0.35
STORM_RETRIED_OK_RATE = 0.3
REGRESSED_HIT = 0.05
CLIENT_TIMEOUT_MS = 60_000.0
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SPAN_NAME = {
    "chat": "anthropic.messages.create",
    "count_tokens": "anthropic.messages.count_tokens",
    "batch": "anthropic.messages.batches.results",
}


@dataclass(slots=True)
class Call:
    """One simulated API call, all its retries included: exactly what one span reports.

    ``input_tokens`` is the UNCACHED count (Anthropic's meaning); the span's inclusive
    ``gen_ai.usage.input_tokens`` is ``input_tokens + cache_read + cache_write_5m +
    cache_write_1h``. Failed calls (``error_type`` set) have no usage and no response.
    """

    resource: int
    name: str
    operation: str
    start_ns: int
    end_ns: int
    trace_id: str
    span_id: str
    parent_span_id: str
    model: str
    feature: str | None
    user_id: str | None
    conversation_id: str | None
    code_location: str
    max_tokens: int | None
    stream: bool
    service_tier: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    stop_reason: str | None = None
    http_status: int | None = 200
    error_type: str | None = None
    retries: int = 0
    ttft_ms: float | None = None
    response_id: str | None = None


@dataclass(frozen=True)
class IncidentWindows:
    """Where the planted incidents fall, in Unix nanoseconds ``[start, end)``."""

    storm: tuple[int, int]
    runaway: tuple[int, int]
    regression: tuple[int, int]


class TrafficGenerator:
    """Generates the calls of consecutive simulated hours from one seeded random stream."""

    def __init__(
        self, rng: random.Random, *, start_ns: int, scale: float, windows: IncidentWindows
    ) -> None:
        self.rng = rng
        self.start_ns = start_ns
        self.scale = scale
        self.windows = windows
        self._pending: list[Call] = []
        self._day_noise: dict[tuple[int, int], float] = {}
        self._models: dict[tuple[str, int], str] = {}  # (configured model, Unix day) -> model_on

    # --- the hourly loop ------------------------------------------------------------------
    def hour(self, index: int, hour_of_day: int, weekend: bool) -> list[Call]:
        """All calls that start in simulated hour ``index`` (0 = the first), sorted by start.

        Conversations begun in one hour may run into the next; their later turns are kept and
        returned with the hour they start in, so consecutive hours never overlap.
        """
        hour_start = self.start_ns + index * NS_PER_HOUR
        hour_end = hour_start + NS_PER_HOUR
        day = index // 24
        for w_index, w in enumerate(WORKLOADS):
            noise = self._day_noise.get((day, w_index))
            if noise is None:
                # Day-to-day wobble plus slow growth (about 0.4 % a day): real usage is never flat.
                noise = math.exp(self.rng.gauss(0.0, 0.08)) * (1.0 + 0.004 * day)
                self._day_noise[(day, w_index)] = noise
            if w.kind == "batch":
                if hour_of_day == 2:
                    self._batch(w, hour_start, noise * (w.weekend if weekend else 1.0))
                continue
            rate = w.per_day / 24.0 * w.profile[hour_of_day] * noise
            if weekend:
                rate *= w.weekend
            for _ in range(self._poisson(rate * self.scale)):
                t = hour_start + int(self.rng.random() * NS_PER_HOUR)
                if w.kind == "agent":
                    self._conversation(w, t)
                elif w.kind == "count_tokens":
                    self._pending.append(self._count_tokens(w, t))
                else:
                    self._pending.append(self._chat(w, t))
        self._runaway(hour_start, hour_end)
        self._pending.sort(key=lambda c: c.start_ns)
        cut = 0
        while cut < len(self._pending) and self._pending[cut].start_ns < hour_end:
            cut += 1
        done, self._pending = self._pending[:cut], self._pending[cut:]
        return done

    # --- random helpers -------------------------------------------------------------------
    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def _lognormal(self, median_sigma: tuple[float, float]) -> int:
        median, sigma = median_sigma
        if median <= 0:
            return 0
        return max(1, int(median * math.exp(self.rng.gauss(0.0, sigma))))

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _user(self, w: Workload) -> str | None:
        if not w.users:
            return None
        # Pareto-ish: a few heavy users, a long tail of occasional ones.
        n = min(w.users, int(w.users * self.rng.random() ** 2.2) + 1)
        return f"{w.user_prefix}-{n:04d}"

    def _response_id(self) -> str:
        return "msg_01" + "".join(self.rng.choices(_B62, k=22))

    # --- call builders ----------------------------------------------------------------------
    def _model_on(self, model: str, t: int) -> str:
        key = (model, t // NS_PER_DAY)
        found = self._models.get(key)
        if found is None:
            day = date.fromordinal(_EPOCH_ORDINAL + key[1])
            found = self._models[key] = model_on(model, day)
        return found

    def _new_call(self, w: Workload, t: int, *, operation: str = "chat") -> Call:
        return Call(
            resource=w.resource,
            name=_SPAN_NAME[operation],
            operation=operation,
            start_ns=t,
            end_ns=t,
            trace_id=self._hex(128),
            span_id=self._hex(64),
            parent_span_id="",
            model=self._model_on(w.model, t),
            feature=w.feature,
            user_id=self._user(w),
            conversation_id=None,
            code_location=w.code_location,
            max_tokens=w.max_tokens,
            stream=w.stream,
            service_tier="batch" if operation == "batch" else "standard",
        )

    def _chat(self, w: Workload, t: int) -> Call:
        call = self._new_call(w, t)
        call.input_tokens = self._lognormal(w.fresh)
        if w.system:
            prefix = w.system + self._lognormal(w.history)
            hit = w.hit
            lo, hi = self.windows.regression
            if w is SUPPORT_CHAT_PROD and lo <= t < hi:
                hit = REGRESSED_HIT  # the deploy put a timestamp into the system prompt
            if self.rng.random() < hit:
                call.cache_read = prefix
            else:
                call.cache_write_5m = prefix
        self._finish(call, self._lognormal(w.output))
        return call

    def _count_tokens(self, w: Workload, t: int) -> Call:
        call = self._new_call(w, t, operation="count_tokens")
        call.input_tokens = self._lognormal(w.fresh)
        call.max_tokens = None
        duration_ms = 80.0 + 120.0 * self.rng.random()
        call.end_ns = t + int(duration_ms * NS_PER_MS)
        self._maybe_fail(call, duration_ms)
        return call

    def _conversation(self, w: Workload, t: int) -> None:
        """An agent task: turns that each re-read the cached context and cache what they add."""
        conversation = f"conv_{self._hex(64)}"
        trace_id, parent, user = self._hex(128), self._hex(64), self._user(w)
        turns = 3 + self._poisson(4.0)
        history = 0  # context after the system/tools prefix, cached at the previous turn
        added = self._lognormal(w.fresh)  # new content since the last cache breakpoint
        for turn in range(turns):
            call = self._new_call(w, t)
            call.trace_id, call.parent_span_id, call.user_id = trace_id, parent, user
            call.conversation_id = conversation
            call.input_tokens = 3 + int(self.rng.random() * 40)
            if turn == 0:
                # The tools + system prefix is cached for an hour; now and then it has expired.
                if self.rng.random() < 0.2:
                    call.cache_write_1h = w.system
                else:
                    call.cache_read = w.system
                call.cache_write_5m = added
            else:
                call.cache_read = w.system + history
                call.cache_write_5m = added
            history += added
            output = self._lognormal(w.output)
            self._finish(call, output, last_turn=turn == turns - 1)
            self._pending.append(call)
            if call.error_type is not None:
                break  # the agent gives up on the task
            # The tool runs, its result joins the context, the next turn starts.
            added = output + self._lognormal((1800.0, 0.8))
            t = call.end_ns + int((0.5 + 12.0 * self.rng.random()) * NS_PER_S)

    def _batch(self, w: Workload, hour_start: int, factor: float) -> None:
        """The nightly Batch API job: results are fetched between 02:30 and 02:40."""
        results = self._poisson(w.per_day * factor * self.scale)
        t = hour_start + 30 * 60 * NS_PER_S
        for _ in range(results):
            call = self._new_call(w, t, operation="batch")
            call.input_tokens = self._lognormal(w.fresh)
            call.output_tokens = min(self._lognormal(w.output), 1024)
            call.stop_reason = "max_tokens" if call.output_tokens == 1024 else "end_turn"
            call.response_id = self._response_id()
            duration = int((4 + 20 * self.rng.random()) * NS_PER_MS)
            call.end_ns = t + duration
            t = call.end_ns + int(self.rng.random() * 2 * NS_PER_S)
            self._pending.append(call)

    def _runaway(self, hour_start: int, hour_end: int) -> None:
        lo, hi = self.windows.runaway
        lo, hi = max(lo, hour_start), min(hi, hour_end)
        if lo >= hi:
            return
        # One stuck loop per unit of scale, each on its own conversation.
        loops = max(1, round(self.scale))
        conversations = [f"conv_{self._hex(64)}" for _ in range(loops)]
        rate = RUNAWAY.per_day / 24.0 * (hi - lo) / NS_PER_HOUR * self.scale
        for _ in range(self._poisson(rate)):
            t = lo + int(self.rng.random() * (hi - lo))
            call = self._new_call(RUNAWAY, t)
            call.conversation_id = conversations[int(self.rng.random() * loops)]
            call.cache_read = RUNAWAY.system
            call.input_tokens = self._lognormal(RUNAWAY.fresh)
            self._finish(call, self._lognormal(RUNAWAY.output), last_turn=False)
            self._pending.append(call)

    # --- outcome: tokens out, duration, errors ---------------------------------------------
    def _finish(self, call: Call, output: int, *, last_turn: bool | None = None) -> None:
        """Set the output, stop reason, timings and (maybe) a failure of a chat call."""
        cap = call.max_tokens or 8192
        call.output_tokens = min(output, cap)
        if call.output_tokens == cap:
            call.stop_reason = "max_tokens"
        elif last_turn is False:
            call.stop_reason = "tool_use"
        else:
            call.stop_reason = "end_turn"
        first_ms, tokens_per_s, prefill_ms = _SPEED[call.model]
        prompt = call.input_tokens + call.cache_write_5m + call.cache_write_1h
        # Cached tokens still cost prefill time, only less of it.
        ttft = (first_ms + prefill_ms * (prompt + 0.3 * call.cache_read) / 1000.0) * math.exp(
            self.rng.gauss(0.0, 0.25)
        )
        generate = call.output_tokens / tokens_per_s * 1000.0 * math.exp(self.rng.gauss(0.0, 0.15))
        duration_ms = ttft + generate + 20.0
        if call.stream:
            call.ttft_ms = round(ttft, 1)
        call.response_id = self._response_id()
        duration_ms = self._maybe_fail(call, duration_ms)
        call.end_ns = call.start_ns + int(duration_ms * NS_PER_MS)

    def _maybe_fail(self, call: Call, duration_ms: float) -> float:
        """Apply retries and failures (background or the 529 storm); returns the duration."""
        lo, hi = self.windows.storm
        storm = lo <= call.start_ns < hi
        fail_rate = STORM_FAIL_RATE if storm else ERROR_RATE
        r = self.rng.random()
        if r < fail_rate:
            error: tuple[str, int | None, int] = (
                ("overloaded_error", 529, 2) if storm else self._background_error()
            )
            error_type, status, retries = error
            call.error_type, call.http_status, call.retries = error_type, status, retries
            call.input_tokens = call.output_tokens = call.cache_read = 0
            call.cache_write_5m = call.cache_write_1h = 0
            call.stop_reason = call.ttft_ms = call.response_id = None
            if error_type == "client_timeout_error":
                return CLIENT_TIMEOUT_MS
            attempt_ms = 150.0 + 400.0 * self.rng.random()
            return attempt_ms * (retries + 1) + self._backoff_ms(retries)
        retried_rate = STORM_RETRIED_OK_RATE if storm else RETRIED_OK_RATE
        if r < fail_rate + retried_rate:
            call.retries = 1 + (storm and self.rng.random() < 0.5)
            return duration_ms + self._backoff_ms(call.retries) + 300.0 * call.retries
        return duration_ms

    def _background_error(self) -> tuple[str, int | None, int]:
        pick = self.rng.random()
        for share, error_type, status, retries in _ERRORS:
            if pick < share:
                return error_type, status, retries
            pick -= share
        return _ERRORS[-1][1:]

    def _backoff_ms(self, retries: int) -> float:
        # The SDK's exponential backoff: about 0.5 s, then 1 s, with jitter.
        return sum(500.0 * 2**i * (0.75 + 0.5 * self.rng.random()) for i in range(retries))
