"""@cost_tracked: cost from actual usage, totals per operation (rolled up), model and day."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from prismq_llmtools import Usage, cost_tracked, usage_totals
from prismq_llmtools.cost import cost_of
from prismq_llmtools.pricing import price_table

from .fakes import Script, chat_body, client, ok


def _ask(model: str, usage: dict[str, int]) -> Any:
    api = client(Script(ok(chat_body(model=model, **usage))))

    @cost_tracked(operation="op")
    def ask() -> str:
        r = api.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        return r.choices[0].message.content or ""

    ask()
    return usage_totals().total()


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        ("gpt-4o", {"prompt_tokens": 1000, "completion_tokens": 200}),
        ("gpt-4o-mini", {"prompt_tokens": 5000, "completion_tokens": 10, "cached_tokens": 4096}),
        ("o3", {"prompt_tokens": 300, "completion_tokens": 900, "reasoning_tokens": 700}),
        ("gpt-4.1", {"prompt_tokens": 2048, "completion_tokens": 64, "cached_tokens": 1024}),
        ("gpt-5-mini", {"prompt_tokens": 100, "completion_tokens": 100, "reasoning_tokens": 50}),
    ],
)
def test_cost_equals_the_price_library(model: str, usage: dict[str, int]) -> None:
    """The tracked cost is exactly the price table's cost of the billed usage."""
    totals = _ask(model, usage)
    expected = cost_of(
        Usage(
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            cached_input_tokens=usage.get("cached_tokens", 0),
            reasoning_tokens=usage.get("reasoning_tokens", 0),
        ),
        price_table().price_for(model),
    ).total_usd
    assert totals.cost_usd == expected
    assert totals.cost_usd > 0
    assert totals.input_tokens == usage["prompt_tokens"]
    assert totals.reasoning_tokens == usage.get("reasoning_tokens", 0)


def test_gpt_4o_mini_cost_by_hand() -> None:
    """gpt-4o-mini: 1,000 input at $0.15/M and 500 output at $0.60/M is $0.00045."""
    totals = _ask("gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 500})
    assert totals.cost_usd == Decimal("0.00045")


def test_unknown_model_warns_and_estimates(events: list[dict[str, Any]]) -> None:
    """A model with no price is costed by the stand-in and announced, never a silent $0."""
    totals = _ask("my-private-model", {"prompt_tokens": 1000, "completion_tokens": 0})
    warning = [e for e in events if e["event"] == "llm.price.unknown"]
    assert warning
    assert warning[0]["gen_ai.request.model"] == "my-private-model"
    assert totals.cost_usd > 0


def test_nested_operations_roll_up() -> None:
    """report includes report/summarize in the rolled-up view, each call counted once."""
    api = client(Script(*(ok(chat_body(prompt_tokens=10, completion_tokens=1)) for _ in range(3))))

    @cost_tracked(operation="summarize")
    def summarize() -> None:
        api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    @cost_tracked(operation="report")
    def report() -> None:
        api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "y"}]
        )
        summarize()
        summarize()

    report()
    flat = usage_totals().by_operation(rollup=False)
    rolled = usage_totals().by_operation()
    assert flat["report"].calls == 1
    assert flat["report/summarize"].calls == 2
    assert rolled["report"].calls == 3
    assert rolled["report"].input_tokens == 30
    assert usage_totals().total().calls == 3
    assert list(usage_totals().by_model()) == ["gpt-4o-mini-2024-07-18"]
    assert len(usage_totals().by_day()) == 1
