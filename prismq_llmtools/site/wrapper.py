"""The decorated function itself: a wrapt proxy of the function whose calls run through its
:class:`~prismq_llmtools.site.core.SiteCore` and one of the two drivers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import wrapt

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.core import SiteCore
from prismq_llmtools.site.drivers import run_async, run_sync

__all__ = ["Site", "site_for"]


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
        if core.is_async:

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return run_async(core, wrapped, instance, args, kwargs)
        else:

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return run_sync(core, wrapped, instance, args, kwargs)

        super().__init__(wrapped, wrapper)
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
