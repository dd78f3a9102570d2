"""The one way every decorator of ours attaches its aspect to a function's site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from prismq_llmtools.aspect import Aspect
from prismq_llmtools.site import export
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.site.wrapper import core_of, site_for

P = ParamSpec("P")
R = TypeVar("R")


def attach(
    aspect: Aspect[Any],
    *,
    name: str | None = None,
    model: str | None = None,
    operation: str | None = None,
    request: RequestExtractor | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """A decorator adding ``aspect`` to the decorated function's (possibly new) site.

    ``name``, ``model`` and ``request`` are site-level: the site's name, its default model,
    and a function building the request from the bound arguments.
    """

    def decorator(func: Callable[P, R]) -> LLMFunction[P, R]:
        site = site_for(func, name=name)
        core = core_of(site)
        core.set_defaults(model=model, operation=operation, request=request)
        core.add(aspect)
        export.register(core)
        return cast(LLMFunction[P, R], site)

    return decorator
