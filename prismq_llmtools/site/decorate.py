"""The one way every decorator of ours attaches its aspect to a function's site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from prismq_llmtools.aspect import Aspect
from prismq_llmtools.call import Endpoint
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.settings.rules import DECORATOR_ARGUMENT, SettingError, check_value
from prismq_llmtools.site import export
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.site.wrapper import core_of, site_for

P = ParamSpec("P")
R = TypeVar("R")


def attach(
    aspect: Aspect[Any] | Callable[[], Aspect[Any]],
    *,
    name: str | None = None,
    model: str | None = None,
    operation: str | None = None,
    request: RequestExtractor | None = None,
    tokenizer: str | None = None,
    endpoint: Endpoint | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """A decorator adding ``aspect`` to the decorated function's (possibly new) site.

    ``aspect`` may be a function making it: the decorator's arguments are then checked when
    the decorator meets its function, so that a bad one is an error naming the site.
    ``name``, ``model``, ``request``, ``tokenizer`` and ``endpoint`` are site-level: the
    site's name, its default model, a function building the request from the bound
    arguments, what its prompts are counted with, and the API it calls.
    """

    def decorator(func: Callable[P, R]) -> LLMFunction[P, R]:
        site = site_for(func, name=name)
        core = core_of(site)
        try:
            site_level = (
                ("model", model),
                ("operation", operation),
                ("tokenizer", tokenizer),
                ("endpoint", endpoint),
            )
            for key, value in site_level:
                check_value(key, value, source=DECORATOR_ARGUMENT, owner="site")
            made = aspect if isinstance(aspect, Aspect) else aspect()
        except SettingError as exc:
            raise exc.for_site(core.name) from None
        except ConfigurationError as exc:
            if type(exc) is not ConfigurationError:
                raise
            # arguments that do not go together (window_s without window_tokens)
            raise ConfigurationError(f"site {core.name!r}: {exc} ({DECORATOR_ARGUMENT}s)") from None
        core.set_defaults(
            model=model,
            operation=operation,
            request=request,
            tokenizer=tokenizer,
            endpoint=endpoint,
        )
        core.add(made)
        export.register(core)
        return cast(LLMFunction[P, R], site)

    return decorator
