"""The decorated function itself: a wrapt proxy of the function whose calls run through its
:class:`~prismq_llmtools.site.core.SiteCore` and one of the two drivers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import wrapt

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.core import SiteCore
from prismq_llmtools.site.drivers import run_async, run_sync
from prismq_llmtools.site.handle import SiteHandle

__all__ = ["Site", "core_of", "is_site", "provide_batches", "site_for"]


BatchRunner = Callable[..., Any]
"""Runs ``f.batch(items, **options)``: called as ``runner(function, core, items, **options)``."""

_batch_runners: list[tuple[BatchRunner, BatchRunner]] = []


def provide_batches(run: BatchRunner, arun: BatchRunner) -> None:
    """Give every site ``.batch`` (``run``) and ``.abatch`` (``arun``, a coroutine function).

    The batch package provides them when it is imported (``import prismq_llmtools`` does),
    so that the site, which knows nothing of batches, need not import it.
    """
    _batch_runners[:] = [(run, arun)]


def _runners() -> tuple[BatchRunner, BatchRunner]:
    if not _batch_runners:  # importing any part of prismq_llmtools imports the batch package
        raise RuntimeError("prismq_llmtools.batch was not imported: batches are unavailable")
    return _batch_runners[0]


class _BoundSite(wrapt.BoundFunctionWrapper[..., Any]):
    """A decorated method, bound to its instance."""

    @property
    def llm(self) -> SiteHandle:
        """The site's name, settings, statistics and runtime configuration."""
        handle: SiteHandle = self._self_parent._self_handle
        return handle

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the method once per item, concurrently; answers in input order."""
        return _runners()[0](self, self._self_parent._self_core, items, **options)

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch`."""
        return await _runners()[1](self, self._self_parent._self_core, items, **options)


class Site(wrapt.FunctionWrapper[..., Any]):
    """A decorated function: calls run through its site core; ``.llm`` is its handle."""

    __bound_function_wrapper__ = _BoundSite

    def __init__(self, wrapped: Any, core: SiteCore) -> None:
        # wrapt calls ``wrapper(wrapped, instance, args, kwargs)``: the driver itself.
        wrapper = functools.partial(run_async if core.is_async else run_sync, core)
        super().__init__(wrapped, wrapper)
        self._self_core = core
        self._self_handle = SiteHandle(core)

    @property
    def llm(self) -> SiteHandle:
        """The site's name, settings, statistics and runtime configuration."""
        handle: SiteHandle = self._self_handle
        return handle

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the function once per item, concurrently; answers in input order.

        Each item is the argument, a tuple of arguments, or a dict of keyword arguments.
        See :func:`prismq_llmtools.batch.run_batch` for the options.
        """
        return _runners()[0](self, self._self_core, items, **options)

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch` (async functions run as tasks)."""
        return await _runners()[1](self, self._self_core, items, **options)


def is_site(func: Any) -> bool:
    """Whether ``func`` is a function or bound method decorated by prismq_llmtools."""
    return isinstance(func, Site | _BoundSite)


def core_of(func: Any) -> SiteCore:
    """The site core behind a decorated function or bound method (for our own modules)."""
    if isinstance(func, _BoundSite):
        func = func._self_parent
    if not isinstance(func, Site):
        raise ConfigurationError(f"{func!r} is not decorated by prismq_llmtools")
    core: SiteCore = func._self_core
    return core


def site_for(func: Any, *, name: str | None = None) -> Site:
    """Return the site of ``func``, creating it when ``func`` is not decorated yet."""
    if isinstance(func, Site):
        core = core_of(func)
        if name is not None and name != core.name:
            core.set_name(name)
        return func
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise ConfigurationError(f"cannot decorate {func!r}: it is not callable")
    return Site(func, SiteCore(func, name=name))
