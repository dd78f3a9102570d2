"""Spans and metrics of every decorated call, made from what the observers hear.

Each invocation is an INTERNAL span named by its operation, made current while the function
runs (so nested invocations, the inference spans and the application's own spans nest under
it). Each request through the openai client is a CLIENT inference span,
``{gen_ai.operation.name} {gen_ai.request.model}``, ended when its answer is whole (a stream:
when it ends or is abandoned). Names: :mod:`prismq_llmtools.otel.names`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from prismq_llmtools import events
from prismq_llmtools.call import Call, StateKey
from prismq_llmtools.observers import Exchange, Observer
from prismq_llmtools.otel import names as n

if TYPE_CHECKING:
    from prismq_llmtools.usage import Usage

__all__ = ["Telemetry"]

_SPAN: StateKey[Span] = StateKey("otel.span")
_TOKEN: StateKey[object] = StateKey("otel.context")
_INFERENCE: StateKey[tuple[Span, float]] = StateKey("otel.inference")

_OPERATION: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "completions": "text_completion",
}
_API_TYPE = {"chat": "chat_completions", "responses": "responses"}
_CAP_KEYS = ("max_completion_tokens", "max_output_tokens", "max_tokens")
AttributeValue = str | bool | int | float | list[str]


def _error_type(error: BaseException) -> str:
    return type(error).__name__


class Telemetry(Observer):
    """The observer :func:`prismq_llmtools.otel.instrument` registers."""

    def __init__(self, tracer: Tracer, meter: Meter) -> None:
        self.tracer = tracer
        self.inference_duration = meter.create_histogram(
            n.INFERENCE_DURATION,
            unit="s",
            description="GenAI client inference operation duration.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.input_tokens = meter.create_counter(
            n.INFERENCE_INPUT_TOKENS, unit="{token}", description="Input tokens, cached included."
        )
        self.output_tokens = meter.create_counter(
            n.INFERENCE_OUTPUT_TOKENS,
            unit="{token}",
            description="Output tokens, reasoning included.",
        )
        self.cache_read_tokens = meter.create_counter(
            n.INFERENCE_CACHE_READ_TOKENS,
            unit="{token}",
            description="Input tokens read from the provider's cache.",
        )
        self.reasoning_tokens = meter.create_counter(
            n.INFERENCE_REASONING_TOKENS,
            unit="{token}",
            description="Output tokens spent on reasoning.",
        )
        self.operation_duration = meter.create_histogram(
            n.OPERATION_DURATION,
            unit="s",
            description="Duration of a decorated call, waits and retries included.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(
            n.COST, unit="{USD}", description="Cost of the calls, from their actual usage."
        )
        self.cache_hits = meter.create_counter(
            n.CACHE_HITS, unit="{hit}", description="Calls answered from the response cache."
        )
        self.cache_saved = meter.create_counter(
            n.CACHE_SAVED_COST, unit="{USD}", description="What the cache hits would have cost."
        )
        self.retries = meter.create_counter(
            n.RETRIES_METRIC, unit="{retry}", description="Attempts retried after a failure."
        )
        self.ratelimit_wait = meter.create_counter(
            n.RATELIMIT_WAIT, unit="s", description="Time held by the rate limiter."
        )
        self.budget_remaining_gauge = meter.create_gauge(
            n.BUDGET_REMAINING, unit="1", description="What a budget line has left (tokens or USD)."
        )

    # -- one invocation ---------------------------------------------------------------------

    def call_started(self, call: Call) -> None:
        parent = call.parent.get(_SPAN) if call.parent is not None else None
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            call.operation,
            context=ctx,
            kind=SpanKind.INTERNAL,
            attributes={n.SITE: call.site, n.OPERATION: call.operation, n.CALL_ID: call.call_id},
        )
        call.put(_SPAN, span)
        call.put(_TOKEN, context.attach(trace.set_span_in_context(span)))

    def call_left(self, call: Call) -> None:
        token = call.pop(_TOKEN)
        if token is not None:
            context.detach(token)  # type: ignore[arg-type]  # the token attach returned

    def call_finished(self, call: Call) -> None:
        labels = {n.SITE: call.site, n.OPERATION: call.operation}
        if call.model is not None:
            labels[n.REQUEST_MODEL] = call.model
        self.operation_duration.record(
            call.duration_s, {**labels, n.OUTCOME: call.outcome or "error"}
        )
        if call.cost_usd is not None and call.cache != "hit":
            self.cost.add(float(call.cost_usd), labels)
        if call.cache == "hit":
            self.cache_hits.add(1, labels)
            if call.saved_cost_usd is not None:
                self.cache_saved.add(float(call.saved_cost_usd), labels)
        if call.retries:
            self.retries.add(call.retries, labels)
        span = call.pop(_SPAN)
        if span is None:
            return
        span.set_attributes(_call_attributes(call))
        if call.error is not None:
            span.set_attribute(n.ERROR_TYPE, _error_type(call.error))
            span.set_status(Status(StatusCode.ERROR, events.redact(str(call.error))[:500]))
        span.end()

    def rate_limit_wait(self, call: Call, seconds: float) -> None:
        labels = {n.SITE: call.site, n.OPERATION: call.operation}
        if call.model is not None:
            labels[n.REQUEST_MODEL] = call.model
        self.ratelimit_wait.add(seconds, labels)
        span = call.get(_SPAN)
        if span is not None:
            span.add_event(n.RATELIMIT_WAIT_EVENT, {n.DELAY_S: seconds, n.ATTEMPT: call.attempts})

    def retry(self, call: Call, delay_s: float, error: BaseException) -> None:
        span = call.get(_SPAN)
        if span is not None:
            span.add_event(
                n.RETRY_EVENT,
                {n.ATTEMPT: call.attempts, n.DELAY_S: delay_s, n.ERROR_TYPE: _error_type(error)},
            )

    def budget_remaining(
        self, call: Call, scope: str, line: str, unit: str, remaining: float
    ) -> None:
        self.budget_remaining_gauge.set(
            remaining, {n.BUDGET_SCOPE: scope, n.BUDGET_LINE: line, n.BUDGET_UNIT: unit}
        )
        span = call.get(_SPAN)
        if span is not None:
            span.set_attribute(n.BUDGET_SCOPE, scope)

    # -- one request through the client -----------------------------------------------------

    def request_started(self, exchange: Exchange) -> None:
        attributes = _request_attributes(exchange)
        name = f"{attributes[n.OPERATION_NAME]} {exchange.model or ''}".rstrip()
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        exchange.put(_INFERENCE, (span, time.perf_counter()))

    def request_finished(self, exchange: Exchange) -> None:
        found = exchange.pop(_INFERENCE)
        if found is None:
            return
        span, started = found
        duration = time.perf_counter() - started
        answer = _answer_attributes(exchange)
        span.set_attributes(answer)
        metric = {
            key: value
            for key, value in {**_request_attributes(exchange), **answer}.items()
            if key in _METRIC_KEYS
        }
        self.inference_duration.record(duration, metric)
        usage = exchange.usage
        if usage is not None:
            tokens = {**metric, n.TOKEN_MODALITY: "unknown"}
            if exchange.usage_estimated:
                tokens[n.USAGE_ESTIMATED] = True
            tokens.pop(n.ERROR_TYPE, None)
            self.input_tokens.add(usage.input_tokens, tokens)
            self.output_tokens.add(usage.output_tokens, tokens)
            self.cache_read_tokens.add(usage.cached_input_tokens, tokens)
            self.reasoning_tokens.add(usage.reasoning_tokens, tokens)
        if exchange.error is not None:
            span.set_status(Status(StatusCode.ERROR, events.redact(str(exchange.error))[:500]))
        span.end()


_METRIC_KEYS = frozenset(
    {
        n.OPERATION_NAME,
        n.PROVIDER_NAME,
        n.REQUEST_MODEL,
        n.RESPONSE_MODEL,
        n.SERVER_ADDRESS,
        n.SERVER_PORT,
        n.ERROR_TYPE,
    }
)


def _request_attributes(exchange: Exchange) -> dict[str, AttributeValue]:
    body = exchange.body
    endpoint = exchange.endpoint
    attributes: dict[str, AttributeValue] = {
        n.OPERATION_NAME: _OPERATION.get(endpoint, "chat") if endpoint else "chat",
        n.PROVIDER_NAME: events.PROVIDER,
    }
    optional: dict[str, Any] = {
        n.REQUEST_MODEL: exchange.model,
        n.SERVER_ADDRESS: exchange.server_address,
        n.SERVER_PORT: exchange.server_port,
        n.OPENAI_API_TYPE: _API_TYPE.get(endpoint) if endpoint else None,
        n.REQUEST_MAX_TOKENS: next((body[k] for k in _CAP_KEYS if body.get(k) is not None), None),
        n.REQUEST_TEMPERATURE: body.get("temperature"),
        n.REQUEST_TOP_P: body.get("top_p"),
        n.REQUEST_SEED: body.get("seed"),
        n.REQUEST_STREAM: True if exchange.stream else None,
        n.REQUEST_CHOICE_COUNT: body.get("n") if body.get("n") not in (None, 1) else None,
        n.OPENAI_REQUEST_SERVICE_TIER: (
            body.get("service_tier") if body.get("service_tier") not in (None, "auto") else None
        ),
    }
    for key, value in optional.items():
        if isinstance(value, str | bool | int | float):
            attributes[key] = value
    return attributes


def _answer_attributes(exchange: Exchange) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if exchange.response_model:
        attributes[n.RESPONSE_MODEL] = exchange.response_model
    if exchange.response_id:
        attributes[n.RESPONSE_ID] = exchange.response_id
    if exchange.finish_reasons:
        attributes[n.RESPONSE_FINISH_REASONS] = list(exchange.finish_reasons)
    if exchange.service_tier:
        attributes[n.OPENAI_RESPONSE_SERVICE_TIER] = exchange.service_tier
    if exchange.usage is not None:
        attributes.update(_usage(exchange.usage, conventions=True))
        if exchange.usage_estimated:
            attributes[n.USAGE_ESTIMATED] = True
    if exchange.error is not None:
        attributes[n.ERROR_TYPE] = _error_type(exchange.error)
    return attributes


def _usage(usage: Usage, *, conventions: bool) -> dict[str, AttributeValue]:
    if conventions:
        keys = (
            n.USAGE_INPUT_TOKENS,
            n.USAGE_OUTPUT_TOKENS,
            n.USAGE_CACHE_READ_INPUT_TOKENS,
            n.USAGE_REASONING_OUTPUT_TOKENS,
        )
    else:
        keys = (
            n.OP_INPUT_TOKENS,
            n.OP_OUTPUT_TOKENS,
            n.OP_CACHE_READ_TOKENS,
            n.OP_REASONING_TOKENS,
        )
    values = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.reasoning_tokens,
    )
    return dict(zip(keys, values, strict=True))


def _call_attributes(call: Call) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        n.OUTCOME: call.outcome or "error",
        n.ATTEMPTS: call.attempts,
        n.RETRIES: call.retries,
        n.RATE_LIMITED: call.rate_limited,
    }
    optional: dict[str, Any] = {
        n.REQUEST_MODEL: call.model,
        n.RESPONSE_MODEL: call.response_model,
        n.CACHE: call.cache,
        n.USAGE_SOURCE: call.usage_source,
        n.COST_USD: _money(call.cost_usd),
        n.SAVED_COST_USD: _money(call.saved_cost_usd),
    }
    for key, value in optional.items():
        if value is not None:
            attributes[key] = value
    if not call.price_known:
        attributes[n.PRICE_KNOWN] = False
    wait = call.wait_s
    if wait:
        attributes[n.RATELIMIT_WAIT_S] = round(wait, 6)
    if call.usage is not None:
        attributes.update(_usage(call.usage, conventions=False))
    return attributes


def _money(amount: Decimal | None) -> float | None:
    return float(amount) if amount is not None else None
