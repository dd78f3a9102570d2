"""The call site's core: everything a decorated function knows, and the drivers that run
each invocation through every aspect in order.

Each decorator of ours adds an aspect to the same site (ONE wrapt wrapper per decorated
function: :class:`~prismq_llmtools.site.wrapper.Site`), so stacking six
decorators costs one wrapper and one :class:`~prismq_llmtools.call.Call` per invocation,
and the phase order (see :mod:`prismq_llmtools.aspect`) never depends on stacking order.
The algorithm is written twice, as a sync and an async driver that differ only in how they
wait and call the function (a generator shared by both cost more than any phase). Hooks
never wait: they return waits the drivers carry out.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from typing import Any

import structlog

from prismq_llmtools import events
from prismq_llmtools.aspect import Aspect, CacheHit, Pending
from prismq_llmtools.call import Call, Request, current_call
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.events import logging_state as _logging_state
from prismq_llmtools.pricing import cost_call
from prismq_llmtools.site.binding import Binder
from prismq_llmtools.site.observe import resolve_usage
from prismq_llmtools.site.request import API_PARAMETERS, request_from_arguments, request_from_body

__all__ = ["RequestExtractor", "SiteCore"]

RequestExtractor = Callable[[dict[str, Any]], "Request | Mapping[str, Any] | None"]
"""Builds the request from the bound arguments: a :class:`Request`, a JSON body, or None."""


class _Hooks:
    """A site's hooks per phase, for its aspects' current settings (rebuilt when they change).

    An invocation keeps the hooks it started with, so a settings change in mid-call never
    skips the clean-up of a phase that already ran (a cache flight, a budget reservation).
    """

    __slots__ = (
        "after_attempt",
        "before_attempt",
        "enter",
        "finish",
        "leave",
        "reserve",
        "retry",
        "settle",
    )

    def __init__(self, aspects: Sequence[Aspect]) -> None:
        active = [(aspect, aspect.active_hooks()) for aspect in aspects]

        def hooks(name: str) -> tuple[Any, ...]:
            return tuple(aspect.hook(name) for aspect, names in active if name in names)

        self.enter = hooks("enter")
        self.reserve = hooks("reserve")
        self.before_attempt = hooks("before_attempt")
        self.after_attempt = hooks("after_attempt")
        self.settle = hooks("settle")
        self.leave = hooks("leave")
        self.finish = hooks("finish")
        retriers = [aspect for aspect, names in active if "retry_delay" in names]
        self.retry: Aspect | None = retriers[0] if retriers else None


class SiteCore:
    """Everything a call site knows: its name, its aspects, its defaults and its statistics.

    Reached at run time as ``f.llm``.
    """

    def __init__(self, func: Any, *, name: str | None = None) -> None:
        raw = func.__func__ if isinstance(func, classmethod | staticmethod) else func
        self.func = raw
        self.name: str = name or f"{raw.__module__}.{raw.__qualname__}"
        self.operation: str = self.name
        self.is_async = inspect.iscoroutinefunction(raw)
        self._is_static = isinstance(func, staticmethod)
        self._binder = Binder(raw)
        # No parameter names a request field: only **kwargs or the site's model can.
        self._plain_parameters = API_PARAMETERS.isdisjoint(self._binder.parameter_names)
        self._method_binder: Binder | None = None
        self.aspects: list[Aspect] = []
        self.default_model: str | None = None
        self._base_model: str | None = None
        self._base_operation: str | None = None
        self._runtime: list[dict[str, Any]] = []
        self._keys_checked = False
        self.request_extractor: RequestExtractor | None = None
        self.log_content = False
        self.clock: Clock = system_clock
        self.owns_retries = False
        self.cost_policy: Any = None
        self.calls = 0
        self.errors = 0
        self._needs_request = False
        self._rebuild_lock = threading.Lock()
        self._rebuild()

    # -- configuration -------------------------------------------------------------

    def add(self, aspect: Aspect) -> None:
        """Add ``aspect``; one aspect of each kind per site."""
        if any(a.kind == aspect.kind for a in self.aspects):
            raise ConfigurationError(
                f"site {self.name!r}: @{aspect.kind} is applied twice; apply each decorator once"
            )
        self.aspects.append(aspect)
        aspect.attach(self)
        self._apply_settings()

    def set_name(self, name: str) -> None:
        """Rename the site (only before it has been called)."""
        if self.calls:
            raise ConfigurationError(f"site {self.name!r} cannot be renamed after use")
        if self.operation == self.name:
            self.operation = name
        self.name = name
        self._apply_settings()

    def set_defaults(
        self,
        *,
        model: str | None = None,
        operation: str | None = None,
        request: RequestExtractor | None = None,
    ) -> None:
        """Site-level defaults given by a decorator's arguments."""
        if request is not None:
            self.request_extractor = request
            self._needs_request = True
        if model is not None:
            self._base_model = self.default_model = model
        if operation is not None:
            self._base_operation = self.operation = operation
        self._apply_settings()

    def _apply_settings(self) -> None:
        from prismq_llmtools.settings import settings

        loaded = settings()
        if not self._keys_checked:
            loaded.check_keys()
            self._keys_checked = True
        overrides = loaded.for_site(self.name)
        for layer in self._runtime:
            overrides.update(layer)
        self.default_model = overrides.get("model", self._base_model)
        log_content = overrides.get("log_content", False)
        if not isinstance(log_content, bool):
            raise ConfigurationError(f"site {self.name!r}: log_content must be true or false")
        self.log_content = log_content
        self.operation = overrides.get("operation", self._base_operation or self.name)
        for aspect in self.aspects:
            aspect.apply(overrides, self.name)
        self._rebuild()  # settings decide which hooks are active

    def configure(self, **changes: Any) -> None:
        """Change settings of this site at run time, until the process ends."""
        self._check_runtime_keys(changes)
        self._runtime.append(changes)
        self._apply_settings()

    @contextmanager
    def override(self, **changes: Any) -> Iterator[SiteCore]:
        """Change settings of this site inside a ``with`` block (tests, operations)."""
        self._check_runtime_keys(changes)
        self._runtime.append(changes)
        try:
            self._apply_settings()
            yield self
        finally:
            self._runtime.remove(changes)
            self._apply_settings()

    def _check_runtime_keys(self, changes: dict[str, Any]) -> None:
        from dataclasses import fields

        known = {"model", "operation", "log_content"}
        for aspect in self.aspects:
            if aspect.base is not None:
                known.update(f.name for f in fields(aspect.base))
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigurationError(
                f"site {self.name!r}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )

    def refresh_hooks(self) -> None:
        """Ask the aspects again which hooks are active (one changed its mind)."""
        self._rebuild()

    def _rebuild(self) -> None:
        with self._rebuild_lock:  # rebuilt from several threads: the last one sees all changes
            self._hooks = _Hooks(self.aspects)
            self.owns_retries = self._hooks.retry is not None
            self._needs_request = self.request_extractor is not None or any(
                a.needs_request for a in self.aspects
            )
            # Whether the request must be discovered before the call even without keyword
            # arguments: only parameters, an extractor or a default model can describe one.
            self._finds_request = self._needs_request and (
                not self._plain_parameters
                or self.request_extractor is not None
                or self.default_model is not None
            )

    # -- per invocation ------------------------------------------------------------

    def bind(self, call: Call, instance: Any) -> dict[str, Any]:
        """The invocation's arguments by parameter name, defaults applied."""
        if instance is None or self._is_static:
            return self._binder.bind(call.args, call.kwargs)
        if self._method_binder is None:
            self._method_binder = Binder(self.func, skip_first=True)
        return self._method_binder.bind(call.args, call.kwargs)

    def discover_request(self, call: Call, instance: Any) -> Request | None:
        """Find the request in the arguments, else by the extractor, else site defaults."""
        if (
            self._plain_parameters
            and self.request_extractor is None
            and (not call.kwargs or API_PARAMETERS.isdisjoint(call.kwargs))
        ):  # no argument can describe a request: skip binding them
            model = self.default_model
            return None if model is None else request_from_body({"model": model})
        bound = self.bind(call, instance)
        request = None
        if self.request_extractor is not None:
            found = self.request_extractor(bound)
            request = request_from_body(found) if isinstance(found, Mapping) else found
        if request is None:
            request = request_from_arguments(bound, default_model=self.default_model)
        return request

    def new_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """A Call for an invocation of this site made outside its drivers (batch planning)."""
        parent = current_call.get()
        operation = self.operation if parent is None else f"{parent.operation}/{self.operation}"
        return Call(self.name, operation, args, kwargs, parent, self.owns_retries)

    # -- drivers -------------------------------------------------------------------
    #
    # One algorithm, two drivers: ``run_sync`` and ``run_async`` are the same phases in
    # the same order (see prismq_llmtools.aspect); they differ only in how they wait
    # (sleep or await) and call the function. Hooks never wait themselves, so everything
    # between the waits is shared (``_failed_attempt``, ``_defer``, ``_complete``).

    def run_sync(self, wrapped: Any, instance: Any, /, *args: Any, **kwargs: Any) -> Any:
        """One invocation of a sync function through every aspect."""
        if not _boundary.ready and "openai._base_client" in sys.modules:
            _boundary.maybe_instrument()
        hooks = self._hooks  # kept for the whole call, whatever settings change meanwhile
        clock = self.clock
        parent = current_call.get()
        call = Call(
            self.name,
            self.operation if parent is None else f"{parent.operation}/{self.operation}",
            args,
            kwargs,
            parent,
            self.owns_retries,
        )
        call.started = clock.now()
        if instance is not None:
            call.instance = instance
        token = current_call.set(call)
        result: Any = None
        logging_on: bool | None = None  # asked once per call (not for free)
        try:
            if self._finds_request or (kwargs and self._needs_request):
                call.request = self.discover_request(call, instance)
            hit: CacheHit | Pending | None = None
            if hooks.enter:
                for enter in hooks.enter:
                    hit = enter(call)
                    while isinstance(hit, Pending):  # single flight: an identical call is running
                        wait_for_futures((hit.future,))
                        hit = enter(call)
                    if hit is not None:
                        result = hit.value
                        break
            if hit is None:
                if hooks.reserve:  # (here and below: an empty loop costs more than a test)
                    for reserve in hooks.reserve:
                        reserve(call)
                while True:  # one attempt per turn
                    call.attempts += 1
                    if hooks.before_attempt:
                        try:
                            for before in hooks.before_attempt:
                                wait = before(call)
                                while wait > 0:
                                    call.wait_s += wait
                                    clock.sleep(wait)
                                    wait = before(call)
                        except BaseException as exc:  # a refusal, or interrupted waiting
                            self._interrupted(call, hooks, exc)
                            raise
                    started = clock.now()
                    try:  # call.args/kwargs: an aspect may have rewritten them (truncation)
                        result = wrapped(*call.args, **call.kwargs)
                    except Exception as exc:
                        delay = self._failed_attempt(call, hooks, exc, clock.now() - started)
                        if delay is None:
                            raise
                        if delay > 0:
                            clock.sleep(delay)
                        continue
                    except BaseException as exc:  # cancelled or interrupted: no retry
                        self._interrupted(call, hooks, exc)
                        raise
                    if hooks.after_attempt:
                        for after in hooks.after_attempt:
                            after(call, None)
                    if hooks.retry is not None:
                        logging_on = _logging_state.is_configured
                        if logging_on:
                            _emit_attempt(call, clock.now() - started, None)
                    break
            call.outcome = "ok"
            return result
        except BaseException as exc:
            call.outcome = "error"
            call.error = exc
            raise
        finally:
            current_call.reset(token)
            if type(result).__module__ == "builtins" or not self._defer(call, hooks, result):
                self._complete(call, hooks, result, instance, logging_on)

    async def run_async(self, wrapped: Any, instance: Any, /, *args: Any, **kwargs: Any) -> Any:
        """One invocation of an async function through every aspect (see ``run_sync``)."""
        if not _boundary.ready and "openai._base_client" in sys.modules:
            _boundary.maybe_instrument()
        hooks = self._hooks
        clock = self.clock
        parent = current_call.get()
        call = Call(
            self.name,
            self.operation if parent is None else f"{parent.operation}/{self.operation}",
            args,
            kwargs,
            parent,
            self.owns_retries,
        )
        call.started = clock.now()
        if instance is not None:
            call.instance = instance
        token = current_call.set(call)
        result: Any = None
        logging_on: bool | None = None  # asked once per call (not for free)
        try:
            if self._finds_request or (kwargs and self._needs_request):
                call.request = self.discover_request(call, instance)
            hit: CacheHit | Pending | None = None
            if hooks.enter:
                for enter in hooks.enter:
                    hit = enter(call)
                    while isinstance(hit, Pending):
                        await asyncio.wait((asyncio.wrap_future(hit.future),))
                        hit = enter(call)
                    if hit is not None:
                        result = hit.value
                        break
            if hit is None:
                if hooks.reserve:
                    for reserve in hooks.reserve:
                        reserve(call)
                while True:
                    call.attempts += 1
                    if hooks.before_attempt:
                        try:
                            for before in hooks.before_attempt:
                                wait = before(call)
                                while wait > 0:
                                    call.wait_s += wait
                                    await clock.asleep(wait)
                                    wait = before(call)
                        except BaseException as exc:  # a refusal, or interrupted waiting
                            self._interrupted(call, hooks, exc)
                            raise
                    started = clock.now()
                    try:
                        result = await wrapped(*call.args, **call.kwargs)
                    except Exception as exc:
                        delay = self._failed_attempt(call, hooks, exc, clock.now() - started)
                        if delay is None:
                            raise
                        if delay > 0:
                            await clock.asleep(delay)
                        continue
                    except BaseException as exc:  # cancelled or interrupted: no retry
                        self._interrupted(call, hooks, exc)
                        raise
                    if hooks.after_attempt:
                        for after in hooks.after_attempt:
                            after(call, None)
                    if hooks.retry is not None:
                        logging_on = _logging_state.is_configured
                        if logging_on:
                            _emit_attempt(call, clock.now() - started, None)
                    break
            call.outcome = "ok"
            return result
        except BaseException as exc:
            call.outcome = "error"
            call.error = exc
            raise
        finally:
            current_call.reset(token)
            if type(result).__module__ == "builtins" or not self._defer(call, hooks, result):
                self._complete(call, hooks, result, instance, logging_on)

    def _interrupted(self, call: Call, hooks: _Hooks, exc: BaseException) -> None:
        """Tell the attempt's aspects it ended with ``exc`` (every attempt begun hears how
        it ended, so an admission made for it is never left in flight)."""
        for after in hooks.after_attempt:
            after(call, exc)

    def _failed_attempt(
        self, call: Call, hooks: _Hooks, exc: Exception, duration_s: float
    ) -> float | None:
        """Feedback and the retry decision after a failed attempt: a wait, or None to raise."""
        for after in hooks.after_attempt:
            after(call, exc)
        retry = hooks.retry
        if retry is None:
            return None
        delay = retry.retry_delay(call, exc)
        if structlog.is_configured():
            _emit_attempt(call, duration_s, exc)
        if delay is None:
            return None
        call.retries += 1
        call.wait_s += delay
        events.emit(
            call,
            events.RETRY,
            level="warning",
            attempt=call.attempts,
            wait_s=round(delay, 6),
            error_type=type(exc).__name__,
            status_code=getattr(exc, "status_code", None),
        )
        return delay

    def _defer(self, call: Call, hooks: _Hooks, result: Any) -> bool:
        """Whether the call ends later, when the stream it returned ends."""
        if call.outcome != "ok":
            return False
        state = _pending_stream_state(result)
        instance = call.instance
        return state is not None and bool(
            state.on_done(lambda: self._complete(call, hooks, result, instance))
        )

    def _complete(
        self,
        call: Call,
        hooks: _Hooks,
        result: Any,
        instance: Any,
        logging_on: bool | None = None,
    ) -> None:
        self.calls += 1
        outcome = call.outcome
        if outcome == "error":
            self.errors += 1
        if logging_on is None:
            logging_on = _logging_state.is_configured
        request = call.request
        if request is None and logging_on:
            request = call.request = self.discover_request(call, instance)
        if call.usage_source is None and (
            request is not None
            or call.observed_requests
            or type(result).__module__ != "builtins"
            or type(result) is dict  # a response as a dict (with ``usage``)
        ):  # else nothing could carry usage: skip the call
            resolve_usage(call, result)
        if call.usage is not None:
            policy = self.cost_policy
            cost_call(call, unknown=policy.settings.unknown_price if policy else "estimate")
        if hooks.settle:  # (an empty loop costs more than the test)
            for settle in hooks.settle:
                settle(call)
        if hooks.leave and outcome == "ok":
            for leave in hooks.leave:
                leave(call, result)
        if hooks.finish:
            for finish in hooks.finish:
                finish(call)
        call.duration_s = self.clock.now() - call.started
        if call.parent is not None:
            call.roll_up_into_parent()
        if logging_on:
            if self.log_content:
                events.emit_call(call, **_content_fields(call, result))
            else:
                events.emit_call(call)

    # -- introspection -------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The site's effective settings, by aspect."""
        view: dict[str, Any] = {
            "name": self.name,
            "operation": self.operation,
            "model": self.default_model,
        }
        for aspect in self.aspects:
            view[aspect.kind] = aspect.settings_view()
        return view

    def stats(self) -> dict[str, Any]:
        """Live statistics of the site: its calls and errors, and each aspect's own view
        (bucket levels, budget use, cache hits, ...)."""
        view: dict[str, Any] = {"calls": self.calls, "errors": self.errors}
        for aspect in self.aspects:
            own = aspect.stats_view()
            if own:
                view[aspect.kind] = own
        return view

    def __repr__(self) -> str:
        kinds = ", ".join(a.kind for a in self.aspects)
        return f"<site {self.name} [{kinds}]>"


class _Boundary:
    """Installs the openai client instrumentation once openai has been imported by anyone.

    Checked at each call until installed (a dict lookup), so importing prismq_llmtools
    or decorating a function never imports openai itself.
    """

    __slots__ = ("ready",)

    def __init__(self) -> None:
        self.ready = False

    def maybe_instrument(self) -> None:
        from prismq_llmtools.openai import boundary

        if boundary.auto_instrument:
            boundary.instrument()
        self.ready = True


_boundary = _Boundary()


def _pending_stream_state(result: Any) -> Any:
    streams = sys.modules.get("prismq_llmtools.openai.streams")
    if streams is None:
        return None
    if type(result) in (streams.ObservedStream, streams.ObservedAsyncStream):
        return result._self_state
    return None


def _content_fields(call: Call, result: Any) -> dict[str, Any]:
    """Prompt and completion text, for sites that opted in with ``log_content``."""
    fields: dict[str, Any] = {}
    body = call.request.body if call.request is not None else {}
    for key in ("messages", "input", "prompt", "instructions"):
        if key in body:
            fields["gen_ai.prompt"] = json.dumps(body[key], default=str, ensure_ascii=False)
            break
    if isinstance(result, str):
        fields["gen_ai.completion"] = result
    return fields


def _emit_attempt(call: Call, duration_s: float, error: BaseException | None) -> None:
    events.emit(
        call,
        events.ATTEMPT,
        level="info" if error is None else "warning",
        attempt=call.attempts,
        outcome="ok" if error is None else "error",
        error_type=type(error).__name__ if error is not None else None,
        status_code=getattr(error, "status_code", None),
        duration_s=round(duration_s, 6),
        possibly_billed=call.possibly_billed or None,
    )
