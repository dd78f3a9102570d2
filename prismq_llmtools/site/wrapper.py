"""The decorated function itself: a wrapt proxy of the function whose calls run through its
:class:`~prismq_llmtools.site.core.SiteCore`.

Kept apart from the core, which is compiled (see the README's "Speed"): it subclasses wrapt's
proxies and makes a class per site, which stay interpreted Python.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import wrapt

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.core import SiteCore

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
        run = core.run_async if core.is_async else core.run_sync

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return run(wrapped, instance, *args, **kwargs)  # wrapt's calling convention

        super().__init__(wrapped, wrapper)
        self._self_core = core
        # wrapt's own __call__ asks the wrapped function for ``__self__`` at every call (an
        # AttributeError, i.e. an exception, for a plain function: a third of the cost of a
        # call). The answer never changes, so it is asked once, here.
        instance = None
        if self._self_binding in ("function", "instancemethod", "classmethod", "callable"):
            instance = getattr(wrapped, "__self__", None)
        self._self_call = functools.partial(run, wrapped, instance)  # see _new_site

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
    return _new_site(func, SiteCore(func, name=name))


def _new_site(func: Any, core: SiteCore) -> Site:
    """A :class:`Site` of a class of its own, whose ``__call__`` is the site's driver.

    Reading an attribute of a wrapt proxy is slow (~0.15 us, a tenth of a bare site's
    cost), and so is a Python-level ``__call__``: the class's ``__call__`` is the driver
    itself, its function and instance bound in a ``functools.partial`` (which, having no
    ``__get__``, is called without the site).
    """

    class OwnSite(Site):
        __slots__ = ()

    OwnSite.__name__ = OwnSite.__qualname__ = "Site"
    site = OwnSite(func, core)
    OwnSite.__call__ = site._self_call  # type: ignore[method-assign]
    return site
