"""``@rate_limited``: requests and tokens per minute (and per day), shared by key.

Each attempt of a call is admitted by the key's buckets before it runs: one request, and
its prompt tokens plus its completion cap (as OpenAI charges it). The site's driver sleeps
(sync) or awaits (async) the computed wait; nobody polls. What the server answers then
corrects the buckets (see :mod:`prismq_llmtools.ratelimit.feedback`); the aspect lives in
:mod:`prismq_llmtools.ratelimit.aspect`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prismq_llmtools.call import Endpoint
from prismq_llmtools.clock import Clock
from prismq_llmtools.openai.headers import RETRY_AFTER_CAP_S
from prismq_llmtools.ratelimit.aspect import BucketKeyFunction, RateLimitAspect
from prismq_llmtools.ratelimit.policy import Count, RateLimit, Reconcile, StoreErrorPolicy
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.stores import StateRegistry, default_registry

__all__ = ["RateLimit", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")


def rate_limited(
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    tpd: int | None = None,
    burst: float = 0.9,
    headroom: float = 1.0,
    timeout_s: float | None = None,
    count: Count = "max",
    reconcile: Reconcile = "server",
    follow_headers: bool = True,
    retry_after_cap_s: float = RETRY_AFTER_CAP_S,
    key: str | BucketKeyFunction | None = None,
    store: str | None = None,
    on_store_error: StoreErrorPolicy = "raise",
    registry: StateRegistry | None = None,
    clock: Clock | None = None,
    name: str | None = None,
    model: str | None = None,
    request: RequestExtractor | None = None,
    tokenizer: str | None = None,
    endpoint: Endpoint | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Hold the decorated function to requests/tokens per minute (and per day).

    Every attempt is charged one request and its prompt tokens plus completion cap before
    it runs; sync callers block and async callers await until every bucket of the key
    allows it, first come first served. A 429 pauses the key for its Retry-After (at most
    ``retry_after_cap_s``), and the server's ``x-ratelimit-*`` headers correct the buckets.
    A cache hit is never charged; a request that never reached the server is refunded.

    Args:
        rpm, tpm, rpd, tpd, burst, headroom, timeout_s, count, reconcile,
            follow_headers, retry_after_cap_s, store, on_store_error: see :class:`RateLimit`.
        key: the bucket key: a string, or ``Call -> str``; default the request's model.
        registry: where buckets live (default: the process's :data:`default_registry`).
        clock: the clock waits are slept on (tests pass a ``FakeClock``).
        name, model, request: the site's name, default model and request extractor.
        tokenizer: what the site's prompts are counted with: a tiktoken encoding
            (``"o200k_base"``), ``"server:URL"`` or ``"hf:PATH"`` (``docs/counting.md``).
        endpoint: the API the function calls (``"chat"``, ``"responses"``, ``"embeddings"``,
            ``"completions"``) when its arguments do not say (an ``input`` parameter).
    """

    def make() -> RateLimitAspect:
        limit = RateLimit(
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            tpd=tpd,
            burst=burst,
            headroom=headroom,
            timeout_s=timeout_s,
            count=count,
            reconcile=reconcile,
            follow_headers=follow_headers,
            retry_after_cap_s=retry_after_cap_s,
            key=None if callable(key) else key,
            store=store,
            on_store_error=on_store_error,
        )
        return RateLimitAspect(
            limit,
            key=key if callable(key) else None,
            registry=registry or default_registry,
            clock=clock,
        )

    return attach(
        make, name=name, model=model, request=request, tokenizer=tokenizer, endpoint=endpoint
    )
