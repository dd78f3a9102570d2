"""@cost_tracked: cost from actual usage, totals per operation (rolled up), model and day.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from prismq_llmtools import Usage, cost_tracked, retried, usage_totals
from prismq_llmtools.cost import cost_of
from prismq_llmtools.errors import UnknownPriceError
from prismq_llmtools.pricing import price_table
from tests.core.fakes import Script, chat_body, chunk, client, ok, sse
from tests.drivers import Mode, Steps


def _ask(mode: Mode, model: str, usage: dict[str, int]) -> Any:
    api = client(Script(ok(chat_body(model=model, **usage))), mode)

    @cost_tracked(operation="op")
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
        return r.choices[0].message.content or ""

    mode.invoke(ask)
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
def test_cost_equals_the_price_library(mode: Mode, model: str, usage: dict[str, int]) -> None:
    """The tracked cost is exactly the price table's cost of the billed usage."""
    totals = _ask(mode, model, usage)
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


def test_gpt_4o_mini_cost_by_hand(mode: Mode) -> None:
    """gpt-4o-mini: 1,000 input at $0.15/M and 500 output at $0.60/M is $0.00045."""
    totals = _ask(mode, "gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 500})
    assert totals.cost_usd == Decimal("0.00045")


def test_a_response_returned_as_a_dict_is_costed() -> None:
    """A function returning a response as a plain dict (``model_dump()``) is costed from
    its usage, whichever aspects the site has."""

    @cost_tracked(operation="op")
    def ask() -> dict[str, Any]:
        return chat_body(model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500)

    ask()
    assert usage_totals().total().cost_usd == Decimal("0.00045")


def _tier_cost(tier: str | None) -> Decimal:
    usage = Usage(input_tokens=1000, output_tokens=200)
    return cost_of(usage, price_table().price_for("gpt-4o"), service_tier=tier).total_usd


_TIERED = chat_body(model="gpt-4o", prompt_tokens=1000, completion_tokens=200)


@pytest.mark.parametrize("tier", ["priority", "default"])
def test_an_observed_answer_is_priced_at_its_service_tier(tier: str) -> None:
    """An answer the client received costs the rates of the service tier it reports; a tier
    with no price of its own (``default``) costs the standard rates."""
    api = client(Script(ok({**_TIERED, "service_tier": tier})))

    @cost_tracked(operation="op")
    def ask() -> str:
        r = api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        return r.choices[0].message.content or ""

    ask()
    assert usage_totals().total().cost_usd == _tier_cost(tier)
    assert _tier_cost("priority") > _tier_cost("default") == _tier_cost(None)


def test_a_returned_answer_is_priced_at_its_service_tier() -> None:
    """A response the function returns (not seen by the client boundary) is priced at the
    service tier it reports too."""

    @cost_tracked(operation="op")
    def ask() -> dict[str, Any]:
        return {**_TIERED, "service_tier": "priority"}

    ask()
    assert usage_totals().total().cost_usd == _tier_cost("priority")


def test_a_stream_is_priced_at_its_service_tier() -> None:
    """A streamed answer's chunks report its service tier; its usage is priced at it."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 200}
    chunks = [chunk("Hi"), chunk(None, finish="stop"), chunk(None, usage=usage)]
    api = client(
        Script(sse([{**c, "model": "gpt-4o", "service_tier": "priority"} for c in chunks]))
    )

    @cost_tracked(operation="op")
    def ask() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert ask() == "Hi"
    assert usage_totals().total().cost_usd == _tier_cost("priority")


def test_unknown_model_warns_and_estimates(mode: Mode, events: list[dict[str, Any]]) -> None:
    """A model with no price is costed by the stand-in and announced, never a silent $0."""
    totals = _ask(mode, "my-private-model", {"prompt_tokens": 1000, "completion_tokens": 0})
    warning = [e for e in events if e["event"] == "llm.price.unknown"]
    assert warning
    assert warning[0]["gen_ai.request.model"] == "my-private-model"
    assert totals.cost_usd > 0


def test_unknown_price_is_marked_on_every_line_and_warned_once_per_model(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """Every llm.call of an unknown model says price_known: false and what stood in for it;
    the warning comes once per model per process and names the setting that fixes it."""
    api = client(Script(*(ok(chat_body(model=m)) for m in ("local-a", "local-a", "local-b"))), mode)

    @cost_tracked(operation="op")
    @mode.make
    def ask(model: str) -> Steps[str]:
        r = yield api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
        return r.choices[0].message.content or ""

    for model in ("local-a", "local-a", "local-b"):
        mode.invoke(ask, model)
    calls = [e for e in events if e["event"] == "llm.call"]
    assert [(c["price_known"], c["price_stand_in"]) for c in calls] == [(False, "gpt-4o")] * 3
    warnings = [e for e in events if e["event"] == "llm.price.unknown"]
    assert [w["gen_ai.request.model"] for w in warnings] == ["local-a", "local-b"]
    assert '[prices."local-a"]' in warnings[0]["fix"]


def test_nested_operations_roll_up(mode: Mode) -> None:
    """report includes report/summarize in the rolled-up view, each call counted once."""
    answers = (ok(chat_body(prompt_tokens=10, completion_tokens=1)) for _ in range(3))
    api = client(Script(*answers), mode)

    @cost_tracked(operation="summarize")
    @mode.make
    def summarize() -> Steps[None]:
        yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    @cost_tracked(operation="report")
    @mode.make
    def report() -> Steps[None]:
        yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "y"}]
        )
        yield summarize()
        yield summarize()

    mode.invoke(report)
    flat = usage_totals().by_operation(rollup=False)
    rolled = usage_totals().by_operation()
    assert flat["report"].calls == 1
    assert flat["report/summarize"].calls == 2
    assert rolled["report"].calls == 3
    assert rolled["report"].input_tokens == 30
    assert usage_totals().total().calls == 3
    assert list(usage_totals().by_model()) == ["gpt-4o-mini-2024-07-18"]
    assert len(usage_totals().by_day()) == 1


def test_totals_lose_no_call_across_threads() -> None:
    """Eight threads recording at once: every call is counted, with its usage."""
    from concurrent.futures import ThreadPoolExecutor

    from prismq_llmtools.call import Call
    from prismq_llmtools.cost.tracking import UsageTotals

    totals = UsageTotals()

    def record(i: int) -> None:
        call = Call("site", "op" if i % 2 else "other")
        call.outcome = "error" if i % 3 == 0 else "ok"
        call.usage = Usage(input_tokens=2, output_tokens=1)
        call.cost_usd = Decimal("0.001")
        call.retries = 1
        totals.record(call)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(16_000)))
    total = totals.total()
    assert total.calls == 16_000
    assert total.errors == len(range(0, 16_000, 3))
    assert total.input_tokens == 32_000
    assert total.output_tokens == 16_000
    assert total.cost_usd == Decimal("16.000")
    assert total.retries == 16_000
    assert totals.by_operation()["op"].calls == 8_000


def test_totals_split_at_utc_midnight_and_forget_on_reset() -> None:
    """Calls either side of midnight land on their own days; reset forgets the latest group."""
    from prismq_llmtools.call import Call
    from prismq_llmtools.cost.tracking import UsageTotals

    totals = UsageTotals()
    midnight = 20_000 * 86_400.0
    for when in (midnight - 0.001, midnight, midnight + 1, midnight - 1):
        call = Call("site", "op")
        call.outcome = "ok"
        totals.record(call, when=when)
    days = {day: t.calls for day, t in totals.by_day().items()}
    assert days == {"2024-10-03": 2, "2024-10-04": 2}
    totals.reset()
    call = Call("site", "op")
    call.outcome = "ok"
    totals.record(call, when=midnight)
    assert totals.total().calls == 1


def test_an_untracked_nested_call_counts_once_in_its_tracked_ancestor() -> None:
    """A tracked pipeline records what an untracked decorated helper used, whichever
    decorators the helper carries, and a tracked helper's usage is not counted twice."""
    api = client(lambda _request: ok(chat_body(prompt_tokens=12, completion_tokens=3)))

    def ask() -> str:
        answer = api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        return answer.choices[0].message.content or ""

    untracked = retried(attempts=2)(ask)
    tracked = cost_tracked(operation="helper")(ask)

    @cost_tracked(operation="pipeline")
    def pipeline() -> None:
        untracked()
        tracked()

    pipeline()
    by_operation = usage_totals().by_operation(rollup=False)
    assert by_operation["pipeline"].input_tokens == 12  # the untracked helper's request
    assert by_operation["pipeline/helper"].input_tokens == 12
    assert usage_totals().total().input_tokens == 24
    assert usage_totals().by_operation()["pipeline"].input_tokens == 24


def test_unknown_price_policy_changed_at_run_time_prices_the_next_call(mode: Mode) -> None:
    """configure() and override() of unknown_price decide how the next call is priced."""
    api = client(Script(*(ok(chat_body(model="local-c")) for _ in range(3))), mode)

    @cost_tracked(operation="op")
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(
            model="local-c", messages=[{"role": "user", "content": "x"}]
        )
        return r.choices[0].message.content or ""

    mode.invoke(ask)
    estimated = usage_totals().total().cost_usd
    assert estimated > 0
    with ask.llm.override(unknown_price="zero"):
        mode.invoke(ask)
    assert usage_totals().total().cost_usd == estimated
    ask.llm.configure(unknown_price="raise")
    with pytest.raises(UnknownPriceError):
        mode.invoke(ask)
