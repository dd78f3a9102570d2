"""Observers: what telemetry exporters hear of each invocation, while it happens.

The JSON lines of :mod:`prismq_llmtools.events` are the record of what happened; an exporter
(:mod:`prismq_llmtools.otel`, :mod:`prismq_llmtools.prometheus`) needs more: the moment an
invocation starts (to open its span, and make it current so that nested ones nest), each
request made through the ``openai`` client (one inference span each), rate-limit waits and
retries as they happen. The core tells every registered :class:`Observer` at these points::

    call_started       a decorated function was invoked (its Call exists, no phase has run)
      rate_limit_wait    the rate limiter holds the attempt for ``seconds``
      request_started    a request leaves through the openai client   (one :class:`Exchange`
      request_finished   its answer is whole, or it failed             per request)
      retry              an attempt failed; the next one follows after ``delay_s``
      budget_remaining   a budget line after the call's reservation was settled or refused
    call_left          control leaves the invocation (a returned stream may still be read)
    call_finished      the Call is final: usage, cost, outcome (after its ``llm.call`` line)

The core knows nothing of OpenTelemetry or Prometheus: it calls these methods, which do
nothing unless overridden. With no observer registered, each point costs one check. An
observer that raises is logged through the standard ``logging`` module and never breaks the
call it observes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from prismq_llmtools import _state
from prismq_llmtools.call import StateKey

if TYPE_CHECKING:
    from prismq_llmtools.call import Call, Endpoint
    from prismq_llmtools.usage import Usage

__all__ = [
    "Exchange",
    "Observer",
    "Observers",
    "add",
    "registry",
    "remove",
]

T = TypeVar("T")

_log = logging.getLogger("prismq_llmtools")


class Exchange:
    """One request made through the openai client during a Call, and its answer.

    The client boundary fills it: the request's facts before it is sent, the answer's when
    it is whole (for a stream, when the stream ends or is abandoned).
    """

    __slots__ = (
        "_state",
        "body",
        "call",
        "endpoint",
        "error",
        "finish_reasons",
        "response_id",
        "response_model",
        "server_address",
        "server_port",
        "service_tier",
        "status_code",
        "stream",
        "usage",
        "usage_estimated",
    )

    def __init__(
        self,
        call: Call,
        endpoint: Endpoint | None,
        body: Mapping[str, Any],
        *,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> None:
        self.call = call
        self.endpoint = endpoint
        self.body = body
        self.server_address = server_address
        self.server_port = server_port
        self.stream = bool(body.get("stream"))
        self.usage: Usage | None = None
        self.usage_estimated = False
        """The usage was estimated (a stream that ended before its usage chunk)."""
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.service_tier: str | None = None
        self.finish_reasons: tuple[str, ...] = ()
        self.status_code: int | None = None
        self.error: BaseException | None = None
        self._state: dict[StateKey[Any], Any] = {}

    @property
    def model(self) -> str | None:
        """The model the request asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    def get(self, key: StateKey[T]) -> T | None:
        """What an observer kept under ``key`` for this exchange, or ``None``."""
        value: T | None = self._state.get(key)
        return value

    def put(self, key: StateKey[T], value: T) -> None:
        """Keep ``value`` under ``key`` for this exchange."""
        self._state[key] = value

    def pop(self, key: StateKey[T]) -> T | None:
        """Remove and return what was kept under ``key``, or ``None``."""
        value: T | None = self._state.pop(key, None)
        return value


class Observer:
    """Base class of telemetry exporters: every method does nothing unless overridden."""

    def call_started(self, call: Call) -> None:
        """A decorated function was invoked (in the caller's thread or task)."""

    def call_left(self, call: Call) -> None:
        """Control leaves the invocation (same thread or task as :meth:`call_started`)."""

    def call_finished(self, call: Call) -> None:
        """The Call is final: usage, cost and outcome are decided."""

    def rate_limit_wait(self, call: Call, seconds: float) -> None:
        """The rate limiter holds the current attempt for ``seconds``."""

    def retry(self, call: Call, delay_s: float, error: BaseException) -> None:
        """Attempt ``call.attempts`` failed with ``error``; another follows after ``delay_s``."""

    def request_started(self, exchange: Exchange) -> None:
        """A request leaves through the openai client (in the thread or task sending it)."""

    def request_finished(self, exchange: Exchange) -> None:
        """The request's answer is whole, or the request failed (``exchange.error``)."""

    def budget_remaining(
        self, call: Call, scope: str, line: str, unit: str, remaining: float
    ) -> None:
        """What budget ``line`` of ``scope`` has left (``unit``: ``tokens`` or ``usd``)."""


class Observers:
    """The registered observers (process-global: :data:`registry`)."""

    __slots__ = ("_lock", "all")

    def __init__(self) -> None:
        self.all: tuple[Observer, ...] = ()
        self._lock = threading.Lock()

    def add(self, observer: Observer) -> None:
        """Register ``observer`` (once; adding it again does nothing)."""
        with self._lock:
            if observer not in self.all:
                self.all = (*self.all, observer)

    def remove(self, observer: Observer) -> None:
        """Unregister ``observer`` (if registered)."""
        with self._lock:
            self.all = tuple(o for o in self.all if o is not observer)

    def reset(self) -> None:
        """Unregister every observer."""
        with self._lock:
            self.all = ()


registry: Observers = _state.Shared("observers", Observers).get()
"""The process's observers; the core reads ``registry.all`` at each point."""


def add(observer: Observer) -> None:
    """Register ``observer`` with :data:`registry`."""
    registry.add(observer)


def remove(observer: Observer) -> None:
    """Unregister ``observer``."""
    registry.remove(observer)


def _each(action: Callable[[Observer], None], to: tuple[Observer, ...] | None = None) -> None:
    for observer in registry.all if to is None else to:
        try:
            action(observer)
        except Exception:  # telemetry must never break the call it observes
            _log.exception("prismq_llmtools observer %r failed", observer)


def call_started(call: Call) -> tuple[Observer, ...]:
    """Tell every observer that ``call`` started; returns them, for :func:`call_left`."""
    watching = registry.all
    _each(lambda o: o.call_started(call), watching)
    return watching


def call_left(call: Call, watching: tuple[Observer, ...]) -> None:
    """Tell the observers that heard ``call`` start (``watching``: even one removed since
    may have state to undo, such as a context it made current) that control left it."""
    _each(lambda o: o.call_left(call), watching)


def call_finished(call: Call) -> None:
    """Tell every observer that ``call`` is final."""
    _each(lambda o: o.call_finished(call))


def rate_limit_wait(call: Call, seconds: float) -> None:
    """Tell every observer of a rate-limit wait."""
    _each(lambda o: o.rate_limit_wait(call, seconds))


def retry(call: Call, delay_s: float, error: BaseException) -> None:
    """Tell every observer of a retry."""
    _each(lambda o: o.retry(call, delay_s, error))


def request_started(exchange: Exchange) -> None:
    """Tell every observer that a request leaves."""
    _each(lambda o: o.request_started(exchange))


def request_finished(exchange: Exchange) -> None:
    """Tell every observer that a request ended."""
    _each(lambda o: o.request_finished(exchange))


def budget_remaining(call: Call, scope: str, line: str, unit: str, remaining: float) -> None:
    """Tell every observer what a budget line has left."""
    _each(lambda o: o.budget_remaining(call, scope, line, unit, remaining))
