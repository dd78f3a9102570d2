"""The ``@rate_limited`` aspect: admission before each attempt, feedback after it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prismq_llmtools import events
from prismq_llmtools._ratelimit_feedback import Pending, feedback_for
from prismq_llmtools.aspects import Aspect
from prismq_llmtools.bucket import Refusal
from prismq_llmtools.call import Call
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import RateLimitTimeout, RequestTooLarge, StateStoreError
from prismq_llmtools.stores import StateRegistry, StateStore

if TYPE_CHECKING:
    from prismq_llmtools._site import SiteCore
    from prismq_llmtools.ratelimit import RateLimit

__all__ = ["CORRECTION", "PAUSE", "STORE_ERROR", "WAIT", "KeyFunction", "RateLimitAspect"]

KeyFunction = Callable[[Call], str]

WAIT = "llm.ratelimit.wait"
PAUSE = "llm.ratelimit.pause"
CORRECTION = "llm.ratelimit.correction"
STORE_ERROR = "llm.store.error"

_TICKET_TTL_S = 900.0  # an admitted request unanswered for this long no longer counts in flight


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
            tokens = float(self._tokens(call))
        return [tokens if s.name.startswith("tokens") else 1.0 for s in self._specs]

    def _tokens(self, call: Call) -> int:
        """The prompt as the server counts it at admission, plus the completion cap."""
        from prismq_llmtools.estimate import ensure_estimate

        estimate = ensure_estimate(call)
        if estimate is None:
            return 0
        limit: RateLimit = self.settings
        prompt = estimate.prompt_tokens
        if limit.count != "tokens":
            from prismq_llmtools.openai.admission import character_estimate

            body = call.request.body if call.request is not None else {}
            strings = [v for v in (*call.args, *call.kwargs.values()) if isinstance(v, str)]
            chars = character_estimate(body, strings)
            prompt = chars if limit.count == "chars" else max(prompt, chars)
        return prompt + (estimate.completion_cap or 0)

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
