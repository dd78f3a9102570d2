"""The call site: ONE wrapt wrapper per decorated function, running every aspect in order.

Each decorator of ours adds an aspect to the same :class:`Site`, so stacking six
decorators costs one wrapper and one :class:`~prismq_llmtools.call.Call` per invocation,
and the phase order (see :mod:`prismq_llmtools.aspects`) never depends on stacking order.
The algorithm is a generator that yields what it needs done (wait, or run the function);
a sync and an async driver carry that out. The sync driver lets the generator call the
function itself, so a call that never waits passes through it without a single yield.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from typing import Any, cast

import structlog
import wrapt

from prismq_llmtools import events
from prismq_llmtools._binding import Binder
from prismq_llmtools.aspects import Aspect, CacheHit, Pending
from prismq_llmtools.call import Call, Request, current_call
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.observe import resolve_usage
from prismq_llmtools.pricing import cost_call
from prismq_llmtools.request import API_PARAMETERS, request_from_arguments, request_from_body

__all__ = ["Site", "SiteCore", "site_for"]

RequestExtractor = Callable[[dict[str, Any]], "Request | Mapping[str, Any] | None"]
"""Builds the request from the bound arguments: a :class:`Request`, a JSON body, or None."""


class _Run:
    """Action: run the wrapped function once."""

    __slots__ = ()


_RUN = _Run()
_Flow = Generator[object, Any, Any]


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
            return tuple(getattr(aspect, name) for aspect, names in active if name in names)

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

    def _rebuild(self) -> None:
        self._hooks = _Hooks(self.aspects)
        self.owns_retries = self._hooks.retry is not None
        self._needs_request = self.request_extractor is not None or any(
            a.needs_request for a in self.aspects
        )
        self._arguments_may_name_request = (
            not self._plain_parameters or self.request_extractor is not None
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
        parent = current_call.get()
        operation = self.operation if parent is None else f"{parent.operation}/{self.operation}"
        return Call(self.name, operation, args, kwargs, parent, self.owns_retries)

    def flow(
        self,
        call: Call,
        instance: Any,
        run: Callable[..., Any] | None = None,
        returned: list[Any] | None = None,
    ) -> _Flow:
        """The algorithm of one invocation; yields a wait in seconds, ``Pending`` or ``_RUN``.

        With ``run`` (the sync driver) the flow calls the function itself and appends its
        result to ``returned``; without it (async), it yields ``_RUN`` and is sent the result.
        """
        hooks = self._hooks
        now = self.clock.now
        token = current_call.set(call)
        call.started = now()
        if instance is not None:
            call.instance = instance
        result: Any = None
        try:
            if self._needs_request and (
                call.kwargs or self._arguments_may_name_request or self.default_model is not None
            ):  # else the request is None: no argument or default can describe one
                call.request = self.discover_request(call, instance)
            hit: CacheHit | Pending | None = None
            for enter in hooks.enter:
                hit = enter(call)
                while isinstance(hit, Pending):  # single flight: an identical call is running
                    yield hit
                    hit = enter(call)
                if hit is not None:
                    result = hit.value
                    break
            if hit is None:
                for reserve in hooks.reserve:
                    reserve(call)
                while True:  # one attempt per turn
                    call.attempts += 1
                    for before in hooks.before_attempt:
                        wait = before(call)
                        while wait > 0:
                            call.wait_s += wait
                            yield wait
                            wait = before(call)
                    started = now()
                    try:  # call.args/kwargs: an aspect may have rewritten them (truncation)
                        if run is None:
                            result = yield _RUN
                        else:
                            result = run(*call.args, **call.kwargs)
                    except Exception as exc:
                        delay = self._failed_attempt(call, hooks, exc, now() - started)
                        if delay is None:
                            raise
                        if delay > 0:
                            yield delay
                        continue
                    for after in hooks.after_attempt:
                        after(call, None)
                    if hooks.retry is not None and structlog.is_configured():
                        _emit_attempt(call, now() - started, None)
                    break
            call.outcome = "ok"
            if returned is not None:
                returned.append(result)
            return result
        except BaseException as exc:
            call.outcome = "error"
            call.error = exc
            raise
        finally:
            current_call.reset(token)
            if call.outcome == "ok" and (
                call._extra is not None
                # As when the rate limiter's admission lived in ``call.extra``: a stream
                # returned by an admitted call ends the call when the stream ends.
                or (call.admission is not None and type(result).__module__ != "builtins")
            ):
                self._finish_maybe_later(call, hooks, result, instance)
            else:
                self._complete(call, hooks, result, instance)

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

    def _finish_maybe_later(self, call: Call, hooks: _Hooks, result: Any, instance: Any) -> None:
        state = _pending_stream_state(result)
        if state is not None and state.on_done(
            lambda: self._complete(call, hooks, result, instance)
        ):
            return  # the function returned a stream: the Call ends when the stream does
        self._complete(call, hooks, result, instance)

    def _complete(self, call: Call, hooks: _Hooks, result: Any, instance: Any) -> None:
        self.calls += 1
        if call.outcome == "error":
            self.errors += 1
        logging_on = structlog.is_configured()
        if call.request is None and logging_on:
            call.request = self.discover_request(call, instance)
        if call.usage_source is None and (
            call.request is not None
            or call.observed_requests
            or call._extra is not None
            or type(result).__module__ != "builtins"
            # As when the rate limiter kept its admission in ``call.extra``: the result of
            # an admitted call is read even when it is a plain dict (with ``usage``).
            or (call.admission is not None and type(result) is dict)
        ):  # else nothing could carry usage: skip the call
            resolve_usage(call, result)
        if call.usage is not None:
            policy = self.cost_policy
            cost_call(call, unknown=policy.settings.unknown_price if policy else "estimate")
        for settle in hooks.settle:
            settle(call)
        if call.outcome == "ok":
            for leave in hooks.leave:
                leave(call, result)
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

    # -- drivers -------------------------------------------------------------------

    def run_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _boundary.ready and "openai._base_client" in sys.modules:
            _boundary.maybe_instrument()
        call = self.new_call(args, kwargs)
        # The flow runs the function itself and hands its result over in a list: a for
        # loop spares raising StopIteration, a good share of the cost of a call.
        returned: list[Any] = []
        for action in self.flow(call, instance, wrapped, returned):
            if type(action) is Pending:
                wait_for_futures((action.future,))
            else:
                self.clock.sleep(cast(float, action))
        return returned[0]

    async def run_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _boundary.ready and "openai._base_client" in sys.modules:
            _boundary.maybe_instrument()
        call = self.new_call(args, kwargs)
        flow = self.flow(call, instance)
        try:
            action = next(flow)
            while True:
                if action is _RUN:
                    try:
                        value = await wrapped(*call.args, **call.kwargs)
                    except BaseException as exc:
                        action = flow.throw(exc)
                        continue
                    action = flow.send(value)
                else:
                    if type(action) is Pending:
                        await asyncio.wait((asyncio.wrap_future(action.future),))
                    else:
                        await self.clock.asleep(cast(float, action))
                    action = flow.send(None)
        except StopIteration as stop:
            return stop.value

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


def events_wanted() -> bool:
    return structlog.is_configured()


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


class _BoundSite(wrapt.BoundFunctionWrapper[..., Any]):
    @property
    def llm(self) -> SiteCore:
        core: SiteCore = self._self_parent._self_core
        return core

    # -- batches: implemented in prismq_llmtools.batch ---------------------------------

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the method once per item, concurrently; answers in input order."""
        from prismq_llmtools.batch import run_batch

        return run_batch(self, self.llm, items, **options)

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch`."""
        from prismq_llmtools.batch import run_batch_async

        return await run_batch_async(self, self.llm, items, **options)


class Site(wrapt.FunctionWrapper[..., Any]):
    """A decorated function: calls run through its :class:`SiteCore`, reachable as ``.llm``."""

    __bound_function_wrapper__ = _BoundSite

    def __init__(self, wrapped: Any, core: SiteCore) -> None:
        super().__init__(wrapped, core.run_async if core.is_async else core.run_sync)
        self._self_core = core

    @property
    def llm(self) -> SiteCore:
        """The site's settings, statistics and configuration."""
        core: SiteCore = self._self_core
        return core

    # -- batches: implemented in prismq_llmtools.batch ---------------------------------

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the function once per item, concurrently; answers in input order.

        Each item is the argument, a tuple of arguments, or a dict of keyword arguments.
        See :func:`prismq_llmtools.batch.run_batch` for the options.
        """
        from prismq_llmtools.batch import run_batch

        return run_batch(self, self._self_core, items, **options)

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch` (async functions run as tasks)."""
        from prismq_llmtools.batch import run_batch_async

        return await run_batch_async(self, self._self_core, items, **options)


def site_for(func: Any, *, name: str | None = None) -> Site:
    """Return the site of ``func``, creating it when ``func`` is not decorated yet."""
    if isinstance(func, Site):
        if name is not None and name != func.llm.name:
            func.llm.set_name(name)
        return func
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise ConfigurationError(f"cannot decorate {func!r}: it is not callable")
    return Site(func, SiteCore(func, name=name))
