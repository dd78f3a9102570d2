"""The two drivers of :func:`~prismq_llmtools.site.flow.invocation`: sync and async.

They differ only in how they carry out the algorithm's actions: the sync driver calls the
function, sleeps and blocks on a future; the async driver awaits the coroutine, the
clock's ``asleep`` and the future. Everything else (the Call, the phases, the end of the
invocation) is shared.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import wait as wait_for_futures
from typing import TYPE_CHECKING, Any

from prismq_llmtools import _state, observers
from prismq_llmtools.call import Call, current_call
from prismq_llmtools.site.flow import (
    Failed,
    Raised,
    Returned,
    Run,
    Sleep,
    finish,
    invocation,
)
from prismq_llmtools.site.hooks import Hooks

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

__all__ = ["run_async", "run_sync"]


def run_sync(
    site: SiteCore, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    """One invocation of a sync function through every aspect."""
    call, hooks, watching = _begin(site, instance, args, kwargs)
    token = current_call.set(call)
    result: Any = None
    try:
        site.attach_request(call, hooks)
        flow = invocation(site, call, hooks)
        answer: Any = None
        while True:
            try:
                action = flow.send(answer)
            except StopIteration as stop:
                end: Returned | Raised = stop.value
                break
            try:
                if isinstance(action, Run):
                    answer = wrapped(*call.args, **call.kwargs)  # an aspect may rewrite them
                elif isinstance(action, Sleep):
                    site.clock.sleep(action.seconds)
                    answer = None
                else:
                    wait_for_futures((action.future,))
                    answer = None
            except BaseException as exc:  # the function failed, or a wait was interrupted
                answer = Failed(exc)
        if isinstance(end, Raised):
            raise end.error
        call.outcome = "ok"
        result = end.value
        return result
    except BaseException as exc:  # a hook refused (budget, rate-limit timeout) or failed
        call.outcome, call.error = "error", exc
        raise
    finally:
        current_call.reset(token)
        if watching:
            observers.call_left(call, watching)
        _end(site, call, hooks, result)


async def run_async(
    site: SiteCore,
    wrapped: Callable[..., Awaitable[Any]],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    """One invocation of an async function through every aspect (see :func:`run_sync`)."""
    call, hooks, watching = _begin(site, instance, args, kwargs)
    token = current_call.set(call)
    result: Any = None
    try:
        site.attach_request(call, hooks)
        flow = invocation(site, call, hooks)
        answer: Any = None
        while True:
            try:
                action = flow.send(answer)
            except StopIteration as stop:
                end: Returned | Raised = stop.value
                break
            try:
                if isinstance(action, Run):
                    answer = await wrapped(*call.args, **call.kwargs)
                elif isinstance(action, Sleep):
                    await site.clock.asleep(action.seconds)
                    answer = None
                else:
                    await asyncio.wait((asyncio.wrap_future(action.future),))
                    answer = None
            except BaseException as exc:  # the function failed, or a wait was cancelled
                answer = Failed(exc)
        if isinstance(end, Raised):
            raise end.error
        call.outcome = "ok"
        result = end.value
        return result
    except BaseException as exc:
        call.outcome, call.error = "error", exc
        raise
    finally:
        current_call.reset(token)
        if watching:
            observers.call_left(call, watching)
        _end(site, call, hooks, result)


def _begin(
    site: SiteCore, instance: Any, args: Any, kwargs: Any
) -> tuple[Call, Hooks, tuple[observers.Observer, ...]]:
    """A new Call for this invocation, nested under the current one, the site's hooks, and
    the observers told that it started (they are told when control leaves it)."""
    if not _state.boundary.ready and "openai._base_client" in sys.modules:
        from prismq_llmtools.openai import boundary  # openai is in use: observe its requests

        _state.boundary.maybe_instrument(boundary.instrument)
    call = site.new_call(args, kwargs)
    call.started = site.clock.now()
    call.instance = instance
    watching = observers.call_started(call) if observers.registry.all else ()
    # Kept for the whole invocation, whatever settings change meanwhile.
    return call, site.hooks, watching


def _end(site: SiteCore, call: Call, hooks: Hooks, result: Any) -> None:
    """Finish the invocation now, or when the stream it returned ends."""
    if call.outcome == "ok":
        stream = _open_stream(result)
        if stream is not None and stream.on_done(lambda: finish(site, call, hooks, result)):
            return
    finish(site, call, hooks, result)


def _open_stream(result: Any) -> Any:
    """The state of an observed OpenAI stream still being read, else ``None``."""
    streams = sys.modules.get("prismq_llmtools.openai.streams")
    if streams is None:  # no stream was ever observed in this process
        return None
    if isinstance(result, (streams.ObservedStream, streams.ObservedAsyncStream)):
        return result._self_state
    return None
