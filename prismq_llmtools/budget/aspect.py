"""The ``@token_budgeted`` aspect: prompt cap, completion cap, reserve, settle."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

from prismq_llmtools import events, observers
from prismq_llmtools.aspect import Aspect, store_unreachable
from prismq_llmtools.budget.policy import TokenBudget
from prismq_llmtools.budget.truncate import parameter_names, replace_argument, truncate_messages
from prismq_llmtools.call import Call, Request, StateKey
from prismq_llmtools.clock import Clock
from prismq_llmtools.errors import BudgetExceeded, StateStoreError
from prismq_llmtools.site.estimate import count_for_site, ensure_estimate, worst_case_of
from prismq_llmtools.stores import StateRegistry, StoreHandle
from prismq_llmtools.stores.ledger import MICRO_USD, BudgetStatus, Crossing, Denial
from prismq_llmtools.usage import TokenEstimate

if TYPE_CHECKING:
    from prismq_llmtools.openai.tokens import TokenEstimate

__all__ = ["BudgetAspect"]

THRESHOLD = "llm.budget.threshold"
EXCEEDED = "llm.budget.exceeded"
TRUNCATED = "llm.budget.truncated"

HELD: StateKey[tuple[int, dict[str, int]]] = StateKey("budget.held")
"""How many worst cases a Call holds in the store, and one worst case's amounts by unit; set
once its worst case is reserved: settle replaces it by the actual."""

_CAP_PARAMETERS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class BudgetAspect(Aspect[TokenBudget]):
    """Checks the prompt and reserves the worst case before the call; settles after it."""

    kind = "token_budgeted"

    def __init__(self, budget: TokenBudget, *, registry: StateRegistry, clock: Clock | None):
        super().__init__(budget, clock=clock)
        self.registry = registry
        self._parameters: dict[bool, tuple[list[str], set[str]]] = {}
        self.configured()

    def configured(self) -> None:
        budget: TokenBudget = self.settings
        self._lines = budget.lines()
        self._named_scope = budget.scope
        self._prices = any(line.unit == "usd" for line in self._lines)
        self._store = StoreHandle(self.registry, budget.store or "memory")

    def process_local_state(self) -> str | None:
        if self._lines and self.settings.store in (None, "memory", "memory://"):
            return "@token_budgeted keeps its budget in the in-process 'memory' store"
        return None

    def active_hooks(self) -> set[str]:
        budget: TokenBudget = self.settings
        if self._lines or budget.completion_cap is not None or budget.max_prompt_tokens is not None:
            return self.overrides()
        return set()  # no budget and no cap: nothing to check, reserve or settle

    # -- hooks -----------------------------------------------------------------------

    def reserve(self, call: Call) -> None:
        budget: TokenBudget = self.settings
        estimate = ensure_estimate(call)
        if estimate is None:
            return  # no model, nothing to count: nothing to hold the call to
        if budget.completion_cap is not None and estimate.completion_cap is None:
            estimate = self._inject_cap(call, estimate, budget.completion_cap)
        limit = budget.max_prompt_tokens
        if limit is not None and estimate.prompt_tokens > limit:
            estimate = self._fit_prompt(call, estimate, limit)
        if not self._lines:
            return
        amounts = {"tokens": estimate.total_estimate}
        if self._prices:
            worst = worst_case_of(call)
            amounts["usd"] = _micro(worst[1]) if worst is not None else 0
        denial = self._reserve(call, call.call_id, amounts)
        if isinstance(denial, Denial):
            self._refuse(call, denial)
        if self._store.reached:  # reserved, or the store failed under "allow"
            call.put(HELD, (1, amounts))

    def before_attempt(self, call: Call) -> float:
        """Before a retry, hold one more worst case for every attempt that may have been
        billed unread: each is charged its worst case, and the next attempt needs its own."""
        held = call.get(HELD)
        if held is None:
            return 0.0
        count, amounts = held
        while count < 1 + call.unread_requests:
            denial = self._reserve(call, f"{call.call_id}+{count}", amounts)
            if isinstance(denial, Denial):
                self._refuse(call, denial)
            count += 1
            call.put(HELD, (count, amounts))
        return 0.0

    def settle(self, call: Call) -> None:
        held = call.get(HELD)
        if held is None:
            return
        usage = call.usage
        actual = {"tokens": usage.total_tokens if usage is not None else 0}
        if self._prices:
            actual["usd"] = _micro(self._actual_cost(call))
        crossings = self._settle(call, call.call_id, actual)
        # Then free the extra worst cases: released after the actual is recorded, never before.
        for n in range(1, held[0]):
            self._settle(call, f"{call.call_id}+{n}", {})
        if observers.registry.all:
            self._tell_remaining(call)
        for crossing in crossings:
            events.emit(
                call,
                THRESHOLD,
                level="warning",
                scope=self._scope(call),
                budget=crossing.line,
                unit=crossing.unit,
                used=_plain(crossing.used, crossing.unit),
                limit=_plain(crossing.limit, crossing.unit),
                fraction=crossing.threshold,
            )

    def _reserve(self, call: Call, reservation_id: str, amounts: dict[str, int]) -> Denial | None:
        """Reserve ``amounts`` for ``call`` (``None``: reserved, or the store unreachable and
        the policy lets the call go)."""
        budget: TokenBudget = self.settings
        try:
            return self._store.get().reserve(
                self._scope(call),
                self._lines,
                amounts,
                clock=self.current_clock(),
                reservation_id=reservation_id,
                ttl_s=budget.reservation_ttl_s,
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)
            return None

    def _settle(self, call: Call, reservation_id: str, actual: dict[str, int]) -> list[Crossing]:
        """Replace a reservation by ``actual`` (empty: release it); the thresholds crossed."""
        try:
            return self._store.get().settle(
                self._scope(call), self._lines, reservation_id, actual, clock=self.current_clock()
            )
        except StateStoreError as exc:
            self._store_failed(call, exc)
            return []

    def status(self) -> list[BudgetStatus]:
        """Every budget line of this site's scope, now."""
        try:
            return self._store.get().budget_status(
                self._scope(None), self._lines, clock=self.current_clock()
            )
        except StateStoreError as exc:
            self._store_failed(None, exc)
            return []

    def _tell_remaining(self, call: Call) -> None:
        """Tell the observers what each budget line has left after ``call`` settled."""
        scope = self._scope(call)
        for status in self.status():
            remaining = _plain(status.remaining, status.unit)
            observers.budget_remaining(call, scope, status.line, status.unit, float(remaining))

    # -- before the call -------------------------------------------------------------

    def _inject_cap(self, call: Call, estimate: TokenEstimate, cap: int) -> TokenEstimate:
        parameters = self._parameters_of(call)
        declared = [name for name in _CAP_PARAMETERS if name in parameters[1]]
        if declared and replace_argument(call, parameters, declared[0], cap):
            if call.request is not None:
                body = {**call.request.body, declared[0]: cap}
                call.request = dataclasses.replace(call.request, body=body)
        else:  # the function builds its own request: the client boundary adds the cap
            call.completion_cap = cap
        estimate = dataclasses.replace(estimate, completion_cap=cap)
        call.estimate = estimate
        return estimate

    def _fit_prompt(self, call: Call, estimate: TokenEstimate, limit: int) -> TokenEstimate:
        budget: TokenBudget = self.settings
        request = call.request
        messages = request.body.get("messages") if request is not None else None
        if budget.prompt_policy == "raise" or request is None or not isinstance(messages, list):
            self._refuse(
                call,
                Denial("max_prompt_tokens", "tokens", estimate.prompt_tokens, limit),
                reason=f"the prompt has {estimate.prompt_tokens} tokens, more than"
                f" max_prompt_tokens={limit}"
                + (
                    "" if budget.prompt_policy == "raise" else " (no messages argument to truncate)"
                ),
            )

        def count(candidate: list[Any]) -> int:
            body = {**request.body, "messages": candidate}
            return count_for_site(call, body, request.endpoint or "chat").prompt_tokens

        fitted = truncate_messages(messages, limit, count)
        if fitted is None or not replace_argument(
            call, self._parameters_of(call), "messages", fitted[0]
        ):
            self._refuse(
                call,
                Denial("max_prompt_tokens", "tokens", estimate.prompt_tokens, limit),
                reason=f"the prompt has {estimate.prompt_tokens} tokens and cannot be truncated"
                f" to max_prompt_tokens={limit} (system messages and the newest message kept)",
            )
        kept, dropped = fitted
        call.request = Request(
            model=request.model, endpoint=request.endpoint, body={**request.body, "messages": kept}
        )
        before = estimate.prompt_tokens
        call.estimate = None
        fresh = ensure_estimate(call)
        assert fresh is not None
        if estimate.completion_cap is not None and fresh.completion_cap is None:
            fresh = call.estimate = dataclasses.replace(
                fresh, completion_cap=estimate.completion_cap
            )
        events.emit(
            call,
            TRUNCATED,
            scope=self._scope(call),
            removed_messages=dropped,
            prompt_tokens_before=before,
            prompt_tokens_after=fresh.prompt_tokens,
            max_prompt_tokens=limit,
        )
        return fresh

    def _refuse(self, call: Call, denial: Denial, reason: str = "") -> NoReturn:
        scope = self._scope(call)
        requested = _plain(denial.requested, denial.unit)
        remaining = _plain(denial.remaining, denial.unit)
        if observers.registry.all:
            observers.budget_remaining(call, scope, denial.line, denial.unit, float(remaining))
        events.emit(
            call,
            EXCEEDED,
            level="warning",
            scope=scope,
            budget=denial.line,
            unit=denial.unit,
            requested=requested,
            remaining=remaining,
        )
        raise BudgetExceeded(
            scope=scope,
            budget=denial.line,
            unit=denial.unit,
            requested=_exact(denial.requested, denial.unit),
            remaining=_exact(denial.remaining, denial.unit),
            reason=reason,
        )

    # -- prices ----------------------------------------------------------------------

    def _actual_cost(self, call: Call) -> Decimal:
        if call.cost_usd is not None:
            return call.cost_usd
        if call.usage is None or call.usage_source == "cache":
            return Decimal(0)
        from prismq_llmtools.pricing import price_table
        from prismq_llmtools.pricing.money import total_usd_of

        model = call.response_model or call.model or ""
        price = price_table().price_for(model, unknown="estimate")
        return total_usd_of(call.usage, price)

    # -- helpers ---------------------------------------------------------------------

    def _scope(self, call: Call | None) -> str:
        if self._named_scope:
            return self._named_scope
        site = self._site
        return site.name if site is not None else (call.site if call is not None else "")

    def _parameters_of(self, call: Call) -> tuple[list[str], set[str]]:
        site = self._site
        bound = call.instance is not None and not getattr(site, "_is_static", False)
        found = self._parameters.get(bound)
        if found is None and site is not None:
            found = self._parameters[bound] = parameter_names(site.func, bound=bound)
        return found or ([], set())

    def _store_failed(self, call: Call | None, exc: StateStoreError) -> None:
        budget: TokenBudget = self.settings
        store_unreachable(call, exc, budget.on_store_error)


def _micro(usd: Decimal) -> int:
    """Micro-dollars, rounded up: a ledger amount never understates a cost."""
    return math.ceil(usd * MICRO_USD)


def _exact(amount: int, unit: str) -> int | Decimal:
    return Decimal(amount) / MICRO_USD if unit == "usd" else amount


def _plain(amount: int, unit: str) -> float | int:
    return amount / MICRO_USD if unit == "usd" else amount
