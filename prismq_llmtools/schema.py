"""The event schema, as data: every event the library writes and the fields it may carry.

This is the one place the schema lives. ``docs/events.md`` shows it (its tables are this
module's :func:`markdown`, and a test keeps them equal), the alert rules are checked against
it when they load, and a test checks that every event name in the code is one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["COMMON_FIELDS", "EVENTS", "EventSpec", "FieldSpec", "fields_of", "markdown"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event: its name, JSON type and meaning."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event: its name, level, when it is written, and the fields beyond the common ones."""

    name: str
    level: str
    meaning: str
    fields: tuple[FieldSpec, ...]


def _f(name: str, type_: str, meaning: str) -> FieldSpec:
    return FieldSpec(name, type_, meaning)


COMMON_FIELDS: tuple[FieldSpec, ...] = (
    _f("event", "string", "event name (below)"),
    _f(
        "timestamp",
        "string",
        "ISO 8601 UTC with microseconds and a `Z`, e.g. `2026-11-24T06:40:00.123456Z` "
        "(event time; the alert engine evaluates on it)",
    ),
    _f("level", "string", "`debug`, `info`, `warning` or `error`"),
    _f("site", "string", "call-site name, default `module.qualname` of the decorated function"),
    _f("operation", "string", "operation path; nested operations join with `/`"),
    _f("call_id", "string", "id of this invocation (hex)"),
    _f("parent_id", "string", "id of the enclosing invocation, when nested"),
)
"""Fields every event may carry (``site`` to ``parent_id`` when it belongs to a call)."""

_MODEL = _f("gen_ai.request.model", "string", "model asked for")
_PROVIDER = _f("gen_ai.provider.name", "string", "`openai`")
_SERVER = (
    _f("server.address", "string", "host the openai client sent the latest request to"),
    _f("server.port", "int", "its port (the scheme's when the URL names none)"),
)
_ERROR_TYPE = _f("error.type", "string", "exception class name, on error")
_STORE_ERROR = (
    _f("store", "string", "the store's URL (no password)"),
    _f("error", "string", "what failed, secrets redacted"),
    _f("policy", "string", "`allow`: the call went on (`on_store_error`)"),
)
_CACHE_KEY = _f(
    "key",
    "string",
    "the first 16 hex digits of the entry's key (a whole 32-hex value would read as a key)",
)

_EVENTS = (
    EventSpec(
        "llm.call",
        "info, warning on error",
        "one summary line per invocation of a decorated function",
        (
            _f(
                "gen_ai.operation.name",
                "string",
                "`chat` (Chat Completions and the Responses API), `embeddings`, `text_completion`",
            ),
            _PROVIDER,
            _f("openai.api.type", "string", "`chat_completions` or `responses`"),
            *_SERVER,
            _MODEL,
            _f("gen_ai.response.model", "string", "model that answered"),
            _f("gen_ai.response.id", "string", "response id"),
            _f("gen_ai.usage.input_tokens", "int", "input tokens billed (includes cached)"),
            _f("gen_ai.usage.output_tokens", "int", "output tokens billed (includes reasoning)"),
            _f(
                "gen_ai.usage.cache_read.input_tokens",
                "int",
                "input tokens served from OpenAI's prompt cache",
            ),
            _f("gen_ai.usage.reasoning.output_tokens", "int", "output tokens spent on reasoning"),
            _f("usage_source", "string", "`response`, `observed`, `estimated` or `cache`"),
            _f("prompt_tokens_estimate", "int", "prompt tokens counted before the call"),
            _f("cost_usd", "float", "cost of the billed usage (0 for a cache hit)"),
            _f("attempts", "int", "attempts made (1 without retries)"),
            _f("retries", "int", "attempts minus one"),
            _f("rate_limited", "int", "429 responses seen during this invocation"),
            _f("wait_s", "float", "total time spent waiting (rate limiter and retry backoff)"),
            _f("duration_s", "float", "wall time of the whole invocation"),
            _f("cache", "string", "`hit`, `miss`, `bypass` (absent when the site is not cached)"),
            _f("outcome", "string", "`ok` or `error`"),
            _ERROR_TYPE,
            _f("status_code", "int", "HTTP status of the final failure (on error)"),
            _f(
                "error_message",
                "string",
                "the error's message, secrets redacted, at most 500 characters (on error)",
            ),
            _f("request_id", "string", "`x-request-id` of the last response"),
            _f(
                "openai.response.service_tier",
                "string",
                "the service tier the answer reports (`default`, `flex`, `priority`, ...)",
            ),
            _f(
                "rollup_cost_usd",
                "float",
                "this invocation's cost plus every nested invocation's (parents only)",
            ),
            _f(
                "possibly_billed",
                "bool",
                "a request may have been billed unread (an unreadable 200, a cut stream, a"
                " timeout after sending): counted at its worst case",
            ),
            _f(
                "recovered",
                "bool",
                "written by `recover_in_flight` for a call a killed process left in flight"
                " (`error.type` `InFlightAtExit`, usage at its worst case)",
            ),
            _f("price_known", "bool", "`false` when the model has no known price"),
            _f(
                "price_stand_in",
                "string",
                "what priced a model with no known price: `gpt-4o`, `zero` or `estimate`",
            ),
            _f(
                "gen_ai.system_instructions",
                "list",
                "a Responses API request's `instructions`, as message parts "
                "(sites with `log_content = true`)",
            ),
            _f(
                "gen_ai.input.messages",
                "list",
                "the request's messages or input, in the conventions' message shape "
                "(sites with `log_content = true`)",
            ),
            _f(
                "gen_ai.output.messages",
                "list",
                "the answer, one assistant message with its `finish_reason` when known "
                "(sites with `log_content = true`)",
            ),
        ),
    ),
    EventSpec(
        "llm.attempt.sent",
        "info",
        "an attempt about to be sent, with the most it can be billed (the write-ahead record"
        " that lets a crash be recovered; see docs/budget.md)",
        (
            _f("attempt", "int", "the attempt's number, from 1"),
            _MODEL,
            _f("worst_input_tokens", "int", "the prompt tokens counted before the call"),
            _f("worst_output_tokens", "int", "the completion cap (0 without one)"),
            _f("worst_cost_usd", "float", "what those cost at the model's price"),
        ),
    ),
    EventSpec(
        "llm.attempt",
        "info, warning on error",
        "one attempt of a site with `@retried` (written when its `llm.attempt.sent` line was:"
        " whether events are wanted is asked once per attempt, before it is sent)",
        (
            _f("attempt", "int", "the attempt's number, from 1"),
            _f("outcome", "string", "`ok` or `error`"),
            _ERROR_TYPE,
            _f("status_code", "int", "HTTP status, on an HTTP error"),
            _f("duration_s", "float", "wall time of the attempt"),
            _f("possibly_billed", "bool", "the attempt may have been billed without an answer"),
            _PROVIDER,
            *_SERVER,
        ),
    ),
    EventSpec(
        "llm.retry",
        "warning",
        "`@retried` waits before another attempt",
        (
            _f("attempt", "int", "the attempt that failed"),
            _f("wait_s", "float", "the wait before the next attempt"),
            _f("error.type", "string", "exception class name"),
            _f("status_code", "int", "HTTP status, on an HTTP error"),
        ),
    ),
    EventSpec(
        "llm.cache.hit",
        "info",
        "`@cached` answered from the cache",
        (
            _f("saved_cost_usd", "float", "what the call cost when it was made"),
            _MODEL,
            _f("layer", "string", "`memory`, `disk` or `flight` (an identical call in flight)"),
            _f("age_s", "float", "age of the entry"),
        ),
    ),
    EventSpec(
        "llm.cache.skip",
        "debug",
        "`@cached` did not look the call up",
        (
            _f(
                "reason",
                "string",
                "`bypass_cache`, `stream`, `when`, `unkeyable_argument`, "
                "`recursion`, `stream_interrupted`, `raw_response`, `unpicklable`",
            ),
            _f("error", "string", "why the arguments or the answer could not be stored"),
        ),
    ),
    EventSpec(
        "llm.cache.corrupt",
        "warning",
        "an unreadable cache entry, treated as a miss",
        (_CACHE_KEY, _f("error", "string", "what was wrong with it")),
    ),
    EventSpec(
        "llm.cache.error",
        "warning",
        "an answer could not be stored (a store failed, or the answer held a secret)",
        (_CACHE_KEY, _f("error", "string", "what failed")),
    ),
    EventSpec(
        "llm.ratelimit.wait",
        "info",
        "the rate limiter made a call wait",
        (
            _f("key", "string", "the limit's key (by default the model)"),
            _f(
                "bucket",
                "string",
                "`requests`, `tokens`, `requests_day`, `tokens_day`, `queue`, `pause`",
            ),
            _f("wait_s", "float", "the wait"),
        ),
    ),
    EventSpec(
        "llm.ratelimit.pause",
        "warning",
        "a 429 paused every call of the key",
        (_f("key", "string", "the limit's key"), _f("wait_s", "float", "the pause")),
    ),
    EventSpec(
        "llm.ratelimit.retry_after_ignored",
        "warning",
        "a 429's Retry-After did not pause the key (see docs/ratelimit.md, Retry-After, bounded)",
        (
            _f("key", "string", "the limit's key"),
            _f("retry_after", "string", "the header as sent, with its name, cut at 40 characters"),
            _f(
                "reason",
                "string",
                "`above_cap` (longer than `retry_after_cap_s`: no pause, and `@retried` gives"
                " up at once), `not_finite` (`inf`, `nan`), `negative`, `absurd` (more than a"
                " day), `not_a_number` (an HTTP date, text); for the last four the key pauses"
                " as for a 429 without one (1 s)",
            ),
            _f("cap_s", "float", "the site's `retry_after_cap_s`"),
        ),
    ),
    EventSpec(
        "llm.ratelimit.correction",
        "info",
        "the server's headers moved a bucket by at least 1% of its size",
        (
            _f("key", "string", "the limit's key"),
            _f("bucket", "string", "`requests` or `tokens`"),
            _f("delta", "float", "how much the level dropped (negative: rose)"),
            _f("server_remaining", "float", "what the server said remains"),
        ),
    ),
    EventSpec(
        "llm.store.error", "warning", "a state store failed and the call went on", _STORE_ERROR
    ),
    EventSpec(
        "llm.budget.threshold",
        "warning",
        "a budget crossed one of its thresholds",
        (
            _f("scope", "string", "the budget's scope"),
            _f("budget", "string", "the budget line, e.g. `daily_usd`"),
            _f("unit", "string", "`tokens` or `usd`"),
            _f("used", "float", "spent so far in the period"),
            _f("limit", "float", "the budget"),
            _f("fraction", "float", "the threshold crossed"),
        ),
    ),
    EventSpec(
        "llm.budget.exceeded",
        "warning",
        "a budget refused a call (no request was sent)",
        (
            _f("scope", "string", "the budget's scope"),
            _f("budget", "string", "the budget line, e.g. `daily_usd`, `max_prompt_tokens`"),
            _f("unit", "string", "`tokens` or `usd`"),
            _f("requested", "float", "what the call needed"),
            _f("remaining", "float", "what remained"),
        ),
    ),
    EventSpec(
        "llm.budget.truncated",
        "info",
        "`max_prompt_tokens` with policy `truncate` dropped old messages",
        (
            _f("scope", "string", "the budget's scope"),
            _f("removed_messages", "int", "messages dropped"),
            _f("prompt_tokens_before", "int", "prompt tokens before"),
            _f("prompt_tokens_after", "int", "prompt tokens after"),
            _f("max_prompt_tokens", "int", "the cap"),
        ),
    ),
    EventSpec(
        "llm.price.unknown",
        "warning",
        "a model has no known price (once per model per process)",
        (
            _MODEL,
            _f("policy", "string", "`estimate` or `zero`"),
            _f("price_stand_in", "string", "what prices it instead: `gpt-4o`, `zero`, `estimate`"),
            _f("fix", "string", "the settings-file table that gives it a price"),
        ),
    ),
    EventSpec(
        "llm.batch",
        "info, warning when items failed or did not run",
        "one summary line per `.batch` / `.abatch`",
        (
            _f("items", "int", "items given"),
            _f("ok", "int", "items answered"),
            _f("failed", "int", "items that failed"),
            _f("not_run", "int", "items never started"),
            _f("resumed", "int", "items taken from a checkpoint"),
            _f("requests", "int", "calls sent (not answered by the cache)"),
            _f(
                "merged_requests",
                "int",
                "of those, the ones carrying several merged items (`merge=` sites only)",
            ),
            _f("cost_usd", "float", "cost of the batch's calls"),
            _f("saved_cost_usd", "float", "cost saved by cache hits"),
            _f("cache_hits", "int", "items answered from the cache"),
            _f("rate_limited", "int", "429 responses seen"),
            _f("duration_s", "float", "wall time of the batch"),
            _f("max_concurrency", "int", "the concurrency bound"),
            _f("stopped_by", "string", "exception class that stopped the batch early"),
            _f("interrupted", "bool", "the batch was interrupted (Ctrl-C)"),
            _f("mode", "string", "`batch_api` in the OpenAI Batch API mode"),
            _f("batch_ids", "list", "the Batch API batches (Batch API mode)"),
        ),
    ),
    EventSpec(
        "llm.batch.submitted",
        "info",
        "Batch API mode uploaded and created a batch",
        (
            _f("batch_id", "string", "the batch's id"),
            _f("requests", "int", "requests in it"),
            _f("bytes", "int", "size of the uploaded JSONL"),
        ),
    ),
    *(
        EventSpec(
            name,
            level,
            meaning,
            (
                _f("rule", "string", "the rule's name"),
                _f("severity", "string", "`info`, `warning` or `critical`"),
                _f("value", "float", "the aggregate's value"),
                _f("threshold", "float", "what it was compared with"),
                _f("group", "object", "the group-by fields and their values"),
                _f("labels", "object", "the rule's labels"),
                _f("message", "string", "the rule's message, filled in"),
                _f("evaluated_at", "string", "the alert's event time"),
                _f("repeat", "bool", "true on a reminder"),
            ),
        )
        for name, level, meaning in (
            ("alert.fired", "warning, error when critical", "an alert rule's condition held"),
            ("alert.resolved", "info", "a fired alert's condition no longer holds"),
        )
    ),
)

EVENTS: Mapping[str, EventSpec] = {spec.name: spec for spec in _EVENTS}
"""Every event the library writes, by name."""

_COMMON_NAMES = frozenset(f.name for f in COMMON_FIELDS)


def fields_of(event: str) -> frozenset[str]:
    """The names of every field ``event`` may carry, the common ones included."""
    return _COMMON_NAMES | {f.name for f in EVENTS[event].fields}


def markdown() -> str:
    """The schema as the Markdown tables of ``docs/events.md``."""
    lines = ["### Fields on every event", "", "| field | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{f.name}` | {f.type} | {f.meaning} |" for f in COMMON_FIELDS]
    for spec in _EVENTS:
        meaning = spec.meaning[0].upper() + spec.meaning[1:]
        lines += ["", f"### `{spec.name}`", "", f"{meaning}; level {spec.level}.", ""]
        lines += ["| field | type | meaning |", "| --- | --- | --- |"]
        lines += [f"| `{f.name}` | {f.type} | {f.meaning} |" for f in spec.fields]
    return "\n".join(lines) + "\n"
