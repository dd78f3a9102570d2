"""Observing the official ``openai`` client: every real request made inside a Call.

Instrumentation wraps two methods of the client's base classes: ``request`` (one logical
request: its body, its result, the retry setting) and ``_send_request`` (each HTTP attempt:
status and headers). It is idempotent, reversible with :func:`uninstrument`, installed on
first use by the decorators, and does nothing at all when no Call is active. Its state (the
replaced methods) lives in :mod:`prismq_llmtools._state`, whose reset removes it.

One retry owner: inside a site with ``@retried``, the client's own retries are switched off
for the requests that site makes (``max_retries=0``), so every attempt is ours and logged.

Billed means counted: a request the server may have served and billed without our reading its
usage (a 200 whose body cannot be parsed, a timeout or a broken connection after the request
was sent) is charged to its Call at its worst case (prompt + completion cap,
:meth:`Call.add_unread`). Only failures before the request left (no connection, a write that
failed) are known to cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from prismq_llmtools import _state, observers
from prismq_llmtools.call import Call, Endpoint, current_call
from prismq_llmtools.openai.headers import parse_rate_headers
from prismq_llmtools.openai.request import request_from_body
from prismq_llmtools.openai.streams import ObservedAsyncStream, ObservedStream, StreamState
from prismq_llmtools.openai.tokens import worst_case
from prismq_llmtools.openai.usage import facts_from_response, finish_reasons

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", "chat"),
    ("/responses", "responses"),
    ("/embeddings", "embeddings"),
    ("/completions", "completions"),
)


_CAP_KEY: dict[str, str] = {"chat": "max_completion_tokens", "responses": "max_output_tokens"}
_CAP_KEYS = frozenset({"max_tokens", "max_completion_tokens", "max_output_tokens"})


def _endpoint(url: str) -> Endpoint | None:
    for suffix, endpoint in _ENDPOINTS:
        if url.endswith(suffix):
            return endpoint
    return None


class _Plan:
    __slots__ = ("body", "endpoint", "exchange", "hide_usage_chunk", "served")

    def __init__(self, body: Mapping[str, Any], endpoint: Endpoint | None, hide: bool) -> None:
        self.body = body
        self.endpoint = endpoint
        self.hide_usage_chunk = hide
        self.exchange: observers.Exchange | None = None
        self.served = False
        """The latest HTTP attempt of this request was answered 2xx: the server billed it."""


_current_plan: ContextVar[_Plan | None] = ContextVar("prismq_llmtools_plan", default=None)
"""The logical request being sent in this thread or task (``request`` -> ``_send_request``)."""

# Failures before the request reached the server: nothing can have been billed.
_NOT_SENT = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "WriteError", "WriteTimeout"}
)


def _charge_unread(call: Call, plan: _Plan | None) -> None:
    """Charge an inference request the server may have billed, unread, at its worst case
    (files and batches requests bill no tokens)."""
    if plan is None or plan.endpoint is None:
        return
    worst = worst_case(plan.body, plan.endpoint, cap=call.completion_cap, fallback=call.estimate)
    call.add_unread(worst)


_Args = tuple[tuple[Any, ...], dict[str, Any]]


def _server(client: Any) -> tuple[str | None, int | None]:
    """The host and port the client sends to (the port its URL's scheme implies if none)."""
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    if not isinstance(host, str) or not host:
        return None, None
    port = getattr(url, "port", None)
    if not isinstance(port, int):
        port = {"https": 443, "http": 80}.get(str(getattr(url, "scheme", "")))
    return host, port


def _prepare(
    call: Call, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[_Plan, _Args]:
    """Return what to observe, and the arguments with adjusted copies of the options."""
    positional = len(args) > 1
    options = args[1] if positional else kwargs["options"]
    body = options.json_data if isinstance(options.json_data, Mapping) else {}
    endpoint = _endpoint(str(options.url))
    options = options.model_copy()
    if call.owns_retries:
        options.max_retries = 0
    hide = False
    streaming = bool(kwargs.get("stream")) and endpoint == "chat"
    stream_options = body.get("stream_options") or {}
    if streaming and not stream_options.get("include_usage"):
        body = {**body, "stream_options": {**stream_options, "include_usage": True}}
        options.json_data = body
        hide = True
    cap = call.completion_cap
    if cap is not None and endpoint in _CAP_KEY and not _CAP_KEYS & body.keys():
        body = {**body, _CAP_KEY[endpoint]: cap}  # @token_budgeted's default completion cap
        options.json_data = body
    if positional:
        args = (args[0], options, *args[2:])
    else:
        kwargs = {**kwargs, "options": options}
    if endpoint is not None and (call.request is None or call.request.endpoint is None):
        call.request = request_from_body(body, endpoint)
    call.server_address, call.server_port = _server(client)
    plan = _Plan(body, endpoint, hide)
    if observers.registry.all:
        plan.exchange = observers.Exchange(
            call,
            endpoint,
            body,
            server_address=call.server_address,
            server_port=call.server_port,
        )
        observers.request_started(plan.exchange)
    return plan, (args, kwargs)


def _failed(plan: _Plan, error: BaseException) -> None:
    """Tell the observers that the request of ``plan`` failed."""
    exchange = plan.exchange
    if exchange is not None:
        exchange.error = error
        exchange.status_code = getattr(error, "status_code", None)
        observers.request_finished(exchange)


def _observe(call: Call, plan: _Plan, result: Any, *, is_async: bool) -> Any:
    exchange = plan.exchange
    if _is_stream(result):
        state = StreamState(call, plan.body, plan.endpoint, hide_usage_chunk=plan.hide_usage_chunk)
        state.exchange = exchange
        call.streams.append(state)
        return ObservedAsyncStream(result, state) if is_async else ObservedStream(result, state)
    facts = facts_from_response(result)
    if facts is not None:
        if facts.usage is not None:
            call.add_observed(facts.usage)
        call.response_model = facts.model or call.response_model
        call.response_id = facts.response_id or call.response_id
        call.request_id = facts.request_id or call.request_id
        call.service_tier = facts.service_tier or call.service_tier
    if exchange is not None:
        if facts is not None:
            exchange.usage = facts.usage
            exchange.response_model = facts.model
            exchange.response_id = facts.response_id
            exchange.service_tier = facts.service_tier
            exchange.finish_reasons = finish_reasons(result)
        observers.request_finished(exchange)
    if facts is not None:
        reasons = exchange.finish_reasons if exchange is not None else finish_reasons(result)
        call.finish_reason = reasons[0] if reasons else call.finish_reason
    return result


def _is_stream(result: Any) -> bool:
    name = type(result).__name__
    return name in ("Stream", "AsyncStream") and hasattr(result, "response")


def _record_http(call: Call, response: Any) -> None:
    headers = response.headers
    status = response.status_code
    call.request_id = headers.get("x-request-id") or call.request_id
    rate = parse_rate_headers(headers)
    if rate is not None:
        call.rate_headers = rate
    if status >= 400:
        call.status_code = status
    if status == 429:
        call.rate_limited += 1


def _sync_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is None:
        return wrapped(*args, **kwargs)
    plan, (args, kwargs) = _prepare(call, instance, args, kwargs)
    token = _current_plan.set(plan)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if plan.served:  # answered 2xx, then unreadable: billed, usage unknown
            _charge_unread(call, plan)
        _failed(plan, exc)
        raise
    finally:
        _current_plan.reset(token)
    return _observe(call, plan, result, is_async=False)


async def _async_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is None:
        return await wrapped(*args, **kwargs)
    plan, (args, kwargs) = _prepare(call, instance, args, kwargs)
    token = _current_plan.set(plan)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        if plan.served:
            _charge_unread(call, plan)
        _failed(plan, exc)
        raise
    finally:
        _current_plan.reset(token)
    return _observe(call, plan, result, is_async=True)


def _sent_and_lost(call: Call, exc: BaseException) -> None:
    """An HTTP attempt failed without an answer: charge it unless it never left."""
    plan = _current_plan.get()
    if plan is not None:
        plan.served = False
    if type(exc).__name__ not in _NOT_SENT:
        _charge_unread(call, plan)


def _answered(call: Call, response: Any) -> None:
    plan = _current_plan.get()
    if plan is not None:
        plan.served = 200 <= response.status_code < 300
    _record_http(call, response)


def _sync_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _sent_and_lost(call, exc)
        raise
    _answered(call, response)
    return response


async def _async_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is None:
        return await wrapped(*args, **kwargs)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _sent_and_lost(call, exc)
        raise
    _answered(call, response)
    return response


def is_instrumented() -> bool:
    """Whether the openai client is currently instrumented."""
    return bool(_state.boundary.originals)


def instrument() -> None:
    """Instrument the official client (idempotent)."""
    state = _state.boundary
    state.auto = True
    if state.originals:
        return
    with state.lock:
        if state.originals:
            return
        import wrapt
        from openai._base_client import AsyncAPIClient, SyncAPIClient

        targets = (
            (SyncAPIClient, "request", _sync_request),
            (AsyncAPIClient, "request", _async_request),
            (SyncAPIClient, "_send_request", _sync_send),
            (AsyncAPIClient, "_send_request", _async_send),
        )
        for cls, attribute, wrapper in targets:
            state.originals[(cls, attribute)] = cls.__dict__[attribute]
            wrapt.wrap_function_wrapper(cls, attribute, wrapper)


def uninstrument() -> None:
    """Restore the client's original methods; decorated functions stop re-installing them."""
    _state.boundary.auto = False
    _state.boundary.restore()
