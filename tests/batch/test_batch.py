"""@batched: f.batch / f.abatch through the real client against the simulator.

Tests taking ``mode`` run once with a sync function batched by ``f.batch`` (threads) and once
with an async one batched by ``await f.abatch`` (tasks); see tests/drivers.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import joblib
import pytest

from prismq_llmtools import cost_tracked, retried
from prismq_llmtools.batch import batched
from prismq_llmtools.batch.items import Args
from prismq_llmtools.call import Call
from prismq_llmtools.errors import BatchError, ConfigurationError, ItemNotRun
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator
from tests.aspects import StubAspect
from tests.drivers import SYNC, Mode, Steps

from .conftest import named

TOPICS = [f"topic number {i}" for i in range(12)]


def title_site(mode: Mode, sim: Simulator, **options: Any) -> Any:
    client = mode.client_for(sim)

    @batched(**options)
    @cost_tracked()
    @mode.make
    def title(topic: str, *, model: str = "gpt-4o-mini", max_tokens: int = 16) -> Steps[str]:
        resp = yield client.chat.completions.create(
            model=model,
            max_tokens=max_tokens,
            messages=[{"role": "user", "content": f"Title for {topic}"}],
        )
        return resp.choices[0].message.content or ""

    return title


def test_results_come_back_in_input_order(mode: Mode, jitter_simulator: Simulator) -> None:
    """Calls finishing out of order still give answers in the order of the items."""
    title = title_site(mode, jitter_simulator, max_concurrency=6)
    expected = [mode.invoke(title, t) for t in TOPICS]  # the answers depend on the request
    assert mode.batch(title, TOPICS) == expected


def test_item_forms(mode: Mode, sim: Simulator) -> None:
    """An item is the argument, an args tuple, a kwargs dict, or an explicit Args."""
    title = title_site(mode, sim, max_concurrency=2)
    items = [
        "a",
        ("a",),
        {"topic": "a"},
        Args("a", model="gpt-4o-mini"),
        {"topic": "a", "max_tokens": 16},
    ]
    answers = mode.batch(title, items)
    assert len(set(answers)) == 1
    assert sim.stats().received == 5


def test_a_dict_that_is_not_keyword_arguments_is_one_argument(mode: Mode) -> None:
    """A dict whose keys are not all parameter names is passed as the single argument."""

    @batched()
    @mode.make
    def keys(request: dict[str, Any]) -> list[str]:
        return sorted(request)

    assert mode.batch(keys, [{"model": "m", "input": "x"}]) == [["input", "model"]]


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_is_bounded_for_threads(limit: int) -> None:
    """At most ``max_concurrency`` calls of a sync function run at once, and it is reached."""
    lock = threading.Lock()
    running = peak = 0
    together = threading.Barrier(limit, timeout=60)  # (breaks only if the limit is not reached)

    @batched(max_concurrency=limit)
    def work(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        together.wait()  # every round of ``limit`` calls is in flight at once
        with lock:
            running -= 1
        return x

    assert work.batch(range(4 * limit)) == list(range(4 * limit))
    assert peak == limit


async def test_concurrency_is_bounded_for_tasks() -> None:
    """An async function runs as at most ``max_concurrency`` tasks, and it is reached."""
    running = peak = 0
    together = asyncio.Barrier(4)

    @batched(max_concurrency=4)
    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.wait_for(together.wait(), 60)  # every round of 4 tasks at once
        running -= 1
        return x * 2

    assert await work.abatch(range(20)) == [x * 2 for x in range(20)]
    assert peak == 4


async def test_abatch_runs_a_sync_function_in_threads(sim: Simulator) -> None:
    """``abatch`` of a sync site runs its calls in worker threads without blocking the loop."""
    title = title_site(SYNC, sim, max_concurrency=3)
    answers = await title.abatch(TOPICS[:6])
    assert len(answers) == 6
    assert sim.stats().received == 6


def test_batch_of_an_async_function_outside_a_loop() -> None:
    """``f.batch`` on an async site runs its own event loop; inside a loop it says to await."""

    @batched()
    async def double(x: int) -> int:
        return x * 2

    assert double.batch([1, 2]) == [2, 4]

    async def inside() -> None:
        with pytest.raises(ConfigurationError, match="abatch"):
            double.batch([1])

    asyncio.run(inside())


def test_failures_are_kept_in_place(mode: Mode, sim: Simulator) -> None:
    """``return_exceptions=True`` puts each failure where its answer would be."""
    title = title_site(mode, sim, max_concurrency=3)
    results = mode.batch(
        title, ["ok", {"topic": "bad", "model": "no-such-model"}, "fine"], return_exceptions=True
    )
    assert isinstance(results[0], str)
    assert isinstance(results[1], Exception)
    assert type(results[1]).__name__ == "NotFoundError"
    assert isinstance(results[2], str)


def test_batch_error_carries_results_and_failures(mode: Mode, sim: Simulator) -> None:
    """Without ``return_exceptions`` a BatchError keeps every success and every failure."""
    title = title_site(mode, sim, max_concurrency=3)
    with pytest.raises(BatchError) as caught:
        mode.batch(title, ["ok", {"topic": "x", "model": "no-such-model"}, "fine"])
    err = caught.value
    assert err.succeeded == [0, 2]
    assert isinstance(err.results[0], str)
    assert err.results[1] is None
    assert list(err.failures) == [1]
    assert err.not_run == []
    assert "1 of 3 items failed" in str(err)


class BudgetExceeded(Exception):
    """Stands for prismq_llmtools.errors.BudgetExceeded (matched by name)."""


class Budget(StubAspect):
    """A budget of ``n`` calls, reserved before each call like @token_budgeted."""

    kind = "budget_stub"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def reserve(self, call: Call) -> None:
        if self.left <= 0:
            raise BudgetExceeded("daily budget exhausted")
        self.left -= 1


def test_an_exhausted_budget_stops_the_batch_cleanly(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """When the budget refuses, no further item starts; the error says which did not run."""
    title = attach(Budget(4))(title_site(mode, sim, max_concurrency=1))
    with pytest.raises(BatchError) as caught:
        mode.batch(title, TOPICS)
    err = caught.value
    assert isinstance(err.stop_reason, BudgetExceeded)
    assert err.succeeded == [0, 1, 2, 3]
    assert list(err.failures) == [4]
    assert err.not_run == list(range(5, 12))
    assert sim.stats().received == 4
    (summary,) = named(events, "llm.batch")
    assert summary["stopped_by"] == "BudgetExceeded"
    assert (summary["ok"], summary["failed"], summary["not_run"]) == (4, 1, 7)


def test_not_run_items_in_place(mode: Mode, sim: Simulator) -> None:
    """With ``return_exceptions`` the items that never ran hold an ItemNotRun."""
    title = attach(Budget(2))(title_site(mode, sim, max_concurrency=1))
    results = mode.batch(title, TOPICS[:5], return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "str",
        "str",
        "BudgetExceeded",
        "ItemNotRun",
        "ItemNotRun",
    ]
    assert isinstance(results[3], ItemNotRun)
    assert results[3].index == 3


def test_insufficient_quota_stops_the_batch(mode: Mode, sim: Simulator) -> None:
    """A 429 ``insufficient_quota`` (the account is out of credit) stops the batch too."""
    title = title_site(mode, sim, max_concurrency=1)
    sim.script(Fault(kind=FaultKind.NONE), Fault(kind=FaultKind.INSUFFICIENT_QUOTA))
    with pytest.raises(BatchError) as caught:
        mode.batch(title, TOPICS[:6])
    assert caught.value.succeeded == [0]
    assert caught.value.not_run == [2, 3, 4, 5]


class Limiter(StubAspect):
    """A rate limiter stand-in: one call per second on the site's clock."""

    kind = "limiter_stub"

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.next_free = clock.now()
        self.lock = threading.Lock()

    def before_attempt(self, call: Call) -> float:
        assert self.clock is not None
        with self.lock:
            now = self.clock.now()
            if now >= self.next_free:
                self.next_free = now + 1.0
                return 0.0
            return self.next_free - now


def test_every_item_waits_in_the_rate_limiter(mode: Mode, sim: Simulator, clock: FakeClock) -> None:
    """The limiter's admission applies to each item: waits are slept, not burst through."""
    title = attach(Limiter(clock))(title_site(mode, sim, max_concurrency=4))
    start = clock.now()
    mode.batch(title, TOPICS[:6])
    assert clock.now() - start >= 5.0  # 6 calls at 1/s: the last admitted 5 s later
    assert sum(clock.sleeps) >= 5.0
    assert sim.stats().received == 6


def test_summary_event(mode: Mode, sim: Simulator, events: list[dict[str, Any]]) -> None:
    """``llm.batch`` reports items, outcomes, cost, duration and the 429s absorbed."""
    client = mode.client_for(sim)

    @batched(max_concurrency=2)
    @retried(attempts=3, clock=FakeClock())
    @cost_tracked()
    @mode.make
    def title(topic: str) -> Steps[str]:
        resp = yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": topic}]
        )
        return resp.choices[0].message.content or ""

    sim.script(Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=0.5))
    mode.batch(title, TOPICS[:5])
    (summary,) = named(events, "llm.batch")
    calls = named(events, "llm.call")
    assert summary["items"] == summary["ok"] == 5
    assert summary["failed"] == summary["not_run"] == 0

    assert summary["rate_limited"] == 1
    assert summary["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls))
    assert summary["duration_s"] >= 0
    assert summary["site"] == title.llm.name


def test_methods_batch_with_their_instance(mode: Mode) -> None:
    """``obj.method.batch(items)`` binds the instance for every item."""

    class Scaler:
        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        @batched()
        @mode.make
        def scale(self, x: int) -> int:
            return x * self.k

    assert mode.batch(Scaler(3).scale, [1, 2]) == [3, 6]


def test_any_site_can_batch(mode: Mode) -> None:
    """``f.batch`` works on a site without @batched, with the default settings."""

    @retried()
    @mode.make
    def inc(x: int) -> int:
        return x + 1

    assert mode.batch(inc, [1, 2, 3]) == [2, 3, 4]


def test_items_inside_a_parent_call_are_its_children(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """A batch run inside a decorated function nests its calls under it."""

    @batched(max_concurrency=3)
    @mode.make
    def leaf(x: int) -> int:
        return x

    @retried()
    @mode.make
    def parent() -> Any:  # the sync batch, or the async one to await
        return leaf.abatch([1, 2, 3]) if mode.is_async else leaf.batch([1, 2, 3])

    assert mode.invoke(parent) == [1, 2, 3]
    calls = named(events, "llm.call")
    parent_id = next(c["call_id"] for c in calls if c["site"].endswith("parent"))
    assert [c.get("parent_id") for c in calls if c["site"].endswith("leaf")] == [parent_id] * 3


def test_progress_bar_on_request(mode: Mode, capsys: pytest.CaptureFixture[str]) -> None:
    """``progress=True`` draws rate, ETA and cost on stderr; off by default when not a tty."""

    @batched()
    @mode.make
    def echo(x: int) -> int:
        return x

    mode.batch(echo, range(3))
    assert capsys.readouterr().err == ""
    mode.batch(echo, range(3), progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "/s" in err
    assert "$0.0000" in err


def test_joblib_parallel_config_chooses_the_backend() -> None:
    """By default a thread pool of ours; with ``parallel_config(backend=...)``, joblib's.
    (Sync only: an async function's batch runs as tasks on the caller's loop.)"""

    @batched(max_concurrency=2)
    def where(x: int) -> str:
        return threading.current_thread().name

    assert all(name.startswith("prismq-batch") for name in where.batch(range(4)))
    with joblib.parallel_config(backend="threading"):
        names = where.batch(range(4))
    assert not any(name.startswith("prismq-batch") for name in names)
    assert threading.main_thread().name not in names


@pytest.mark.parametrize("concurrency", [1, 4])
def test_calls_are_attributed_to_items_only_while_items_run(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]], concurrency: int
) -> None:
    """The batch aspect joins the site's finish phase only while items run: items one at
    a time or several at once are all attributed, and calls outside a batch skip it."""
    from prismq_llmtools.batch import BatchAspect

    title = title_site(mode, sim, max_concurrency=concurrency)

    def batch_hook_active() -> bool:
        return any(
            getattr(hook, "__func__", None) is BatchAspect.finish
            for hook in core_of(title).hooks.finish
        )

    assert not batch_hook_active()
    mode.invoke(title, "outside")
    mode.batch(title, TOPICS[:6])
    assert not batch_hook_active()
    (summary,) = named(events, "llm.batch")
    item_costs = [c["cost_usd"] for c in named(events, "llm.call")][1:]
    assert len(item_costs) == 6
    assert summary["cost_usd"] == pytest.approx(sum(item_costs))
    assert summary["cost_usd"] > 0


@pytest.mark.parametrize("text", ["hello", b"hello", bytearray(b"hello")])
def test_a_text_is_not_a_batch_of_characters(mode: Mode, text: str | bytes) -> None:
    """``f.batch("hello")`` is a TypeError, never five calls of one character each."""
    calls: list[object] = []

    @batched()
    @mode.make
    def shout(text: object) -> object:
        calls.append(text)
        return text

    with pytest.raises(TypeError, match="one call per character"):
        mode.batch(shout, text)
    with pytest.raises(TypeError, match="one call per character"):
        mode.batch(shout, text, mode="batch_api")
    assert calls == []
    assert mode.batch(shout, [text]) == [text]
