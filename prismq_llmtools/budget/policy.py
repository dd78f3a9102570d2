"""The settings of ``@token_budgeted``: per-call caps and period budgets, validated."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.settings.rules import (
    Choice,
    Fractions,
    Integer,
    Money,
    Number,
    Text,
    check_fields,
    register_keys,
)
from prismq_llmtools.stores import check_store_url, display_url
from prismq_llmtools.stores.ledger import MICRO_USD, BudgetLine, Period, Unit

__all__ = ["PromptPolicy", "TokenBudget"]

PromptPolicy = Literal["raise", "truncate"]

_PERIODIC: tuple[tuple[str, Unit, Period], ...] = (
    ("hourly_tokens", "tokens", "hour"),
    ("daily_tokens", "tokens", "day"),
    ("monthly_tokens", "tokens", "month"),
    ("window_tokens", "tokens", "rolling"),
    ("hourly_usd", "usd", "hour"),
    ("daily_usd", "usd", "day"),
    ("monthly_usd", "usd", "month"),
    ("window_usd", "usd", "rolling"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenBudget:
    """How ``@token_budgeted`` limits a site.

    Args:
        max_prompt_tokens: most prompt tokens one call may send.
        prompt_policy: over the cap, ``raise`` :class:`BudgetExceeded` (before any network
            traffic) or ``truncate``: drop the oldest non-system messages of the
            ``messages`` argument until the prompt fits.
        completion_cap: a completion cap (``max_completion_tokens``) added to requests that
            set none, so their worst case is known.
        hourly_tokens, daily_tokens, monthly_tokens: token budgets per calendar period (UTC).
        hourly_usd, daily_usd, monthly_usd: USD budgets per calendar period (UTC).
        window_s, window_tokens, window_usd: budgets over a rolling window of ``window_s``.
        scope: name of the budget; sites naming the same scope share it (default: the site).
        thresholds: fractions of a budget whose crossing emits ``llm.budget.threshold``.
        store: ``memory`` (default), ``sqlite:///path`` or ``redis://host:port/db``;
            budgets in SQLite or Redis survive restarts.
        on_store_error: ``raise`` (fail closed) or ``allow`` (fail open, with a warning).
        reservation_ttl_s: a reservation never settled (its process died) expires after this.
    """

    max_prompt_tokens: int | None = None
    prompt_policy: PromptPolicy = "raise"
    completion_cap: int | None = None
    hourly_tokens: int | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    hourly_usd: Decimal | None = None
    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None
    window_s: float | None = None
    window_tokens: int | None = None
    window_usd: Decimal | None = None
    scope: str | None = None
    thresholds: tuple[float, ...] = (0.8,)
    store: str | None = None
    on_store_error: Literal["raise", "allow"] = "raise"
    reservation_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        check_fields(self, "token_budgeted")
        rolling = self.window_tokens is not None or self.window_usd is not None
        if rolling != (self.window_s is not None):
            raise ConfigurationError("window_s goes with window_tokens and/or window_usd")

    def lines(self) -> tuple[BudgetLine, ...]:
        """The period budgets, in ledger units (tokens, micro-USD)."""
        lines = []
        for name, unit, period in _PERIODIC:
            value = getattr(self, name)
            if value is None:
                continue
            limit = int(value * MICRO_USD) if unit == "usd" else int(value)
            lines.append(
                BudgetLine(
                    name=name,
                    unit=unit,
                    period=period,
                    limit=limit,
                    window_s=float(self.window_s or 0.0) if period == "rolling" else 0.0,
                    thresholds=self.thresholds,
                )
            )
        return tuple(lines)


def _token_fields() -> Iterable[str]:
    return (name for name, unit, _ in _PERIODIC if unit == "tokens")


def _usd_fields() -> Iterable[str]:
    return (name for name, unit, _ in _PERIODIC if unit == "usd")


register_keys(
    "token_budgeted",
    {
        "max_prompt_tokens": Integer(optional=True),
        "prompt_policy": Choice(values=("raise", "truncate")),
        "completion_cap": Integer(optional=True),
        **{name: Integer(optional=True) for name in _token_fields()},
        **{name: Money(optional=True) for name in _usd_fields()},
        "window_s": Number(exclusive=True, optional=True),
        "scope": Text(optional=True),
        "thresholds": Fractions(),
        "store": Text(optional=True, validate=check_store_url, display=display_url),
        "on_store_error": Choice(values=("raise", "allow")),
        "reservation_ttl_s": Number(exclusive=True),
    },
)
