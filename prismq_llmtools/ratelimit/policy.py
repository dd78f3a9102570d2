"""The settings of ``@rate_limited``: the limits of a key and how they are kept, validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.openai.headers import RETRY_AFTER_CAP_S
from prismq_llmtools.settings.rules import (
    Choice,
    Flag,
    Integer,
    Number,
    Text,
    check_fields,
    register_keys,
)
from prismq_llmtools.stores import check_store_url, display_url
from prismq_llmtools.stores.bucket import BucketSpec

__all__ = ["Count", "RateLimit", "Reconcile", "StoreErrorPolicy"]

Reconcile = Literal["server", "refund"]
Count = Literal["max", "tokens", "chars"]
StoreErrorPolicy = Literal["raise", "allow"]
_PERIODS = (("rpm", "requests", 60.0), ("tpm", "tokens", 60.0))
_DAILY = (("rpd", "requests_day", 86_400.0), ("tpd", "tokens_day", 86_400.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """How ``@rate_limited`` limits a key.

    Args:
        rpm, tpm: requests and tokens per minute (the account's limits for the model).
        rpd, tpd: requests and tokens per day (optional).
        burst: fraction of each bucket that may be spent at once; the rest is a margin that
            keeps a server counting slightly differently (timing, its own token estimate)
            from answering 429. 0.9 held the simulator at 0 x 429 (BENCHMARKS.md). Once the
            key has learned the server's accounting from its headers, the margin narrows to
            the uncertainty left (never above ``1 - burst``; docs/ratelimit.md).
        headroom: run at this fraction of the limits (e.g. 0.9 leaves 10% to others).
        timeout_s: longest wait for admission; beyond it ``RateLimitTimeout`` (raised as
            soon as the wait is known). ``None``: wait as long as needed.
        count: how a prompt is counted at admission: ``tokens`` (tiktoken, OpenAI's chat
            rules), ``chars`` (OpenAI's admission estimate, characters / 4), or ``max``
            (the default: the larger, so neither accounting finds us over the limit);
            the completion cap is added to each.
        reconcile: after a call, ``server`` keeps the admission charge, as OpenAI does, and
            follows the server's ``x-ratelimit-*`` headers; ``refund`` also gives back the
            unused part of the completion cap (for servers that count actual usage).
        follow_headers: correct the buckets from the server's headers, learn from them how
            the server charges (docs/ratelimit.md), and pause on 429.
        retry_after_cap_s: the longest pause a 429's Retry-After may put on the key (the
            same setting, and default, as ``@retried``'s); a 429 asking for longer pauses
            nothing, and ``@retried`` gives up on it at once.
        key: the bucket key (default: the request's model); sites sharing it share buckets.
        store: ``memory`` (default), ``sqlite:///path`` or ``redis://host:port/db``.
        on_store_error: ``raise`` (fail closed, :class:`StateStoreError`) or ``allow``
            (fail open: the call proceeds unlimited, with an ``llm.store.error`` warning).
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    burst: float = 0.9
    headroom: float = 1.0
    timeout_s: float | None = None
    count: Count = "max"
    reconcile: Reconcile = "server"
    follow_headers: bool = True
    retry_after_cap_s: float = RETRY_AFTER_CAP_S
    key: str | None = None
    store: str | None = None
    on_store_error: StoreErrorPolicy = "raise"

    def __post_init__(self) -> None:
        check_fields(self, "rate_limited")
        limits = [getattr(self, name) for name, _, _ in (*_PERIODS, *_DAILY)]
        if all(value is None for value in limits):
            raise ConfigurationError("@rate_limited needs at least one of rpm, tpm, rpd, tpd")

    def specs(self) -> tuple[BucketSpec, ...]:
        """The buckets these limits describe, headroom and burst applied."""
        specs = []
        for field_name, bucket, period_s in (*_PERIODS, *_DAILY):
            limit = getattr(self, field_name)
            if limit is not None:
                capacity = limit * self.headroom
                specs.append(
                    BucketSpec(
                        name=bucket,
                        capacity=capacity,
                        burst=capacity * self.burst,
                        rate_per_s=capacity / period_s,
                    )
                )
        return tuple(specs)


register_keys(
    "rate_limited",
    {
        **{name: Integer(minimum=1, optional=True) for name, _, _ in (*_PERIODS, *_DAILY)},
        "burst": Number(exclusive=True, maximum=1.0),
        "headroom": Number(exclusive=True, maximum=1.0),
        "timeout_s": Number(optional=True),
        "count": Choice(values=("max", "tokens", "chars")),
        "reconcile": Choice(values=("server", "refund")),
        "follow_headers": Flag(),
        "retry_after_cap_s": Number(),
        "key": Text(optional=True),
        "store": Text(optional=True, validate=check_store_url, display=display_url),
        "on_store_error": Choice(values=("raise", "allow")),
    },
)
