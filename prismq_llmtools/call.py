"""The Call: one record per invocation of a decorated function, shared by every aspect.

A record, not a feature: it imports nothing but :mod:`prismq_llmtools.usage` and the standard
library. Facts about the invocation that several modules read are typed fields; state that
one aspect keeps for itself between its hooks goes under that aspect's own
:class:`StateKey` (:meth:`Call.get`, :meth:`Call.put`, :meth:`Call.pop`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeVar

from prismq_llmtools._state import new_call_id as _new_id
from prismq_llmtools.usage import TokenEstimate, Usage, UsageSource

__all__ = [
    "Call",
    "Endpoint",
    "OpenStream",
    "Outcome",
    "RateHeaders",
    "Request",
    "StateKey",
    "current_call",
]

T = TypeVar("T")

Endpoint = Literal["chat", "responses", "embeddings", "completions"]
Outcome = Literal["ok", "error"]

# The pinned OpenTelemetry GenAI conventions (docs/events.md): the Responses API is a `chat`
# operation, told apart from Chat Completions by `openai.api.type`.
_GEN_AI_OPERATION: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "completions": "text_completion",
}
_OPENAI_API_TYPE: dict[str, str] = {"chat": "chat_completions", "responses": "responses"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What is asked of the API: endpoint, model, the JSON body, and the completion cap."""

    model: str | None
    endpoint: Endpoint | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def operation_name(self) -> str | None:
        """The OpenTelemetry ``gen_ai.operation.name`` of this request."""
        return _GEN_AI_OPERATION.get(self.endpoint) if self.endpoint else None

    @property
    def api_type(self) -> str | None:
        """The OpenTelemetry ``openai.api.type`` (``chat_completions`` or ``responses``)."""
        return _OPENAI_API_TYPE.get(self.endpoint) if self.endpoint else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateHeaders:
    """The ``x-ratelimit-*`` headers of one response, durations in seconds."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None


class OpenStream(Protocol):
    """A streamed response opened during a Call, which attributes its usage once finalised."""

    def finalize(self, *, complete: bool) -> None:
        """Attribute the stream's usage to its Call (once; later calls do nothing)."""
        ...


class StateKey(Generic[T]):
    """The key of one aspect's private state on a Call, holding values of type ``T``.

    Each aspect declares its keys in its own module, e.g.
    ``ADMISSION: StateKey[Admission] = StateKey("ratelimit.admission")``. Keys compare by
    identity: two keys never share state, whatever their names; the name is for reading.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StateKey({self.name!r})"


_rollup_lock = threading.Lock()


class Call:
    """Everything known about one invocation: what was asked, what happened, what it cost.

    Aspects read and write it in a fixed phase order; ``llm.call`` is rendered from it.
    Usage and cost are this invocation's own; ``rollup_*`` add every nested Call's.
    Fields not set in ``__init__`` read as their class-level defaults until set.
    """

    site: str
    operation: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parent: Call | None
    instance: Any = None  # the object a method was called on (for binding its arguments)
    started: float = 0.0
    duration_s: float = 0.0

    _request: Request | None = None
    _find_request: Callable[[Call], Request | None] | None = None
    tokenizer: str | None = None
    """The site's ``tokenizer`` setting: what the prompt is counted with (None: the model's
    tiktoken encoding)."""
    estimate: TokenEstimate | None = None
    completion_cap: int | None = None
    """A completion cap the client boundary adds to requests the function builds itself
    when they set none (``@token_budgeted(completion_cap=...)``)."""

    usage: Usage | None = None
    usage_source: UsageSource | None = None
    observed_usage: Usage | None = None
    observed_requests: int = 0
    usage_estimated: bool = False
    """Part of the observed usage was estimated (a stream that ended before its usage)."""
    streams: list[OpenStream]
    """Streams opened during this invocation; any left unfinished are finalised at its end."""
    stream_interrupted: bool = False
    """A stream was closed or abandoned before it ended: its answer is not whole."""
    stream_incomplete: bool = False
    """A stream ended without saying how (no finish reason, no final event)."""
    batch_api: bool = False
    """Answered through the OpenAI Batch API, at its prices."""
    service_tier: str | None = None
    """The ``service_tier`` the latest answer reported (its prices apply where they exist)."""
    cost_usd: Decimal | None = None
    price_known: bool = True
    price_stand_in: str | None = None
    """What an unknown model was priced as (``gpt-4o``, ``zero``, ``estimate``)."""
    rollup_usage: Usage | None = None
    rollup_cost_usd: Decimal = Decimal(0)
    recorded: bool = False
    """Whether usage totals recorded this call (its site is ``@cost_tracked``)."""
    unrecorded_usage: Usage | None = None
    unrecorded_cost_usd: Decimal = Decimal(0)
    """What nested calls that no totals recorded used: their usage counts as this call's."""

    attempts: int = 0
    retries: int = 0
    wait_s: float = 0.0
    rate_limited: int = 0
    cache: str | None = None
    saved_cost_usd: Decimal | None = None

    outcome: Outcome | None = None
    error: BaseException | None = None
    status_code: int | None = None
    request_id: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    """Why the latest answer's first choice ended (``stop``, ``length``...), when known."""
    rate_headers: RateHeaders | None = None
    server_address: str | None = None
    """The host the openai client sent its latest request to."""
    server_port: int | None = None
    possibly_billed: bool = False
    """A request may have been served and billed although its usage could not be read."""
    unread_usage: Usage | None = None
    """The worst case (prompt + completion cap) of every request the server may have billed
    without its usage being read: an unreadable 200, a cut stream, a timeout after sending."""
    unread_requests: int = 0
    """How many requests ``unread_usage`` covers."""

    owns_retries: bool = False
    logged: bool = False
    """Whether this invocation's events are wanted, asked once when it starts: logging set
    up while it runs begins with the next invocation, so an ``llm.call`` line is never
    written without the write-ahead ``llm.attempt.sent`` line before it."""
    _call_id: str | None = None
    _state: dict[StateKey[Any], Any]  # each value has the type its key names (put, get)

    def __init__(
        self,
        site: str,
        operation: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        parent: Call | None = None,
        owns_retries: bool = False,
    ) -> None:
        self.site = site
        self.operation = operation
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.parent = parent
        self.owns_retries = owns_retries
        self.streams = []
        self._state = {}
        self._request = None
        self._find_request = None

    @property
    def request(self) -> Request | None:
        """What is asked of the API, when known: set, or found when first read (see
        :meth:`find_request_when_read`)."""
        find = self._find_request
        if find is not None:
            self._find_request = None  # once, even if finding fails
            self._request = find(self)
        return self._request

    @request.setter
    def request(self, value: Request | None) -> None:
        self._find_request = None
        self._request = value

    def find_request_when_read(self, find: Callable[[Call], Request | None]) -> None:
        """Let :attr:`request` be found by ``find`` when first read.

        Finding it is pure (the arguments do not change while the function has not run), so
        its value is the same whenever it is read; an answer from the cache that nothing
        asks about never builds it. The phase algorithm reads it before the function first
        runs, since the function may change its own arguments.
        """
        self._find_request = find

    @property
    def call_id(self) -> str:
        """This invocation's id (hex), made on first use."""
        if self._call_id is None:
            self._call_id = _new_id()
        return self._call_id

    def get(self, key: StateKey[T]) -> T | None:
        """The state kept under ``key``, or ``None``."""
        value: T | None = self._state.get(key)
        return value

    def put(self, key: StateKey[T], value: T) -> None:
        """Keep ``value`` under ``key`` (replacing what was there)."""
        self._state[key] = value

    def pop(self, key: StateKey[T]) -> T | None:
        """Remove and return the state kept under ``key``, or ``None``."""
        value: T | None = self._state.pop(key, None)
        return value

    def __repr__(self) -> str:
        return f"<Call {self.site} {self.call_id} outcome={self.outcome}>"

    @property
    def parent_id(self) -> str | None:
        """The enclosing invocation's id, if nested."""
        return self.parent.call_id if self.parent is not None else None

    @property
    def model(self) -> str | None:
        """The requested model, when the request is known."""
        request = self.request
        return request.model if request is not None else None

    def add_observed(self, usage: Usage) -> None:
        """Record the usage of one real request made during this invocation."""
        self.observed_requests += 1
        self.observed_usage = usage if self.observed_usage is None else self.observed_usage + usage

    def add_unread(self, worst: Usage) -> None:
        """Charge one request that may have been billed, unread, at its worst case."""
        self.possibly_billed = True
        self.unread_requests += 1
        self.unread_usage = worst if self.unread_usage is None else self.unread_usage + worst

    def total_usage(self) -> Usage | None:
        """This invocation's usage plus every nested invocation's."""
        if self.usage is None:
            return self.rollup_usage
        if self.rollup_usage is None:
            return self.usage
        return self.usage + self.rollup_usage

    def total_cost_usd(self) -> Decimal:
        """This invocation's cost plus every nested invocation's."""
        return (self.cost_usd or Decimal(0)) + self.rollup_cost_usd

    def roll_up_into_parent(self) -> None:
        """Add this invocation's totals to the enclosing one (children may finish in threads).

        What no totals recorded (this call, when its site is not ``@cost_tracked``, and its
        own unrecorded descendants) is handed to the parent's ``unrecorded_*``, so that the
        nearest tracked ancestor records it once, whichever decorators the calls between
        them carry.
        """
        parent = self.parent
        if parent is None:
            return
        total = self.total_usage()
        cost = self.total_cost_usd()
        unrecorded: Usage | None = None
        unrecorded_cost = Decimal(0)
        if not self.recorded and self.cache != "hit":
            unrecorded = _add(self.usage, self.unrecorded_usage)
            unrecorded_cost = (self.cost_usd or Decimal(0)) + self.unrecorded_cost_usd
        with _rollup_lock:
            parent.rollup_usage = _add(parent.rollup_usage, total)
            parent.rollup_cost_usd += cost
            parent.unrecorded_usage = _add(parent.unrecorded_usage, unrecorded)
            parent.unrecorded_cost_usd += unrecorded_cost


def _add(first: Usage | None, second: Usage | None) -> Usage | None:
    if first is None:
        return second
    return first if second is None else first + second


current_call: ContextVar[Call | None] = ContextVar("prismq_llmtools_current_call", default=None)
"""The innermost active Call in this thread or task; ``None`` outside decorated functions."""
