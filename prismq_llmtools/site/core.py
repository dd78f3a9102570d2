"""The call site's core: everything a decorated function knows (its name, aspects, settings
and statistics).

Each decorator of ours adds an aspect to the same site (ONE wrapt wrapper per decorated
function: :class:`~prismq_llmtools.site.wrapper.Site`), so stacking six decorators costs one
wrapper and one :class:`~prismq_llmtools.call.Call` per invocation, and the phase order (see
:mod:`prismq_llmtools.aspect`) never depends on stacking order. Each invocation runs the one
algorithm of :mod:`prismq_llmtools.site.flow` through a driver of
:mod:`prismq_llmtools.site.drivers`.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prismq_llmtools import events
from prismq_llmtools.aspect import Aspect, UnknownPrice
from prismq_llmtools.call import Call, Endpoint, Request, StateKey, current_call
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.openai.request import API_PARAMETERS, request_from_arguments, request_from_body
from prismq_llmtools.settings import (
    SITE,
    check_site,
    forget_site,
    note_site,
    report_unmatched,
    settings,
)
from prismq_llmtools.settings.rules import check_value, owners_of, unknown_key
from prismq_llmtools.site.binding import Binder
from prismq_llmtools.site.hooks import Hooks

__all__ = ["RequestExtractor", "SiteCore"]

RequestExtractor = Callable[[dict[str, Any]], "Request | Mapping[str, Any] | None"]
"""Builds the request from the bound arguments: a :class:`Request`, a JSON body, or None."""

BOUND_ARGUMENTS: StateKey[dict[str, Any]] = StateKey("site.bound_arguments")
"""An invocation's arguments by parameter name, bound once."""


def _module_name(module: str) -> str:
    """The module's importable name: a module run with ``python -m pkg.mod`` is ``__main__``
    in ``sys.modules``, and ``pkg.mod`` by its spec. A script run directly stays ``__main__``."""
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = getattr(spec, "name", None)
        if isinstance(name, str) and name:
            return name
    return module


class SiteCore:
    """Everything a call site knows: its name, its aspects, its defaults and its statistics.

    Private to the package: users see it through ``f.llm``
    (:class:`~prismq_llmtools.site.handle.SiteHandle`), our modules through ``core_of(f)``.
    """

    def __init__(self, func: Any, *, name: str | None = None) -> None:
        raw = func.__func__ if isinstance(func, classmethod | staticmethod) else func
        self.func = raw
        self.name: str = name or f"{_module_name(raw.__module__)}.{raw.__qualname__}"
        note_site(self.name)
        self._first_call_checked = False
        self.operation: str = self.name
        self.is_async = inspect.iscoroutinefunction(raw)
        self._is_static = isinstance(func, staticmethod)
        self._binder = Binder(raw)
        # No parameter names a request field: only **kwargs or the site's model can.
        self._plain_parameters = API_PARAMETERS.isdisjoint(self._binder.parameter_names)
        self._method_binder: Binder | None = None
        self.aspects: list[Aspect[Any]] = []
        self.default_model: str | None = None
        self._base_model: str | None = None
        self.tokenizer: str | None = None
        self._base_tokenizer: str | None = None
        self.endpoint: Endpoint | None = None
        self._base_endpoint: Endpoint | None = None
        self._base_operation: str | None = None
        self._runtime: list[dict[str, Any]] = []
        self.request_extractor: RequestExtractor | None = None
        self.log_content = False
        self.clock: Clock = system_clock
        self.owns_retries = False
        self.calls = 0
        self.errors = 0
        self._rebuild_lock = threading.Lock()
        self._rebuild()

    # -- configuration -------------------------------------------------------------

    def add(self, aspect: Aspect[Any]) -> None:
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
        forget_site(self.name)
        note_site(name)
        self.name = name
        self._apply_settings()

    def set_defaults(
        self,
        *,
        model: str | None = None,
        operation: str | None = None,
        request: RequestExtractor | None = None,
        tokenizer: str | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        """Site-level defaults given by a decorator's arguments (checked by the decorator)."""
        if request is not None:
            self.request_extractor = request
        if model is not None:
            self._base_model = self.default_model = model
        if tokenizer is not None:
            self._base_tokenizer = tokenizer
        if endpoint is not None:
            self._base_endpoint = endpoint
        if operation is not None:
            self._base_operation = self.operation = operation
        self._apply_settings()

    def _apply_settings(self) -> None:
        overrides = settings().for_site(self.name)
        for layer in self._runtime:
            overrides.update(layer)
        self.default_model = overrides.get("model", self._base_model)
        self.tokenizer = overrides.get("tokenizer", self._base_tokenizer)
        self.endpoint = overrides.get("endpoint", self._base_endpoint)
        self.log_content = overrides.get("log_content", False)
        self.operation = overrides.get("operation") or self._base_operation or self.name
        for aspect in self.aspects:
            aspect.apply(overrides, self.name)
        self._rebuild()  # settings decide which hooks are active

    def configure(self, **changes: Any) -> None:
        """Change settings of this site at run time, until the process ends."""
        layer = self._checked_layer(changes, "f.llm.configure()")
        self._runtime.append(layer)
        self._apply_settings()

    @contextmanager
    def override(self, **changes: Any) -> Iterator[SiteCore]:
        """Change settings of this site inside a ``with`` block (tests, operations)."""
        layer = self._checked_layer(changes, "f.llm.override()")
        self._runtime.append(layer)
        try:
            self._apply_settings()
            yield self
        finally:
            self._runtime.remove(layer)
            self._apply_settings()

    def runtime_settings(self) -> dict[str, Any]:
        """The settings changed at run time (``configure``, ``override``), merged."""
        merged: dict[str, Any] = {}
        for layer in self._runtime:
            merged.update(layer)
        return merged

    def adopt_runtime_settings(self, runtime: dict[str, Any]) -> None:
        """Take the runtime settings of this site in another process (a batch's driver), in
        place of this process's own."""
        if runtime == self.runtime_settings():
            return
        layer = self._checked_layer(runtime, "the batch driver's runtime settings")
        self._runtime = [layer] if layer else []
        self._apply_settings()

    def _checked_layer(self, changes: dict[str, Any], source: str) -> dict[str, Any]:
        """``changes`` checked by their keys' rules, for the decorators this site has."""
        kinds = {SITE, *(a.kind for a in self.aspects)}
        layer: dict[str, Any] = {}
        for key, value in changes.items():
            owners = owners_of(key)
            if not owners:
                raise ConfigurationError(f"site {self.name!r}: {unknown_key(key)} ({source})")
            if not owners & kinds:
                needed = " or ".join(f"@{o}" for o in sorted(owners))
                raise ConfigurationError(
                    f"site {self.name!r}: {key} ({source}) is a setting of {needed}, "
                    "which this site does not have"
                )
            layer[key] = check_value(key, value, source=source, site=self.name)
        return layer

    def check_settings(self) -> None:
        """At the site's first call, when every decorator has joined it: refuse a key
        written for this site that none of its decorators understands, and report (once
        for all sites) settings naming no decorated site."""
        check_site(self.name, {a.kind for a in self.aspects})
        report_unmatched()
        self._first_call_checked = True

    def refresh_hooks(self) -> None:
        """Ask the aspects again which hooks are active (one changed its mind)."""
        self._rebuild()

    def _rebuild(self) -> None:
        with self._rebuild_lock:  # rebuilt from several threads: the last one sees all changes
            self.hooks = Hooks(self.aspects)
            self.owns_retries = self.hooks.retry is not None

    # -- per invocation ------------------------------------------------------------

    def bind(self, call: Call, instance: Any) -> dict[str, Any]:
        """The invocation's arguments by parameter name, defaults applied.

        Bound once per invocation (request discovery and the cache key both read them);
        readers must not change the dict.
        """
        if instance is call.instance:
            bound = call.get(BOUND_ARGUMENTS)
            if bound is None:
                bound = self._bind(call, instance)
                call.put(BOUND_ARGUMENTS, bound)
            return bound
        return self._bind(call, instance)

    def _bind(self, call: Call, instance: Any) -> dict[str, Any]:
        if instance is None or self._is_static:
            return self._binder.bind(call.args, call.kwargs)
        if self._method_binder is None:
            self._method_binder = Binder(self.func, skip_first=True)
        return self._method_binder.bind(call.args, call.kwargs)

    def attach_request(self, call: Call, hooks: Hooks) -> None:
        """Give ``call`` its request, found at once, or when first read where a cache lookup
        may answer without it (a hit nothing asks about never builds it).

        Always at once when the site's extractor finds it: user code, which may fail, and
        its failure fails the call whatever else the site does.
        """
        if hooks.enter and self.request_extractor is None:
            call.find_request_when_read(self._request_in_arguments)
            return
        request = self.discover_request(call, call.instance)
        if request is not None:  # (a Call's request is None until set)
            call.request = request

    def _request_in_arguments(self, call: Call) -> Request | None:
        return self.discover_request(call, call.instance)

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
            request = (
                request_from_body(found, self.endpoint) if isinstance(found, Mapping) else found
            )
        if request is None:
            request = request_from_arguments(
                bound, default_model=self.default_model, endpoint=self.endpoint
            )
        return request

    @property
    def unknown_price(self) -> UnknownPrice:
        """What costing does for a model with no known price (``@cost_tracked``'s setting)."""
        return self.hooks.unknown_price

    def absorb(self, call: Call, finished_at: float) -> None:
        """Count a call of this site that finished in another process (a batch worker's):
        the site's statistics, and each aspect's :meth:`~prismq_llmtools.aspect.Aspect.absorb`."""
        self.calls += 1
        if call.outcome == "error":
            self.errors += 1
        for aspect in self.aspects:
            aspect.absorb(call, finished_at)

    def new_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """A Call for an invocation of this site, nested under the current one (its operation
        path extends the parent's)."""
        if not self._first_call_checked:
            self.check_settings()
        parent = current_call.get()
        operation = self.operation if parent is None else f"{parent.operation}/{self.operation}"
        call = Call(self.name, operation, args, kwargs, parent, self.owns_retries)
        call.logged = events.enabled()
        if self.tokenizer is not None:
            call.tokenizer = self.tokenizer
        return call

    # -- introspection -------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The site's effective settings, by aspect."""
        view: dict[str, Any] = {
            "name": self.name,
            "operation": self.operation,
            "model": self.default_model,
            "tokenizer": self.tokenizer,
            "endpoint": self.endpoint,
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
