"""Every stacking order of the decorators gives the same behaviour (same site, same events),
for sync and async functions alike (see tests/drivers.py)."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

import prismq_llmtools
from prismq_llmtools.cost.tracking import usage_totals
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator, SimulatorConfig
from tests.drivers import Mode, Steps

VOLATILE = {"timestamp", "call_id", "parent_id", "request_id", "gen_ai.response.id", "duration_s"}


def _decorators(clock: FakeClock, cache_dir: str) -> dict[str, Callable[[], Any]]:
    """Every decorator, configured so that it acts in the scenario, with fresh state."""
    registry = StateRegistry()
    return {
        "retried": lambda: prismq_llmtools.retried(attempts=4, clock=clock),
        "cost_tracked": lambda: prismq_llmtools.cost_tracked(operation="titles"),
        "rate_limited": lambda: prismq_llmtools.rate_limited(
            rpm=10_000, tpm=10_000_000, registry=registry, clock=clock
        ),
        "token_budgeted": lambda: prismq_llmtools.token_budgeted(
            max_prompt_tokens=4_000, daily_tokens=1_000_000, registry=registry
        ),
        "cached": lambda: prismq_llmtools.cached(cache_dir),
        "batched": lambda: prismq_llmtools.batched(max_concurrency=2),
    }


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=11)) as simulator:
        yield simulator


def _scenario(mode: Mode, sim: Simulator, order: tuple[str, ...]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="stacking-cache-") as cache_dir:
        return _scenario_in(mode, sim, order, cache_dir)


def _scenario_in(
    mode: Mode, sim: Simulator, order: tuple[str, ...], cache_dir: str
) -> list[dict[str, Any]]:
    random.seed(5)  # backoff jitter is random: the same draws for every order
    clock = FakeClock()
    makers = _decorators(clock, cache_dir)
    sim.reset(buckets=True, prompt_cache=True, faults=True)
    sim.script(Fault(kind=FaultKind.SERVICE_UNAVAILABLE), Fault(kind=FaultKind.RATE_LIMIT))
    usage_totals().reset()
    api = mode.client_for(sim)

    @mode.make
    def write_title(article: str, *, model: str = "gpt-4o-mini") -> Steps[str]:
        r = yield api.chat.completions.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": article}]
        )
        return r.choices[0].message.content or ""

    func: Any = write_title
    for name in reversed(order):
        func = makers[name]()(func)
    assert [a.kind for a in core_of(func).aspects] == list(reversed(order))
    with capture_logs() as events:
        mode.invoke(func, "A bakery delivers bread by cargo bike.")
        mode.invoke(func, "A night train links the capital with ski resorts.")
        mode.invoke(func, "A bakery delivers bread by cargo bike.")  # served by the cache
    for event in events:
        for key in VOLATILE:
            event.pop(key, None)
    total = usage_totals().total()
    events.append({"totals": (total.calls, total.input_tokens, total.cost_usd, total.retries)})
    return events


NAMES = ("retried", "cost_tracked", "rate_limited", "token_budgeted", "cached", "batched")
# All 720 orders would take a minute; every decorator in every position, and both orders of
# every pair, are covered by the rotations of two opposite orders.
ORDERS = sorted(
    {NAMES[i:] + NAMES[:i] for i in range(6)}
    | {NAMES[::-1][i:] + NAMES[::-1][:i] for i in range(6)}
)


def test_stacking_orders_behave_the_same(mode: Mode, sim: Simulator) -> None:
    """Permuting the decorators changes neither the events, nor the usage, nor the costs."""
    reference = _scenario(mode, sim, ORDERS[0])
    kinds = [e.get("event") for e in reference]
    assert "llm.retry" in kinds
    assert "llm.cache.hit" in kinds
    for order in ORDERS[1:]:
        assert _scenario(mode, sim, order) == reference, order


def test_sync_and_async_functions_behave_the_same(sim: Simulator) -> None:
    """The two drivers give the same events, usage and costs for the same scenario."""
    sync, asynchronous = Mode("sync"), Mode("async")
    try:
        assert _scenario(asynchronous, sim, ORDERS[0]) == _scenario(sync, sim, ORDERS[0])
    finally:
        asynchronous.close()
