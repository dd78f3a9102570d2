"""The one phase algorithm of an invocation, written once for both drivers.

:func:`invocation` is a generator that runs the aspects' hooks in their fixed order (see
:mod:`prismq_llmtools.aspect`) and yields what it needs done: run the function once
(:data:`RUN`), wait a number of seconds (:class:`Sleep`), or wait for an identical call in
flight (:class:`AwaitFlight`). The sync driver carries these out by calling and sleeping,
the async driver by awaiting (:mod:`prismq_llmtools.site.drivers`); the algorithm itself
never blocks, so both paths are the same code (the idea of tenacity's ``Retrying.iter`` and
httpx's ``auth_flow``).

The driver sends back what happened: the function's result or the exception it raised
(:class:`Failed`), including ``KeyboardInterrupt`` or a cancellation during a wait, so every
attempt begun hears how it ended. The generator ends by returning :class:`Returned` or
:class:`Raised`; the driver returns or raises it. It never raises the function's exception
itself: a generator may not raise ``StopIteration``, and a function may.

:func:`finish` is the end of every invocation, successful or not: usage, cost, settlement,
statistics and the ``llm.call`` line. It reads nothing about logging or about which aspects
are present to decide usage or cost: those come from what happened, alone.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prismq_llmtools import events, observers
from prismq_llmtools.aspect import CacheHit, InFlight
from prismq_llmtools.call import Call
from prismq_llmtools.clock import Clock
from prismq_llmtools.openai.request import as_asked
from prismq_llmtools.pricing import cost_call
from prismq_llmtools.site import export
from prismq_llmtools.site.estimate import worst_case_of
from prismq_llmtools.site.hooks import Hooks
from prismq_llmtools.site.observe import resolve_usage

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

_log = logging.getLogger("prismq_llmtools")

__all__ = [
    "RUN",
    "Action",
    "AwaitFlight",
    "Failed",
    "Raised",
    "Returned",
    "Run",
    "Sleep",
    "finish",
    "invocation",
]


# -- what the algorithm asks of a driver ------------------------------------------------


class Run:
    """Call the function once with ``call.args`` and ``call.kwargs``; send back its result."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RUN"


RUN: Final = Run()


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (sleep or ``await``), then send back ``None``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class AwaitFlight:
    """Wait until ``future`` (an identical call in flight) is done, then send back ``None``."""

    future: Future[Any]


Action = Run | Sleep | AwaitFlight


# -- what a driver sends back, and how the algorithm ends ---------------------------------


@dataclass(slots=True)
class Failed:
    """The action raised ``error`` (the function failed, or a wait was interrupted)."""

    error: BaseException


@dataclass(slots=True)
class Returned:
    """The invocation's result."""

    value: Any


@dataclass(slots=True)
class Raised:
    """The invocation ends by raising ``error``."""

    error: BaseException


Flow = Generator[Action, Any, "Returned | Raised"]


# -- the algorithm ------------------------------------------------------------------------


def invocation(site: SiteCore, call: Call, hooks: Hooks) -> Flow:
    """Enter, reserve, then attempts until one succeeds or the retry decision gives up."""
    for enter in hooks.enter:
        found = enter(call)
        while isinstance(found, InFlight):  # single flight: an identical call is running
            answer = yield AwaitFlight(found.future)
            if isinstance(answer, Failed):  # interrupted while waiting: no attempt begun
                return Raised(answer.error)
            found = enter(call)
        if isinstance(found, CacheHit):
            return Returned(found.value)
    for reserve in hooks.reserve:
        reserve(call)
    clock = site.clock
    while True:  # one attempt per turn
        call.attempts += 1
        try:
            for before in hooks.before_attempt:
                wait = before(call)
                while wait > 0:
                    call.wait_s += wait
                    if observers.registry.all:
                        observers.rate_limit_wait(call, wait)
                    answer = yield Sleep(wait)
                    if isinstance(answer, Failed):  # interrupted while waiting
                        raise answer.error
                    wait = before(call)
        except BaseException as exc:  # a refusal, or interrupted waiting
            _attempt_ended(call, hooks, exc)
            raise
        logged = call.logged
        if logged:  # what the attempt's closing line reports
            started, unread_before = clock.now(), call.unread_requests
            _emit_sent(call)
        else:
            started, unread_before = 0.0, 0
        if call.attempts == 1:
            _keep_as_asked(site, call)
        outcome = yield RUN
        if not isinstance(outcome, Failed):
            _attempt_ended(call, hooks, None)
            if logged and hooks.retry is not None:
                _emit_attempt(call, clock, started, None, call.unread_requests > unread_before)
            return Returned(outcome)
        error = outcome.error
        _attempt_ended(call, hooks, error)
        if not isinstance(error, Exception) or hooks.retry is None:
            return Raised(error)  # cancelled or interrupted: never retried
        delay = hooks.retry.retry_delay(call, error)
        if logged:
            _emit_attempt(call, clock, started, error, call.unread_requests > unread_before)
        if delay is None:
            return Raised(error)
        call.retries += 1
        call.wait_s += delay
        if observers.registry.all:
            observers.retry(call, delay, error)
        events.emit(
            call,
            events.RETRY,
            level="warning",
            attempt=call.attempts,
            wait_s=round(delay, 6),
            **{"error.type": type(error).__name__},
            status_code=getattr(error, "status_code", None),
        )
        if delay > 0:
            answer = yield Sleep(delay)
            if isinstance(answer, Failed):
                return Raised(answer.error)


def _keep_as_asked(site: SiteCore, call: Call) -> None:
    """Before the function first runs (it may change its own arguments), find its request if
    nothing has read it yet, and keep it as asked wherever its body will be read afterwards:
    by the usage estimate (the prompt not counted yet) or by the logged content. What is
    read from it is then what was asked; a prompt already counted needs no copy."""
    request = call.request  # found now, if it was to be found when first read
    if request is not None and (call.estimate is None or site.log_content):
        call.request = as_asked(request)


def _attempt_ended(call: Call, hooks: Hooks, error: BaseException | None) -> None:
    """Tell the attempt's aspects how it ended (so an admission made for it is never left
    in flight)."""
    for after in hooks.after_attempt:
        after(call, error)


def finish(site: SiteCore, call: Call, hooks: Hooks, result: Any) -> None:
    """Decide usage and cost from what happened, then settle, store, count and log."""
    site.calls += 1
    if call.outcome == "error":
        site.errors += 1
    resolve_usage(call, result)
    if call.usage is not None:
        cost_call(call, unknown=hooks.unknown_price)
    for settle in hooks.settle:
        settle(call)
    if call.outcome == "ok":
        for leave in hooks.leave:
            leave(call, result)
    for end in hooks.finish:
        end(call)
    call.duration_s = site.clock.now() - call.started
    call.roll_up_into_parent()
    export.note(call)  # in a batch worker's process: the call travels home with the item
    if call.logged:  # the llm.call line; the content is read only to be written
        events.emit_call(call, **(_content_fields(call, result) if site.log_content else {}))
    if observers.registry.all:
        observers.call_finished(call)


def _content_fields(call: Call, result: Any) -> dict[str, Any]:
    """Prompt and answer, in the conventions' message shape, for sites with ``log_content``."""
    from prismq_llmtools.openai import content

    fields: dict[str, Any] = {}
    body = call.request.body if call.request is not None else {}
    fields["gen_ai.system_instructions"] = content.system_instructions(body)
    fields["gen_ai.input.messages"] = content.input_messages(body)
    if isinstance(result, str):
        fields["gen_ai.output.messages"] = content.output_messages(result, call.finish_reason)
    return fields


def _emit_sent(call: Call) -> None:
    """Write ahead: the attempt about to be sent, with the most it can be billed.

    If the process dies before the attempt ends, this line is what tells the report (and
    :func:`prismq_llmtools.cost.recovery.recover_in_flight`) that it may have been billed.
    Written when events are wanted (the algorithm asks once per attempt).
    """
    fields: dict[str, Any] = {"attempt": call.attempts, "gen_ai.request.model": call.model}
    try:
        worst = worst_case_of(call)
    except Exception:  # written only with logging on: it must never fail the call
        _log.exception("prismq_llmtools: the worst case of an attempt of %s failed", call.site)
        worst = None
    if worst is not None:
        usage, cost = worst
        fields["worst_input_tokens"] = usage.input_tokens
        fields["worst_output_tokens"] = usage.output_tokens
        fields["worst_cost_usd"] = cost
    events.emit(call, events.ATTEMPT_SENT, **fields)


def _emit_attempt(
    call: Call, clock: Clock, started: float, error: BaseException | None, billed: bool
) -> None:
    """The line of an attempt that ended, for a retried site (events are wanted: the
    algorithm asked once for both of an attempt's lines)."""
    duration_s = clock.now() - started
    events.emit(
        call,
        events.ATTEMPT,
        level="info" if error is None else "warning",
        attempt=call.attempts,
        outcome="ok" if error is None else "error",
        status_code=getattr(error, "status_code", None),
        duration_s=round(duration_s, 6),
        possibly_billed=billed or None,
        **{
            "error.type": type(error).__name__ if error is not None else None,
            "gen_ai.provider.name": events.PROVIDER if call.request is not None else None,
            "server.address": call.server_address,
            "server.port": call.server_port,
        },
    )
