"""``@rate_limited``: requests and tokens per minute (and per day), shared by key.

Each attempt of a call is admitted by the key's buckets before it runs: one request, and
its prompt tokens plus its completion cap (as OpenAI charges it). The site's driver sleeps
(sync) or awaits (async) the computed wait; nobody polls. What the server answers then
corrects the buckets (see :mod:`prismq_llmtools._ratelimit_feedback`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from prismq_llmtools import events
from prismq_llmtools._decorate import attach
from prismq_llmtools._ratelimit_feedback import Pending, feedback_for
from prismq_llmtools.aspects import Aspect
from prismq_llmtools.bucket import BucketSpec, Refusal
from prismq_llmtools.call import Call
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import (
    ConfigurationError,
    RateLimitTimeout,
    RequestTooLarge,
    StateStoreError,
)
from prismq_llmtools.settings import register_keys
from prismq_llmtools.stores import StateRegistry, StateStore, check_store_url, default_registry
from prismq_llmtools.types import LLMFunction

if TYPE_CHECKING:
    from prismq_llmtools._site import SiteCore

__all__ = ["RateLimit", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")

KeyFunction = Callable[[Call], str]
Reconcile = Literal["server", "refund"]
StoreErrorPolicy = Literal["raise", "allow"]

WAIT = "llm.ratelimit.wait"
PAUSE = "llm.ratelimit.pause"
CORRECTION = "llm.ratelimit.correction"
STORE_ERROR = "llm.store.error"

_TICKET_TTL_S = 900.0  # an admitted request unanswered for this long no longer counts in flight
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
            from answering 429. 0.9 held the simulator at 0 x 429 (see docs/ratelimit.md).
        headroom: run at this fraction of the limits (e.g. 0.9 leaves 10% to others).
        timeout_s: longest wait for admission; beyond it ``RateLimitTimeout`` (raised as
            soon as the wait is known). ``None``: wait as long as needed.
        reconcile: after a call, ``server`` keeps the admission charge, as OpenAI does, and
            follows the server's ``x-ratelimit-*`` headers; ``refund`` also gives back the
            unused part of the completion cap (for servers that count actual usage).
        follow_headers: correct the buckets from the server's headers and pause on 429.
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
    reconcile: Reconcile = "server"
    follow_headers: bool = True
    key: str | None = None
    store: str | None = None
    on_store_error: StoreErrorPolicy = "raise"

    def __post_init__(self) -> None:
        limits = [getattr(self, name) for name, _, _ in (*_PERIODS, *_DAILY)]
        if all(value is None for value in limits):
            raise ConfigurationError("@rate_limited needs at least one of rpm, tpm, rpd, tpd")
        for name, _, _ in (*_PERIODS, *_DAILY):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        for name in ("burst", "headroom"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 1:
                raise ConfigurationError(f"{name} must be in (0, 1], got {value!r}")
        if self.timeout_s is not None and (
            not isinstance(self.timeout_s, int | float) or self.timeout_s < 0
        ):
            raise ConfigurationError(f"timeout_s must be >= 0 or None, got {self.timeout_s!r}")
        if self.reconcile not in ("server", "refund"):
            raise ConfigurationError(
                f"reconcile must be 'server' or 'refund', got {self.reconcile!r}"
            )
        if self.on_store_error not in ("raise", "allow"):
            raise ConfigurationError(
                f"on_store_error must be 'raise' or 'allow', got {self.on_store_error!r}"
            )
        check_store_url(self.store)

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


register_keys("rate_limited", frozenset(RateLimit.__dataclass_fields__))


class RateLimitAspect(Aspect):
    """Admits each attempt through the key's buckets and feeds the server's answer back."""

    kind = "rate_limited"
    needs_request = True

    def __init__(
        self,
        limit: RateLimit,
        *,
        key: KeyFunction | None,
        registry: StateRegistry,
        clock: Clock | None,
    ) -> None:
        self.base = self.settings = limit
        self.registry = registry
        self.clock = clock
        self._key_function = key
        self._site: SiteCore | None = None
        self.configured()

    def configured(self) -> None:
        limit: RateLimit = self.settings
        self._specs = limit.specs()
        self._counts_tokens = any(s.name.startswith("tokens") for s in self._specs)
        self._declared: set[str] = set()
        self._store: StateStore | None = None

    def attach(self, site: Any) -> None:
        if self.clock is not None:
            site.clock = self.clock
        self._site = site

    # -- hooks -----------------------------------------------------------------------

    def before_attempt(self, call: Call) -> float:
        pending: Pending | None = call.extra.get("ratelimit")
        if pending is not None and pending.attempt == call.attempts and not pending.done:
            return self._recheck(call, pending)
        return self._admit(call)

    def after_attempt(self, call: Call, error: BaseException | None) -> None:
        pending: Pending | None = call.extra.get("ratelimit")
        if pending is None or pending.done or pending.attempt != call.attempts:
            return
        self._feedback(call, pending, error)

    def settle(self, call: Call) -> None:
        pending: Pending | None = call.extra.get("ratelimit")
        if pending is None:
            return
        if not pending.done:  # cancelled, or ended without an attempt finishing
            self._feedback(call, pending, call.error)
        limit: RateLimit = self.settings
        if limit.reconcile == "refund" and call.outcome == "ok" and call.usage is not None:
            used = call.usage.total_tokens
            refund = [
                max(0.0, cost - used) if spec.name.startswith("tokens") else 0.0
                for spec, cost in zip(self._specs, pending.ticket.costs, strict=True)
            ]
            if any(refund):
                self._guarded(
                    call,
                    lambda store: store.feedback(
                        pending.key, self._specs, pending.ticket, clock=self._clock(), refund=refund
                    ),
                )

    # -- admission -------------------------------------------------------------------

    def _admit(self, call: Call) -> float:
        limit: RateLimit = self.settings
        key = self._key(call)
        costs = self._costs(call)
        for spec, cost in zip(self._specs, costs, strict=True):
            if cost > spec.capacity:
                raise RequestTooLarge(
                    key=key, bucket=spec.name, requested=cost, capacity=spec.capacity
                )
        max_wait = math.inf if limit.timeout_s is None else float(limit.timeout_s)
        self._declare(call, key)
        ticket_id = f"{call.call_id}.{call.attempts}"
        result = self._guarded(
            call,
            lambda s: s.admit(
                key,
                self._specs,
                costs,
                clock=self._clock(),
                ticket_id=ticket_id,
                ttl_s=_TICKET_TTL_S,
                max_wait_s=max_wait,
            ),
        )
        if result is None:
            return 0.0
        if isinstance(result, Refusal):
            raise RateLimitTimeout(
                key=key, bucket=result.bucket, wait_s=result.wait_s, timeout_s=max_wait
            )
        now = self._now()
        pending = Pending(
            key=key,
            ticket=result,
            attempt=call.attempts,
            deadline=None if limit.timeout_s is None else now + max_wait,
            headers=call.rate_headers,
        )
        call.extra["ratelimit"] = pending
        wait = float(result.wait_s)
        if wait > 0:
            events.emit(call, WAIT, key=key, bucket=result.bucket, wait_s=round(wait, 6))
        return wait

    def _recheck(self, call: Call, pending: Pending) -> float:
        wait: float = (
            self._guarded(
                call,
                lambda s: s.wait_s(pending.key, self._specs, pending.ticket, clock=self._clock()),
            )
            or 0.0
        )
        if not wait:
            pending.headers = call.rate_headers
            return 0.0
        if pending.deadline is not None and self._now() + wait > pending.deadline + 1e-9:
            self._release(call, pending)
            limit: RateLimit = self.settings
            raise RateLimitTimeout(
                key=pending.key,
                bucket="pause",
                wait_s=wait,
                timeout_s=float(limit.timeout_s or 0.0),
            )
        return wait

    def _release(self, call: Call, pending: Pending) -> None:
        pending.done = True
        self._guarded(
            call,
            lambda s: s.feedback(
                pending.key,
                self._specs,
                pending.ticket,
                clock=self._clock(),
                refund=pending.ticket.costs,
            ),
        )

    # -- feedback --------------------------------------------------------------------

    def _feedback(self, call: Call, pending: Pending, error: BaseException | None) -> None:
        pending.done = True
        limit: RateLimit = self.settings
        plan = feedback_for(call, pending, error, self._specs, limit, follow=limit.follow_headers)
        deltas = self._guarded(
            call,
            lambda s: s.feedback(
                pending.key,
                self._specs,
                pending.ticket,
                clock=self._clock(),
                deficits=plan.deficits,
                refund=plan.refund,
                pause_s=plan.pause_s,
                follow_down=plan.follow_down,
            ),
        )
        if plan.pause_s > 0:
            events.emit(
                call, PAUSE, level="warning", key=pending.key, wait_s=round(plan.pause_s, 6)
            )
        for spec, delta, remaining in zip(self._specs, deltas or (), plan.remaining, strict=False):
            if remaining is not None and abs(delta) >= max(1.0, 0.01 * spec.capacity):
                events.emit(
                    call,
                    CORRECTION,
                    key=pending.key,
                    bucket=spec.name,
                    delta=round(delta, 3),
                    server_remaining=remaining,
                )

    # -- helpers ---------------------------------------------------------------------

    def _key(self, call: Call) -> str:
        if self._key_function is not None:
            return str(self._key_function(call))
        limit: RateLimit = self.settings
        if limit.key is not None:
            return limit.key
        if call.model:
            return call.model
        site = self._site
        return (site.default_model or site.name) if site is not None else call.site

    def _costs(self, call: Call) -> list[float]:
        tokens = 0.0
        if self._counts_tokens:
            from prismq_llmtools.estimate import ensure_estimate

            estimate = ensure_estimate(call)
            if estimate is not None:
                tokens = float(estimate.prompt_tokens + (estimate.completion_cap or 0))
        return [tokens if s.name.startswith("tokens") else 1.0 for s in self._specs]

    def _declare(self, call: Call, key: str) -> None:
        if key not in self._declared:
            limit: RateLimit = self.settings
            site = self._site.name if self._site is not None else call.site
            self.registry.declare(limit.store or "memory", key, self._specs, site)
            self._declared.add(key)

    def _guarded(self, call: Call, action: Callable[[StateStore], Any]) -> Any:
        """Run a store operation under the unreachable-store policy (``None`` if allowed)."""
        try:
            store = self._store
            if store is None:
                limit: RateLimit = self.settings
                store = self._store = self.registry.store(limit.store or "memory")
            return action(store)
        except StateStoreError as exc:
            if self.settings.on_store_error == "raise":
                raise
            events.emit(
                call, STORE_ERROR, level="warning", store=exc.url, error=str(exc), policy="allow"
            )
            return None

    def _clock(self) -> Clock:
        site = self._site
        return site.clock if site is not None else (self.clock or system_clock)

    def _now(self) -> float:
        return self._clock().now()


def rate_limited(
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    tpd: int | None = None,
    burst: float = 0.9,
    headroom: float = 1.0,
    timeout_s: float | None = None,
    reconcile: Reconcile = "server",
    follow_headers: bool = True,
    key: str | KeyFunction | None = None,
    store: str | None = None,
    on_store_error: StoreErrorPolicy = "raise",
    registry: StateRegistry | None = None,
    clock: Clock | None = None,
    name: str | None = None,
    model: str | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Hold the decorated function to requests/tokens per minute (and per day).

    Every attempt is charged one request and its prompt tokens plus completion cap before
    it runs; sync callers block and async callers await until every bucket of the key
    allows it, first come first served. A 429 pauses the key for its Retry-After, and the
    server's ``x-ratelimit-*`` headers correct the buckets. A cache hit is never charged;
    a request that never reached the server is refunded.

    Args:
        rpm, tpm, rpd, tpd, burst, headroom, timeout_s, reconcile, follow_headers,
            store, on_store_error: see :class:`RateLimit`.
        key: the bucket key: a string, or ``Call -> str``; default the request's model.
        registry: where buckets live (default: the process's :data:`default_registry`).
        clock: the clock waits are slept on (tests pass a ``FakeClock``).
        name: the site name; ``model``: the site's default model.
    """
    limit = RateLimit(
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        tpd=tpd,
        burst=burst,
        headroom=headroom,
        timeout_s=timeout_s,
        reconcile=reconcile,
        follow_headers=follow_headers,
        key=key if isinstance(key, str) else None,
        store=store,
        on_store_error=on_store_error,
    )
    aspect = RateLimitAspect(
        limit,
        key=key if callable(key) else None,
        registry=registry or default_registry,
        clock=clock,
    )
    return attach(aspect, name=name, model=model)
