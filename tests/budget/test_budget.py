"""@token_budgeted on a site: prompt caps, truncation, completion caps, period budgets.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from prismq_llmtools import BudgetExceeded, ConfigurationError, token_budgeted
from prismq_llmtools.budget import budget_status
from prismq_llmtools.cost import cost_of
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.pricing import price_table
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.usage import Usage
from tests.drivers import Mode, Steps
from tests.ratelimit.fakes import MODEL, Script, client, ok
from tests.ratelimit.test_ratelimit import BrokenStore, FakeCache

SYSTEM = {"role": "system", "content": "You write short titles."}


def history(turns: int) -> list[dict[str, Any]]:
    """A conversation: a system message, then alternating user/assistant messages."""
    out: list[dict[str, Any]] = [SYSTEM]
    for i in range(turns):
        out.append({"role": "user", "content": f"Question {i}: " + "words " * 40})
        out.append({"role": "assistant", "content": f"Answer {i}: " + "more " * 40})
    out.append({"role": "user", "content": "The final question."})
    return out


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return count_request({"model": MODEL, "messages": messages}).prompt_tokens


def answer(prompt: int, completion: int) -> dict[str, Any]:
    """A response-shaped dict whose usage the site reads."""
    return {
        "model": MODEL,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


def test_a_prompt_over_the_cap_raises_before_any_network_traffic(
    mode: Mode, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """policy raise: BudgetExceeded (scope, requested, remaining), and no request is sent."""
    script = Script()
    api = client(script, mode)

    @token_budgeted(max_prompt_tokens=50, registry=registry)
    @mode.make
    def ask(messages: list[dict[str, Any]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]

    messages = history(2)
    with pytest.raises(BudgetExceeded) as caught:
        mode.invoke(ask, messages)
    assert script.requests == 0
    error = caught.value
    assert (error.scope, error.budget, error.unit) == (ask.llm.name, "max_prompt_tokens", "tokens")
    assert (error.requested, error.remaining) == (prompt_tokens(messages), 50)
    exceeded = next(e for e in events if e["event"] == "llm.budget.exceeded")
    assert exceeded["requested"] == prompt_tokens(messages)


@pytest.mark.parametrize("positional", [True, False])
def test_truncation_drops_the_oldest_non_system_messages_and_the_function_sees_it(
    mode: Mode, registry: StateRegistry, events: list[dict[str, Any]], positional: bool
) -> None:
    """policy truncate: the function receives the shortened messages, system kept."""
    seen: list[list[dict[str, Any]]] = []
    messages = history(4)
    limit = prompt_tokens([SYSTEM, *messages[-3:]])

    @token_budgeted(max_prompt_tokens=limit, prompt_policy="truncate", registry=registry)
    @mode.make
    def ask(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        seen.append(messages)
        return answer(prompt_tokens(messages), 3)

    if positional:
        mode.invoke(ask, messages)
    else:
        mode.invoke(ask, messages=messages)
    assert seen == [[SYSTEM, *messages[-3:]]]
    truncated = next(e for e in events if e["event"] == "llm.budget.truncated")
    assert truncated["removed_messages"] == 6
    assert truncated["prompt_tokens_after"] == limit <= truncated["prompt_tokens_before"]
    call = next(e for e in events if e["event"] == "llm.call")
    assert call["prompt_tokens_estimate"] == limit


def test_truncation_keeps_tool_calls_with_their_results(
    mode: Mode, registry: StateRegistry
) -> None:
    """An assistant tool call and the tool results answering it are dropped together."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        SYSTEM,
        {"role": "user", "content": "old " * 50},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "result " * 50},
        {"role": "user", "content": "new question"},
    ]
    seen: list[Any] = []

    @token_budgeted(
        max_prompt_tokens=prompt_tokens([SYSTEM, messages[-1]]),
        prompt_policy="truncate",
        registry=registry,
    )
    @mode.make
    def ask(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        seen.append(messages)
        return answer(10, 1)

    mode.invoke(ask, messages)
    assert seen == [[SYSTEM, messages[-1]]]


def test_a_prompt_that_cannot_be_truncated_enough_raises(
    mode: Mode, registry: StateRegistry
) -> None:
    """When the system messages and the newest message alone exceed the cap, it raises."""

    @token_budgeted(max_prompt_tokens=5, prompt_policy="truncate", registry=registry)
    @mode.make
    def ask(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        raise AssertionError("not called")

    with pytest.raises(BudgetExceeded, match="cannot be truncated"):
        mode.invoke(ask, history(2))


def test_a_default_completion_cap_is_injected_into_the_arguments(
    mode: Mode,
    registry: StateRegistry,
) -> None:
    """completion_cap fills a max_tokens parameter the caller left unset."""
    seen: list[int | None] = []

    @token_budgeted(completion_cap=77, registry=registry)
    @mode.make
    def ask(
        messages: list[dict[str, Any]], *, model: str = MODEL, max_tokens: int | None = None
    ) -> dict[str, Any]:
        seen.append(max_tokens)
        return answer(10, 1)

    mode.invoke(ask, [{"role": "user", "content": "hi"}])
    mode.invoke(ask, [{"role": "user", "content": "hi"}], max_tokens=5)
    assert seen == [77, 5]


def test_a_default_completion_cap_reaches_requests_the_function_builds(
    mode: Mode,
    registry: StateRegistry,
) -> None:
    """A plain-text site's own request gets the cap at the client boundary."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        return ok()

    api = client(handler, mode)

    @token_budgeted(completion_cap=64, registry=registry, model=MODEL)
    @mode.make
    def title(article: str) -> Steps[str]:
        response = yield api.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": article}]
        )
        return response.choices[0].message.content or ""

    mode.invoke(title, "A bakery delivers bread by cargo bike.")
    outside = [{"role": "user", "content": "outside"}]
    mode.invoke(api.chat.completions.create, model=MODEL, messages=outside)
    assert bodies[0]["max_completion_tokens"] == 64
    assert "max_completion_tokens" not in bodies[1]


def test_a_token_budget_reserves_the_worst_case_and_settles_the_actual(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Reserve prompt + cap before, record actual usage after, refuse beyond the limit."""
    messages = [{"role": "user", "content": "Title for a bakery."}]
    prompt = prompt_tokens(messages)
    calls = 0

    @token_budgeted(daily_tokens=3 * (prompt + 100), registry=registry, clock=clock)
    @mode.make
    def ask(
        messages: list[dict[str, Any]], *, model: str = MODEL, max_tokens: int = 100
    ) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        assert budget_status(ask)["daily_tokens"]["reserved"] == prompt + 100
        return answer(prompt, 40)

    for _ in range(4):
        mode.invoke(ask, messages)
    status = budget_status(ask)["daily_tokens"]
    assert (status["spent"], status["reserved"]) == (4 * (prompt + 40), 0)
    with pytest.raises(BudgetExceeded) as caught:
        mode.invoke(ask, messages, max_tokens=3 * (prompt + 100))
    assert calls == 4
    assert caught.value.remaining == status["remaining"]
    clock.advance(86_400)  # a new day
    mode.invoke(ask, messages)
    assert budget_status(ask)["daily_tokens"]["spent"] == prompt + 40


def test_a_usd_budget_reserves_the_worst_case_cost_and_warns_at_thresholds(
    mode: Mode, clock: FakeClock, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """USD budgets hold the worst case at the model's price; crossing 50% is an event."""
    messages = [{"role": "user", "content": "Title for a bakery."}]
    prompt = prompt_tokens(messages)
    price = price_table().price_for(MODEL)
    worst = cost_of(Usage(input_tokens=prompt, output_tokens=1_000), price).total_usd
    actual = cost_of(Usage(input_tokens=prompt, output_tokens=500), price).total_usd

    @token_budgeted(
        daily_usd=worst * 3, thresholds=(0.5,), completion_cap=1_000, registry=registry, clock=clock
    )
    @mode.make
    def ask(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        assert budget_status(ask)["daily_usd"]["reserved"] >= worst
        return answer(prompt, 500)

    for _ in range(4):  # each keeps the worst case free until it settles
        mode.invoke(ask, messages)
    status = budget_status(ask)["daily_usd"]
    assert status["spent"] == pytest.approx(4 * actual, abs=Decimal("0.00001"))
    threshold = [e for e in events if e["event"] == "llm.budget.threshold"]
    assert len(threshold) == 1
    assert threshold[0]["unit"] == "usd"
    assert threshold[0]["fraction"] == 0.5
    with pytest.raises(BudgetExceeded) as caught:
        mode.invoke(ask, messages)
    assert caught.value.unit == "usd"
    assert isinstance(caught.value.remaining, Decimal)


def test_sites_naming_a_scope_share_its_budget(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """scope= makes several sites draw on one budget."""

    @token_budgeted(hourly_tokens=100, scope="team", registry=registry, clock=clock, model=MODEL)
    @mode.make
    def first(text: str) -> dict[str, Any]:
        return answer(50, 10)

    @token_budgeted(hourly_tokens=100, scope="team", registry=registry, clock=clock, model=MODEL)
    @mode.make
    def second(text: str) -> dict[str, Any]:
        return answer(30, 10)

    mode.invoke(first, "a")
    mode.invoke(second, "b")
    assert budget_status(first)["hourly_tokens"]["spent"] == 100
    with pytest.raises(BudgetExceeded, match="'team'"):
        mode.invoke(second, "c")


def test_a_rolling_window_budget_frees_old_spending(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """window_s + window_tokens: a budget over the last N seconds."""

    @token_budgeted(window_s=60, window_tokens=50, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask(text: str) -> dict[str, Any]:
        return answer(40, 10)

    mode.invoke(ask, "a")
    with pytest.raises(BudgetExceeded):
        mode.invoke(ask, "b")
    clock.advance(62)
    mode.invoke(ask, "c")


def test_a_cache_hit_reserves_nothing(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Calls answered by an enter hook never touch the budget."""

    @attach(FakeCache())
    @token_budgeted(daily_tokens=1, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask(text: str) -> str:
        raise AssertionError("not called")

    assert mode.invoke(ask, "x" * 100) == "from cache"
    assert budget_status(ask)["daily_tokens"]["spent"] == 0


def test_a_failed_call_settles_with_what_it_used(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A call failing before any usage releases its reservation."""

    @token_budgeted(daily_tokens=1_000, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask(text: str) -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        mode.invoke(ask, "hello")
    assert budget_status(ask)["daily_tokens"] == {
        "unit": "tokens",
        "limit": 1_000,
        "spent": 0,
        "reserved": 0,
        "remaining": 1_000,
    }


def test_an_interrupted_call_releases_its_reservation(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A KeyboardInterrupt in the function (no usage seen) releases its reservation."""

    @token_budgeted(daily_tokens=1_000, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask(text: str) -> str:
        assert budget_status(ask)["daily_tokens"]["reserved"] > 0
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mode.invoke(ask, "hello")
    status = budget_status(ask)["daily_tokens"]
    assert (status["spent"], status["reserved"], status["remaining"]) == (0, 0, 1_000)


async def test_a_task_cancelled_in_the_function_releases_its_reservation(
    clock: FakeClock, registry: StateRegistry
) -> None:
    """Cancellation, the async counterpart of an interrupt: a task cancelled while the
    function awaits (no usage seen) releases its reservation."""
    running = asyncio.Event()

    @token_budgeted(daily_tokens=1_000, registry=registry, clock=clock, model=MODEL)
    async def ask(text: str) -> str:
        running.set()
        await asyncio.Event().wait()  # until cancelled
        raise AssertionError("not reached")

    task = asyncio.create_task(ask("hello"))
    await running.wait()
    assert budget_status(ask)["daily_tokens"]["reserved"] > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    status = budget_status(ask)["daily_tokens"]
    assert (status["spent"], status["reserved"], status["remaining"]) == (0, 0, 1_000)


def test_concurrent_threads_never_overspend_a_hard_budget(registry: StateRegistry) -> None:
    """64 threads against a USD budget: spending never exceeds it, and it is nearly used."""
    messages = [{"role": "user", "content": "Title for a bakery."}]
    prompt = prompt_tokens(messages)
    price = price_table().price_for(MODEL)
    per_call = cost_of(Usage(input_tokens=prompt, output_tokens=200), price).total_usd
    limit = per_call * 40

    @token_budgeted(daily_usd=limit, registry=registry)
    def ask(
        messages: list[dict[str, Any]], *, model: str = MODEL, max_tokens: int = 200
    ) -> dict[str, Any]:
        return answer(prompt, max_tokens)

    refused = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal refused
        for _ in range(3):
            try:
                ask(messages)
            except BudgetExceeded:
                with lock:
                    refused += 1

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = budget_status(ask)["daily_usd"]["spent"]
    fits = int(limit * 1_000_000) // math.ceil(per_call * 1_000_000)  # micro-USD, rounded safe
    assert spent <= limit
    assert refused == 64 * 3 - fits
    assert fits >= 39


async def test_concurrent_tasks_never_overspend_a_hard_budget(registry: StateRegistry) -> None:
    """64 tasks against a USD budget, each holding its reservation across an await:
    spending never exceeds it, and it is nearly used."""
    messages = [{"role": "user", "content": "Title for a bakery."}]
    prompt = prompt_tokens(messages)
    price = price_table().price_for(MODEL)
    per_call = cost_of(Usage(input_tokens=prompt, output_tokens=200), price).total_usd
    limit = per_call * 40

    @token_budgeted(daily_usd=limit, registry=registry)
    async def ask(
        messages: list[dict[str, Any]], *, model: str = MODEL, max_tokens: int = 200
    ) -> dict[str, Any]:
        await asyncio.sleep(0)  # the other tasks reserve meanwhile
        return answer(prompt, max_tokens)

    refused = 0

    async def worker() -> None:
        nonlocal refused
        for _ in range(3):
            try:
                await ask(messages)
            except BudgetExceeded:
                refused += 1

    await asyncio.gather(*(worker() for _ in range(64)))
    spent = budget_status(ask)["daily_usd"]["spent"]
    fits = int(limit * 1_000_000) // math.ceil(per_call * 1_000_000)  # micro-USD, rounded safe
    assert spent <= limit
    assert refused == 64 * 3 - fits
    assert fits >= 39


def test_settings_are_validated_and_overridable(mode: Mode, registry: StateRegistry) -> None:
    """Bad budgets fail at decoration, naming the site; runtime overrides apply."""
    with pytest.raises(ConfigurationError, match="window_s"):
        token_budgeted(window_tokens=5, name="b")(answer)
    with pytest.raises(ConfigurationError, match="site 'b': daily_usd"):
        token_budgeted(daily_usd="lots", name="b")(answer)
    with pytest.raises(ConfigurationError, match="site 'b': prompt_policy"):
        token_budgeted(prompt_policy="shorten", name="b")(answer)  # type: ignore[arg-type]

    @token_budgeted(daily_tokens=10, registry=registry, model=MODEL)
    @mode.make
    def ask(text: str) -> dict[str, Any]:
        return answer(1, 1)

    with ask.llm.override(daily_tokens=10_000, daily_usd=0.5):
        mode.invoke(ask, "hello")
        assert budget_status(ask)["daily_usd"]["limit"] == Decimal("0.5")


@pytest.mark.parametrize("policy", ["raise", "allow"])
def test_an_unreachable_store_fails_closed_or_open(
    mode: Mode, registry: StateRegistry, policy: str, events: list[dict[str, Any]]
) -> None:
    """Budgets follow the same unreachable-store policy as rate limits."""

    class Broken(BrokenStore):
        def reserve(self, *args: Any, **kwargs: Any) -> Any:
            return self.admit()

    registry.install("memory", Broken())

    @token_budgeted(
        daily_tokens=10,
        on_store_error=policy,
        registry=registry,
        model=MODEL,  # type: ignore[arg-type]
    )
    @mode.make
    def ask(text: str) -> dict[str, Any]:
        return answer(1, 1)

    if policy == "raise":
        with pytest.raises(ConnectionError):
            mode.invoke(ask, "x")
    else:
        mode.invoke(ask, "x")
        assert any(e["event"] == "llm.store.error" for e in events)


def test_a_budget_scope_stays_shared_across_a_registry_reset(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """After ``registry.reset()`` a site that had opened the store and a site opening it
    now spend from the same fresh budget."""
    messages = [{"role": "user", "content": "Title for a bakery."}]

    @token_budgeted(daily_tokens=10_000, scope="team", registry=registry, clock=clock)
    @mode.make
    def first(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        return answer(10, 1)

    @token_budgeted(daily_tokens=10_000, scope="team", registry=registry, clock=clock)
    @mode.make
    def second(messages: list[dict[str, Any]], *, model: str = MODEL) -> dict[str, Any]:
        return answer(10, 1)

    mode.invoke(first, messages)
    registry.reset()
    mode.invoke(first, messages)
    mode.invoke(second, messages)
    assert budget_status(first)["daily_tokens"]["spent"] == 22
    assert budget_status(second)["daily_tokens"]["spent"] == 22
