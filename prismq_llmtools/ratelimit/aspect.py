"""The ``@rate_limited`` aspect: admission before each attempt, feedback after it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain

from prismq_llmtools import events
from prismq_llmtools._state import new_ticket_id
from prismq_llmtools.aspect import STORE_ERROR, Aspect, store_unreachable
from prismq_llmtools.call import Call, StateKey
from prismq_llmtools.clock import Clock
from prismq_llmtools.errors import RateLimitTimeout, RequestTooLarge, StateStoreError
from prismq_llmtools.openai.admission import character_estimate
from prismq_llmtools.openai.headers import RetryAfter
from prismq_llmtools.ratelimit.feedback import Admission, feedback_for
from prismq_llmtools.ratelimit.policy import RateLimit
from prismq_llmtools.site.estimate import ensure_estimate
from prismq_llmtools.stores import StateRegistry, StoreHandle
from prismq_llmtools.stores.bucket import Refusal

__all__ = [
    "CORRECTION",
    "PAUSE",
    "RETRY_AFTER_IGNORED",
    "STORE_ERROR",
    "WAIT",
    "BucketKeyFunction",
    "RateLimitAspect",
]

BucketKeyFunction = Callable[[Call], str]

WAIT = "llm.ratelimit.wait"
PAUSE = "llm.ratelimit.pause"
CORRECTION = "llm.ratelimit.correction"
RETRY_AFTER_IGNORED = "llm.ratelimit.retry_after_ignored"

ADMISSION: StateKey[Admission] = StateKey("ratelimit.admission")
"""The admission of a Call's latest attempt."""

_TICKET_TTL_S = 900.0  # an admitted request unanswered for this long no longer counts in flight


class RateLimitAspect(Aspect[RateLimit]):
    """Admits each attempt through the key's buckets and feeds the server's answer back."""

    kind = "rate_limited"

    def __init__(
        self,
        limit: RateLimit,
        *,
        key: BucketKeyFunction | None,
        registry: StateRegistry,
        clock: Clock | None,
    ) -> None:
        super().__init__(limit, clock=clock)
        self.registry = registry
        self._key_function = key
        self.configured()

    def configured(self) -> None:
        limit: RateLimit = self.settings
        self._specs = limit.specs()
        self._token_buckets = tuple(s.name.startswith("tokens") for s in self._specs)
        self._counts_tokens = any(self._token_buckets)
        self._max_wait_s = math.inf if limit.timeout_s is None else float(limit.timeout_s)
        self._timed = self._max_wait_s != math.inf
        # What cannot change from call to call is decided here, once: the key when it is a
        # fixed string, and the costs when no bucket counts tokens (one request each).
        self._fixed_key = limit.key if self._key_function is None else None
        ones = tuple(1.0 for _ in self._specs)
        fits = all(spec.capacity >= 1.0 for spec in self._specs)
        self._fixed_costs: tuple[float, ...] | None = (
            ones if fits and not self._counts_tokens else None
        )
        self._refunds = limit.reconcile == "refund"
        self._declared: set[str] = set()
        # the registry forgets its declarations with its stores: so does the limiter
        self._store = StoreHandle(self.registry, limit.store or "memory", self._declared.clear)

    # -- hooks -----------------------------------------------------------------------

    def before_attempt(self, call: Call) -> float:
        admission = call.get(ADMISSION)
        if admission is not None and admission.attempt == call.attempts and not admission.done:
            return self._recheck(call, admission)
        return self._admit(call)

    def after_attempt(self, call: Call, error: BaseException | None) -> None:
        admission = call.get(ADMISSION)
        if admission is None or admission.done or admission.attempt != call.attempts:
            return
        if error is not None or call.rate_headers is not admission.headers:
            self._feedback(call, admission, error)
            return
        # Answered without rate-limit headers: nothing to correct or pause, only to release.
        admission.done = True
        try:
            self._store.get().release(
                admission.key, self._specs, admission.ticket, clock=self.current_clock()
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)

    def process_local_state(self) -> str | None:
        if self.settings.store in (None, "memory", "memory://"):
            return "@rate_limited keeps its buckets in the in-process 'memory' store"
        return None

    def active_hooks(self) -> set[str]:
        # Every attempt begun hears how it ended (after_attempt): settle only has the
        # unused part of the completion cap to give back.
        hooks = self.overrides()
        if not self._refunds:
            hooks.discard("settle")
        return hooks

    def settle(self, call: Call) -> None:
        admission = call.get(ADMISSION)
        if admission is None:
            return
        if not admission.done:  # cancelled, or ended without an attempt finishing
            self._feedback(call, admission, call.error)
        if self._refunds and call.outcome == "ok" and call.usage is not None:
            self._refund_unused(call, admission, call.usage.total_tokens)

    # -- admission -------------------------------------------------------------------

    def _admit(self, call: Call) -> float:
        key = self._fixed_key
        if key is None:
            key = self._key(call)
        costs: Sequence[float] | None = self._fixed_costs
        if costs is None:
            costs = self._costs(call, key)
        clock = self.current_clock()
        try:
            store = self._store.get()
            if key not in self._declared:
                self._declare(call, key)
            result = store.admit(
                key,
                self._specs,
                costs,
                clock=clock,
                ticket_id=new_ticket_id(),
                ttl_s=_TICKET_TTL_S,
                max_wait_s=self._max_wait_s,
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)
            return 0.0
        if isinstance(result, Refusal):
            raise RateLimitTimeout(
                key=key, bucket=result.bucket, wait_s=result.wait_s, timeout_s=self._max_wait_s
            )
        deadline = self._now() + self._max_wait_s if self._timed else None
        # Positional (a class called with keywords is slower): ticket, key, attempt,
        # deadline, headers, unread.
        admission = Admission(
            result, key, call.attempts, deadline, call.rate_headers, call.unread_requests
        )
        call.put(ADMISSION, admission)
        return self._waiting(call, admission) if result.wait_s > 0 else 0.0

    def _waiting(self, call: Call, admission: Admission) -> float:
        ticket = admission.ticket
        wait = float(ticket.wait_s)
        events.emit(call, WAIT, key=admission.key, bucket=ticket.bucket, wait_s=round(wait, 6))
        return wait

    def _recheck(self, call: Call, admission: Admission) -> float:
        try:
            store = self._store.get()
            wait = store.wait_s(
                admission.key, self._specs, admission.ticket, clock=self.current_clock()
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)
            wait = 0.0
        if not wait:
            admission.headers = call.rate_headers
            return 0.0
        if admission.deadline is not None and self._now() + wait > admission.deadline + 1e-9:
            self._release(call, admission)
            limit: RateLimit = self.settings
            raise RateLimitTimeout(
                key=admission.key,
                bucket="pause",
                wait_s=wait,
                timeout_s=float(limit.timeout_s or 0.0),
            )
        return wait

    def _release(self, call: Call, admission: Admission) -> None:
        admission.done = True
        self._apply(call, admission, refund=admission.ticket.costs)

    # -- feedback --------------------------------------------------------------------

    def _feedback(self, call: Call, admission: Admission, error: BaseException | None) -> None:
        admission.done = True
        limit: RateLimit = self.settings
        plan = feedback_for(call, admission, error, self._specs, limit, follow=limit.follow_headers)
        deltas = self._apply(
            call,
            admission,
            deficits=plan.deficits,
            refund=plan.refund,
            pause_s=plan.pause_s,
            follow_down=plan.follow_down,
            server_limits=plan.server_limits,
            refused=plan.refused,
        )
        if plan.pause_s > 0:
            events.emit(
                call, PAUSE, level="warning", key=admission.key, wait_s=round(plan.pause_s, 6)
            )
        if plan.unheeded is not None:
            self._unheeded(call, admission, plan.unheeded)
        for spec, delta, remaining in zip(self._specs, deltas or (), plan.remaining, strict=False):
            if remaining is not None and abs(delta) >= max(1.0, 0.01 * spec.capacity):
                events.emit(
                    call,
                    CORRECTION,
                    key=admission.key,
                    bucket=spec.name,
                    delta=round(delta, 3),
                    server_remaining=remaining,
                )

    def _unheeded(self, call: Call, admission: Admission, asked: RetryAfter) -> None:
        """Say that a 429's Retry-After did not pause the key, and why."""
        limit: RateLimit = self.settings
        cap = float(limit.retry_after_cap_s)
        events.emit(
            call,
            RETRY_AFTER_IGNORED,
            level="warning",
            key=admission.key,
            retry_after=asked.text,
            reason=asked.problem,
            cap_s=cap if math.isfinite(cap) else None,
        )

    def _refund_unused(self, call: Call, admission: Admission, used: int) -> None:
        refund = [
            max(0.0, cost - used) if spec.name.startswith("tokens") else 0.0
            for spec, cost in zip(self._specs, admission.ticket.costs, strict=True)
        ]
        if any(refund):
            self._apply(call, admission, refund=refund)

    def _apply(
        self,
        call: Call,
        admission: Admission,
        *,
        deficits: Sequence[float | None] = (),
        refund: Sequence[float] = (),
        pause_s: float = 0.0,
        follow_down: bool = True,
        server_limits: Sequence[float | None] = (),
        refused: bool = False,
    ) -> list[float] | None:
        """Feed what happened to ``admission``'s request to the store (``None``: unreachable)."""
        try:
            store = self._store.get()
            return store.feedback(
                admission.key,
                self._specs,
                admission.ticket,
                clock=self.current_clock(),
                deficits=deficits,
                refund=refund,
                pause_s=pause_s,
                follow_down=follow_down,
                server_limits=server_limits,
                refused=refused,
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)
            return None

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

    def _costs(self, call: Call, key: str) -> list[float]:
        """Per bucket, what ``call`` costs: one request, or its tokens. A cost above the
        bucket's capacity could never be admitted: ``RequestTooLarge``."""
        tokens = float(self._tokens(call)) if self._counts_tokens else 0.0
        costs = []
        for spec, counted in zip(self._specs, self._token_buckets, strict=True):
            cost = tokens if counted else 1.0
            if cost > spec.capacity:
                raise RequestTooLarge(
                    key=key, bucket=spec.name, requested=cost, capacity=spec.capacity
                )
            costs.append(cost)
        return costs

    def _tokens(self, call: Call) -> int:
        """The prompt as the server counts it at admission, plus the completion cap."""
        estimate = ensure_estimate(call)
        if estimate is None:
            return 0
        limit: RateLimit = self.settings
        prompt = estimate.prompt_tokens
        if limit.count != "tokens":
            request = call.request
            body = request.body if request is not None else {}
            # Read only when the body holds no prompt text.
            strings = (v for v in chain(call.args, call.kwargs.values()) if isinstance(v, str))
            chars = character_estimate(body, strings)
            prompt = chars if limit.count == "chars" else max(prompt, chars)
        return prompt + (estimate.completion_cap or 0)

    def _declare(self, call: Call, key: str) -> None:
        limit: RateLimit = self.settings
        site = self._site.name if self._site is not None else call.site
        self.registry.declare(limit.store or "memory", key, self._specs, site)
        self._declared.add(key)

    def _store_failed(self, call: Call, exc: StateStoreError) -> None:
        limit: RateLimit = self.settings
        store_unreachable(call, exc, limit.on_store_error)

    def _now(self) -> float:
        return self.current_clock().now()
