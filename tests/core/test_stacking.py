"""Every stacking order of the decorators gives the same behaviour (same site, same events)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

import prismq_llmtools
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator, SimulatorConfig
from prismq_llmtools.tracking import usage_totals

VOLATILE = {"timestamp", "call_id", "parent_id", "request_id", "gen_ai.response.id", "duration_s"}


def _decorators(clock: FakeClock) -> dict[str, Callable[[], Any]]:
    """Each available decorator, configured so that it acts in the scenario."""
    made: dict[str, Callable[[], Any]] = {
        "retried": lambda: prismq_llmtools.retried(attempts=4, clock=clock),
        "cost_tracked": lambda: prismq_llmtools.cost_tracked(operation="titles"),
    }
    if hasattr(prismq_llmtools, "rate_limited"):
        made["rate_limited"] = lambda: prismq_llmtools.rate_limited(rpm=10_000, tpm=10_000_000)
    if hasattr(prismq_llmtools, "token_budgeted"):
        made["token_budgeted"] = lambda: prismq_llmtools.token_budgeted(max_prompt_tokens=4_000)
    return made


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=11)) as simulator:
        yield simulator


def _scenario(sim: Simulator, order: tuple[str, ...]) -> list[dict[str, Any]]:
    random.seed(5)  # backoff jitter is random: the same draws for every order
    clock = FakeClock()
    makers = _decorators(clock)
    sim.reset(buckets=True, prompt_cache=True, faults=True)
    sim.script(Fault(kind=FaultKind.SERVICE_UNAVAILABLE), Fault(kind=FaultKind.RATE_LIMIT))
    usage_totals().reset()
    api = sim.client()

    def write_title(article: str, *, model: str = "gpt-4o-mini") -> str:
        r = api.chat.completions.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": article}]
        )
        return r.choices[0].message.content or ""

    func: Any = write_title
    for name in reversed(order):
        func = makers[name]()(func)
    assert [a.kind for a in func.llm.aspects] == list(reversed(order))
    with capture_logs() as events:
        func("A bakery delivers bread by cargo bike.")
        func("A night train links the capital with ski resorts.")
    for event in events:
        for key in VOLATILE:
            event.pop(key, None)
    total = usage_totals().total()
    events.append({"totals": (total.calls, total.input_tokens, total.cost_usd, total.retries)})
    return events


def test_all_stacking_orders_behave_the_same(sim: Simulator) -> None:
    """Permuting the decorators changes neither the events, nor the usage, nor the costs."""
    names = tuple(_decorators(FakeClock()))
    orders = list(itertools.permutations(names))
    reference = _scenario(sim, orders[0])
    assert any(e.get("event") == "llm.retry" for e in reference)
    for order in orders[1:]:
        assert _scenario(sim, order) == reference, order
