"""``@token_budgeted``: per-call token caps and period budgets in tokens and USD.

Before a call: its prompt is counted with OpenAI's rules; a prompt over
``max_prompt_tokens`` raises :class:`BudgetExceeded` or is truncated; then its worst case
(prompt + completion cap, and what that costs at the model's price) is reserved against
every period budget of its scope. After the call the reservation is replaced by the actual
usage. Because reservations are checked and taken atomically in the state store, concurrent
callers, threads or processes, can never overspend a hard budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Literal, ParamSpec, TypeVar

from prismq_llmtools.budget.aspect import BudgetAspect
from prismq_llmtools.budget.policy import PromptPolicy, TokenBudget
from prismq_llmtools.call import Endpoint
from prismq_llmtools.clock import Clock
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.stores import StateRegistry, default_registry
from prismq_llmtools.stores.ledger import MICRO_USD

__all__ = ["TokenBudget", "budget_status", "token_budgeted"]

P = ParamSpec("P")
R = TypeVar("R")


def token_budgeted(
    *,
    max_prompt_tokens: int | None = None,
    prompt_policy: PromptPolicy = "raise",
    completion_cap: int | None = None,
    hourly_tokens: int | None = None,
    daily_tokens: int | None = None,
    monthly_tokens: int | None = None,
    hourly_usd: float | str | Decimal | None = None,
    daily_usd: float | str | Decimal | None = None,
    monthly_usd: float | str | Decimal | None = None,
    window_s: float | None = None,
    window_tokens: int | None = None,
    window_usd: float | str | Decimal | None = None,
    scope: str | None = None,
    thresholds: Iterable[float] = (0.8,),
    store: str | None = None,
    on_store_error: Literal["raise", "allow"] = "raise",
    reservation_ttl_s: float = 3600.0,
    registry: StateRegistry | None = None,
    clock: Clock | None = None,
    name: str | None = None,
    model: str | None = None,
    request: RequestExtractor | None = None,
    tokenizer: str | None = None,
    endpoint: Endpoint | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Cap each call's prompt and hold calls to token and USD budgets per period.

    A call over budget raises :class:`~prismq_llmtools.errors.BudgetExceeded` (``scope``,
    ``budget``, ``requested``, ``remaining``) without calling the API. Budgets are reserved
    before the call (prompt + completion cap, and its worst-case cost) and settled with the
    actual usage after it.

    Args:
        max_prompt_tokens, prompt_policy, completion_cap, hourly_tokens, daily_tokens,
            monthly_tokens, hourly_usd, daily_usd, monthly_usd, window_s, window_tokens,
            window_usd, scope, thresholds, store, on_store_error, reservation_ttl_s:
            see :class:`TokenBudget`.
        registry: where budgets live (default: the process's :data:`default_registry`).
        clock: the clock calendar periods and windows are read on (tests: ``FakeClock``).
        name, model, request: the site's name, default model and request extractor.
        tokenizer: what the site's prompts are counted with: a tiktoken encoding
            (``"o200k_base"``), ``"server:URL"`` or ``"hf:PATH"`` (``docs/counting.md``).
        endpoint: the API the function calls (``"chat"``, ``"responses"``, ``"embeddings"``,
            ``"completions"``) when its arguments do not say (an ``input`` parameter).
    """

    def make() -> BudgetAspect:
        budget = TokenBudget(
            max_prompt_tokens=max_prompt_tokens,
            prompt_policy=prompt_policy,
            completion_cap=completion_cap,
            hourly_tokens=hourly_tokens,
            daily_tokens=daily_tokens,
            monthly_tokens=monthly_tokens,
            hourly_usd=hourly_usd,  # type: ignore[arg-type]  # normalised to Decimal
            daily_usd=daily_usd,  # type: ignore[arg-type]
            monthly_usd=monthly_usd,  # type: ignore[arg-type]
            window_s=window_s,
            window_tokens=window_tokens,
            window_usd=window_usd,  # type: ignore[arg-type]
            scope=scope,
            thresholds=thresholds,  # type: ignore[arg-type]  # normalised to a sorted tuple
            store=store,
            on_store_error=on_store_error,
            reservation_ttl_s=reservation_ttl_s,
        )
        return BudgetAspect(budget, registry=registry or default_registry, clock=clock)

    return attach(
        make, name=name, model=model, request=request, tokenizer=tokenizer, endpoint=endpoint
    )


def budget_status(func: Any) -> dict[str, dict[str, Any]]:
    """The budgets of a ``@token_budgeted`` function now: per budget its ``unit``,
    ``limit``, ``spent``, ``reserved`` and ``remaining`` (USD amounts as Decimal)."""
    aspect = next((a for a in core_of(func).aspects if isinstance(a, BudgetAspect)), None)
    if aspect is None:
        raise ConfigurationError(f"{func.llm.name} is not @token_budgeted")
    out: dict[str, dict[str, Any]] = {}
    for status in aspect.status():

        def money(value: int, unit: str = status.unit) -> Any:
            return Decimal(value) / MICRO_USD if unit == "usd" else value

        out[status.line] = {
            "unit": status.unit,
            "limit": money(status.limit),
            "spent": money(status.spent),
            "reserved": money(status.reserved),
            "remaining": money(status.remaining),
        }
    return out
