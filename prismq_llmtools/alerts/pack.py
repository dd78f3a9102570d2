"""The built-in rule pack: opt-in rules for spend, budgets, 429s, retries, errors, latency,
cache hits and unknown prices, with every threshold a parameter."""

from __future__ import annotations

from prismq_llmtools.alerts.match import Filter
from prismq_llmtools.alerts.rule import Condition, Match, Rule

__all__ = ["builtin_rules"]

_CALL = "llm.call"


def builtin_rules(
    *,
    spend_per_hour_usd: float = 10.0,
    spend_per_day_usd: float = 100.0,
    rate_limited_ratio: float = 0.10,
    retries_per_minute: float = 30.0,
    error_ratio: float = 0.05,
    p95_latency_s: float = 30.0,
    cache_hit_ratio_below: float = 0.20,
    min_calls: int = 20,
    daily_budget_usd: float | None = None,
    repeat: float = 3600.0,
) -> tuple[Rule, ...]:
    """Return the built-in rules (names start with ``builtin.``).

    Args:
        spend_per_hour_usd: total ``cost_usd`` of ``llm.call`` over the last hour above this.
        spend_per_day_usd: the same over the last 24 hours.
        rate_limited_ratio: 429s (``rate_limited``) per ``llm.call`` over 5 min, per model.
        retries_per_minute: ``llm.retry`` events per minute over 1 min, per site (retry storm).
        error_ratio: share of ``llm.call`` with ``outcome = "error"`` over 5 min, per site.
        p95_latency_s: p95 of ``duration_s`` over 5 min, per model.
        cache_hit_ratio_below: cache hits per cache lookup over 1 h below this, per site.
        min_calls: ratio and latency rules stay quiet below this many calls in their window.
        daily_budget_usd: when set, also forecast the day's spend against this budget.
        repeat: seconds between reminders while a rule keeps firing.
    """
    call = Match(event=_CALL)
    rules = [
        Rule(
            name="builtin.spend-per-hour", aggregate="sum", window_s=3600,
            match=Match(event=_CALL, field="cost_usd"),
            condition=Condition(op=">", threshold=spend_per_hour_usd), repeat_s=repeat,
            description="Spend over the last hour is above the threshold.",
        ),
        Rule(
            name="builtin.spend-per-day", aggregate="sum", window_s=86400,
            match=Match(event=_CALL, field="cost_usd"),
            condition=Condition(op=">", threshold=spend_per_day_usd), repeat_s=repeat,
            description="Spend over the last 24 hours is above the threshold.",
        ),
        Rule(
            name="builtin.budget-80", aggregate="count", window_s=3600, group_by=("scope",),
            match=Match(
                event="llm.budget.threshold",
                where=(Filter(field="fraction", op="ge", value=0.8),),
            ),
            condition=Condition(op=">", threshold=0), repeat_s=repeat,
            description="A token or USD budget reached 80% of its limit.",
        ),
        Rule(
            name="builtin.budget-100", aggregate="count", window_s=3600, group_by=("scope",),
            match=Match(event="llm.budget.exceeded"), severity="critical",
            condition=Condition(op=">", threshold=0), repeat_s=repeat,
            description="A budget refused a call: it is exhausted.",
        ),
        Rule(
            name="builtin.rate-limited-ratio", aggregate="ratio", window_s=300,
            numerator=Match(event=_CALL, field="rate_limited"), denominator=call,
            group_by=("gen_ai.request.model",), min_count=min_calls,
            condition=Condition(op=">", threshold=rate_limited_ratio), repeat_s=repeat,
            description="429 responses per call are above the threshold.",
        ),
        Rule(
            name="builtin.retry-storm", aggregate="rate", window_s=60, group_by=("site",),
            match=Match(event="llm.retry"),
            condition=Condition(op=">", threshold=retries_per_minute / 60), repeat_s=repeat,
            description="Retries per second over the last minute are above the threshold.",
        ),
        Rule(
            name="builtin.error-ratio", aggregate="ratio", window_s=300, group_by=("site",),
            numerator=Match(event=_CALL, where=(Filter(field="outcome", op="eq", value="error"),)),
            denominator=call, min_count=min_calls, severity="critical",
            condition=Condition(op=">", threshold=error_ratio), repeat_s=repeat,
            description="The share of failed calls is above the threshold.",
        ),
        Rule(
            name="builtin.p95-latency", aggregate="p95", window_s=300,
            group_by=("gen_ai.request.model",), min_count=min_calls,
            match=Match(event=_CALL, field="duration_s"),
            condition=Condition(op=">", threshold=p95_latency_s), repeat_s=repeat,
            description="The 95th percentile of call duration is above the threshold.",
        ),
        Rule(
            name="builtin.cache-hit-ratio", aggregate="ratio", window_s=3600, group_by=("site",),
            numerator=Match(event=_CALL, where=(Filter(field="cache", op="eq", value="hit"),)),
            denominator=Match(
                event=_CALL, where=(Filter(field="cache", op="in", value=("hit", "miss")),)
            ),
            min_count=min_calls, severity="info",
            condition=Condition(op="<", threshold=cache_hit_ratio_below), repeat_s=repeat,
            description="Cache hits per lookup dropped below the threshold.",
        ),
        Rule(
            name="builtin.unknown-model-price", aggregate="count", window_s=3600,
            group_by=("gen_ai.request.model",), match=Match(event="llm.price.unknown"),
            condition=Condition(op=">", threshold=0), repeat_s=86400,
            description="Calls to a model with no known price: their cost is not counted.",
        ),
    ]  # fmt: skip
    if daily_budget_usd is not None:
        rules.append(
            Rule(
                name="builtin.budget-forecast",
                aggregate="forecast",
                window_s=3600,
                match=Match(event=_CALL, field="cost_usd"),
                period="day",
                budget=daily_budget_usd,
                repeat_s=repeat,
                severity="warning",
                description="At the last hour's spend rate the day ends over budget.",
            )
        )
    return tuple(rules)
