"""Observing streamed responses: usage from the final chunk, or an estimate if cut short."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import wrapt

from prismq_llmtools import observers
from prismq_llmtools.call import Call, Endpoint
from prismq_llmtools.errors import IncompleteStreamError
from prismq_llmtools.openai.usage import parse_usage, service_tier
from prismq_llmtools.usage import Usage

__all__ = ["ObservedAsyncStream", "ObservedStream", "StreamState"]

# The Responses API events that end a stream, each carrying the response with its usage.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class StreamState:
    """What has been seen of one stream; finalised exactly once."""

    __slots__ = (
        "_callbacks",
        "body",
        "call",
        "done",
        "endpoint",
        "exchange",
        "finish_reason",
        "hide_usage_chunk",
        "response_id",
        "response_model",
        "service_tier",
        "texts",
        "usage",
    )

    def __init__(
        self,
        call: Call,
        body: Mapping[str, Any],
        endpoint: Endpoint | None,
        *,
        hide_usage_chunk: bool,
    ) -> None:
        self.call = call
        self.body = body
        self.endpoint = endpoint
        self.hide_usage_chunk = hide_usage_chunk
        self.texts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.service_tier: str | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.done = False
        self.exchange: observers.Exchange | None = None
        """What the observers hear of this stream's request, if any listen."""
        self._callbacks: list[Callable[[], None]] = []

    def observe(self, chunk: Any) -> bool:
        """Record ``chunk``; return True when it must be hidden from the caller."""
        kind = getattr(chunk, "type", None)
        if isinstance(kind, str):  # Responses API events
            if kind in _FINAL_EVENTS:
                response = getattr(chunk, "response", None)
                self._identify(response)
                self.usage = parse_usage(getattr(response, "usage", None))
                self.service_tier = service_tier(response) or self.service_tier
                self.finish_reason = kind
            elif kind == "response.output_text.delta":
                self.texts.append(getattr(chunk, "delta", "") or "")
            return False
        if self.response_id is None:
            self._identify(chunk)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = parse_usage(usage)
        self.service_tier = service_tier(chunk) or self.service_tier
        choices = getattr(chunk, "choices", None) or []
        for choice in choices:
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None) if delta is not None else None
            if content:
                self.texts.append(content)
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.finish_reason = reason
        return self.hide_usage_chunk and not choices and usage is not None

    def _identify(self, obj: Any) -> None:
        model, response_id = getattr(obj, "model", None), getattr(obj, "id", None)
        if isinstance(model, str):
            self.response_model = model
        if isinstance(response_id, str):
            self.response_id = response_id

    def on_done(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` when the stream is finalised; False if it already is."""
        if self.done:
            return False
        self._callbacks.append(callback)
        return True

    def finalize(self, *, complete: bool) -> None:
        """Attribute the stream's usage to its Call: exact if seen; else, for a stream that
        ended whole, estimated from its text, and for one cut short, its worst case."""
        if self.done:
            return
        self.done = True
        call = self.call
        call.service_tier = self.service_tier or call.service_tier
        call.finish_reason = self.finish_reason or call.finish_reason
        call.response_model = self.response_model or call.response_model
        call.response_id = self.response_id or call.response_id
        usage = self.usage
        if usage is not None:
            call.add_observed(usage)
        elif not complete:  # cut or abandoned: the server may have generated up to the cap
            from prismq_llmtools.openai.tokens import worst_case

            usage = worst_case(
                self.body, self.endpoint, cap=call.completion_cap, fallback=call.estimate
            )
            seen = self._estimate()  # without a cap, at least what was received
            if seen is not None and seen.output_tokens > usage.output_tokens:
                usage = Usage(input_tokens=usage.input_tokens, output_tokens=seen.output_tokens)
            call.add_unread(usage)
        else:
            usage = self._estimate()
            if usage is not None:
                call.add_observed(usage)
                call.usage_estimated = True
        if not complete:
            call.stream_interrupted = True
        exchange = self.exchange
        if exchange is not None:
            exchange.usage = usage
            exchange.usage_estimated = self.usage is None and usage is not None
            exchange.service_tier = self.service_tier
            exchange.response_model = self.response_model
            exchange.response_id = self.response_id
            exchange.finish_reasons = (self.finish_reason,) if self.finish_reason else ()
            observers.request_finished(exchange)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def incomplete(self) -> bool:
        """True when a stream ended without saying how: a chat stream without any
        ``finish_reason``, a Responses stream without its final ``response.*`` event."""
        return self.endpoint in ("chat", "responses") and self.finish_reason is None

    def _estimate(self) -> Usage | None:
        from prismq_llmtools.openai.tokens import count_request, count_text

        try:
            estimate = count_request(self.body, endpoint=self.endpoint)
        except Exception:  # unknown model and no fallback: nothing sensible to estimate
            return None
        output = count_text("".join(self.texts), encoding=estimate.encoding)
        return Usage(input_tokens=estimate.prompt_tokens, output_tokens=output)


def _end_of_stream(state: StreamState) -> None:
    """Finalise at exhaustion; a stream that never said how it ended is a failed attempt."""
    incomplete = state.incomplete()
    state.finalize(complete=not incomplete)
    if incomplete:
        state.call.stream_incomplete = True
        if state.call.owns_retries:
            raise IncompleteStreamError("the stream ended without a finish_reason or final event")


class ObservedStream(wrapt.ObjectProxy[Any]):
    """An ``openai.Stream`` that reports its usage to the Call that opened it."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.finalize, complete=False)

    def __iter__(self) -> ObservedStream:
        return self

    def __next__(self) -> Any:
        state = self._self_state
        while True:
            try:
                chunk = self.__wrapped__.__next__()
            except StopIteration:
                _end_of_stream(state)
                raise
            except BaseException:
                state.finalize(complete=False)
                raise
            if not state.observe(chunk):
                return chunk

    def close(self) -> None:
        self._self_state.finalize(complete=False)
        self.__wrapped__.close()

    def __enter__(self) -> ObservedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ObservedAsyncStream(wrapt.ObjectProxy[Any]):
    """An ``openai.AsyncStream`` that reports its usage to the Call that opened it."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.finalize, complete=False)

    def __aiter__(self) -> ObservedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        state = self._self_state
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                _end_of_stream(state)
                raise
            except BaseException:
                state.finalize(complete=False)
                raise
            if not state.observe(chunk):
                return chunk

    async def close(self) -> None:
        self._self_state.finalize(complete=False)
        await self.__wrapped__.close()

    async def __aenter__(self) -> ObservedAsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
