"""Single flight: identical calls in flight together make one upstream call.

Concurrency differs by kind: sync callers are threads (a follower blocks on the leader),
async callers are tasks (a follower awaits it). Each behaviour is tested with threads and,
in a twin test, with tasks; tests taking ``mode`` run once per driver (see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.cache import cache_of, cached
from prismq_llmtools.call import Call
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.testing.simulator import Simulator
from tests.aspects import StubAspect
from tests.drivers import Mode, Steps

from .conftest import named

PROMPT = [{"role": "user", "content": "One answer for everyone"}]


def _wait_until(condition: Any, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` (the deadline only ends a test that is failing anyway)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_threads_share_one_upstream_call(
    sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """Eight threads asking the same thing at once: the simulator serves one request."""
    client = sim.client()

    @cached(cache_dir)
    def ask(messages: list[dict[str, str]]) -> str:
        # The leader asks upstream only once all eight have missed: seven wait on its flight.
        _wait_until(lambda: cache_of(ask).stats["misses"] == 8)
        resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return resp.choices[0].message.content or ""

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(PROMPT), range(8)))
    assert len(set(answers)) == 1
    assert sim.stats().received == 1
    assert sorted(c["cache"] for c in named(events, "llm.call")) == ["hit"] * 7 + ["miss"]
    assert {e["layer"] for e in named(events, "llm.cache.hit")} <= {"flight", "memory"}
    assert len(cache_of(ask)._flights) == 0


async def test_tasks_share_one_upstream_call(sim: Simulator, cache_dir: Path) -> None:
    """Eight asyncio tasks asking the same thing at once: one request, the loop never blocks
    (the leader waits, yielding, until the seven others wait on its flight: had one of them
    blocked the loop, the leader would never go on)."""
    client = sim.async_client()

    @cached(cache_dir)
    async def ask(messages: list[dict[str, str]]) -> str:
        while cache_of(ask).stats["misses"] < 8:  # noqa: ASYNC110 - no event tells; yielding is the point
            await asyncio.sleep(0)
        resp = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return resp.choices[0].message.content or ""

    async with client:
        answers = await asyncio.gather(*(ask(PROMPT) for _ in range(8)))
    assert len(set(answers)) == 1
    assert sim.stats().received == 1
    assert cache_of(ask).stats["hits"] == 7


def test_different_requests_do_not_wait_for_each_other(sim: Simulator, cache_dir: Path) -> None:
    """Only identical calls are merged; four different ones make four requests in parallel."""
    client = sim.client()
    together = threading.Barrier(4, timeout=60)  # (broken only if one waits for another)

    @cached(cache_dir)
    def ask(content: str) -> str:
        together.wait()
        resp = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
        return resp.choices[0].message.content or ""

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ask, ["a", "b", "c", "d"]))
    assert sim.stats().received == 4


async def test_different_requests_from_tasks_do_not_wait_for_each_other(
    sim: Simulator, cache_dir: Path
) -> None:
    """Only identical calls are merged; four different tasks make four requests at once."""
    client = sim.async_client()
    together = asyncio.Barrier(4)  # passed only when all four are inside at once

    @cached(cache_dir)
    async def ask(content: str) -> str:
        await asyncio.wait_for(together.wait(), timeout=60)
        resp = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
        return resp.choices[0].message.content or ""

    async with client:
        await asyncio.gather(*(ask(c) for c in ["a", "b", "c", "d"]))
    assert sim.stats().received == 4


def _gated_site(cache_dir: Path, outcome: Any) -> tuple[Any, threading.Event, list[int]]:
    """A cached function whose first run blocks until the gate opens."""
    gate = threading.Event()
    runs: list[int] = []

    @cached(cache_dir)
    def work(x: int) -> int:
        runs.append(x)
        gate.wait(10)
        return outcome(x)

    return work, gate, runs


def test_followers_get_the_leaders_exception(cache_dir: Path) -> None:
    """A failed leader fails its waiters with the same error; nothing is cached."""

    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    work, gate, runs = _gated_site(cache_dir, fail)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(work, 1) for _ in range(4)]
        _wait_until(lambda: cache_of(work).stats["misses"] == 4)
        gate.set()
        errors = [f.exception() for f in futures]
    assert runs == [1]
    assert all(isinstance(e, ValueError) and str(e) == "bad 1" for e in errors)
    with pytest.raises(ValueError, match="bad 1"):
        work(1)  # errors are not cached: it runs again
    assert runs == [1, 1]


def test_followers_get_the_leaders_answer(cache_dir: Path) -> None:
    """Waiters receive the leader's answer as hits; the function ran once."""
    work, gate, runs = _gated_site(cache_dir, lambda x: x * 10)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(work, 2) for _ in range(4)]
        _wait_until(lambda: cache_of(work).stats["misses"] == 4)
        gate.set()
        assert [f.result() for f in futures] == [20] * 4
    assert runs == [2]
    assert cache_of(work).stats["hits"] == 3


def _gated_async_site(cache_dir: Path, outcome: Any) -> tuple[Any, asyncio.Event, list[int]]:
    """A cached async function whose first run awaits until the gate opens."""
    gate = asyncio.Event()
    runs: list[int] = []

    @cached(cache_dir)
    async def work(x: int) -> int:
        runs.append(x)
        await gate.wait()
        return outcome(x)

    return work, gate, runs


async def _until(condition: Any) -> None:
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_follower_tasks_get_the_leaders_exception(cache_dir: Path) -> None:
    """A failed leading task fails the waiting tasks with the same error; nothing is cached."""

    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    work, gate, runs = _gated_async_site(cache_dir, fail)
    tasks = [asyncio.create_task(work(1)) for _ in range(4)]
    await _until(lambda: cache_of(work).stats["misses"] == 4)
    gate.set()
    errors = await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == [1]
    assert all(isinstance(e, ValueError) and str(e) == "bad 1" for e in errors)
    with pytest.raises(ValueError, match="bad 1"):
        await work(1)  # errors are not cached: it runs again
    assert runs == [1, 1]


async def test_follower_tasks_get_the_leaders_answer(cache_dir: Path) -> None:
    """Waiting tasks receive the leading task's answer as hits; the function ran once."""
    work, gate, runs = _gated_async_site(cache_dir, lambda x: x * 10)
    tasks = [asyncio.create_task(work(2)) for _ in range(4)]
    await _until(lambda: cache_of(work).stats["misses"] == 4)
    gate.set()
    assert await asyncio.gather(*tasks) == [20] * 4
    assert runs == [2]
    assert cache_of(work).stats["hits"] == 3


async def test_a_cancelled_leader_hands_over_to_a_waiter(cache_dir: Path) -> None:
    """If the leading task is cancelled, a waiting task runs the call itself."""
    runs: list[int] = []
    release = asyncio.Event()

    @cached(cache_dir)
    async def work(x: int) -> int:
        runs.append(x)
        await release.wait()
        return x + 1

    leader = asyncio.create_task(work(1))
    await asyncio.sleep(0)
    follower = asyncio.create_task(work(1))
    for _ in range(5):
        await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await follower == 2
    assert runs == [1, 1]
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_cancelled_follower_leaves_the_flight_to_the_others(cache_dir: Path) -> None:
    """A waiting task cancelled before the leader answers neither ends the flight nor
    disturbs the other waiters. (Tasks only: a blocked thread cannot be cancelled.)"""
    work, gate, runs = _gated_async_site(cache_dir, lambda x: x * 10)
    leader = asyncio.create_task(work(3))
    follower, other = asyncio.create_task(work(3)), asyncio.create_task(work(3))
    await _until(lambda: cache_of(work).stats["misses"] == 3)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    assert (await leader, await other) == (30, 30)
    assert runs == [3]
    assert len(cache_of(work)._flights) == 0


def test_a_function_calling_itself_with_the_same_arguments_does_not_deadlock(
    mode: Mode, cache_dir: Path
) -> None:
    """A nested identical call inside the leader runs instead of waiting on its ancestor."""
    depth: list[int] = []

    @cached(cache_dir)
    @mode.make
    def recurse(x: int) -> Steps[int]:
        depth.append(x)
        if len(depth) == 1:
            inner = yield recurse(x)
            return inner + 1
        return x

    assert mode.invoke(recurse, 5) == 6
    assert mode.invoke(recurse, 5) == 6
    assert depth == [5, 5]


class FailingSettle(StubAspect):
    """Raises in the settle phase while armed: the cache's own clean-up never runs."""

    kind = "failing_settle"

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def settle(self, call: Call) -> None:
        if self.armed:
            raise RuntimeError("settle failed")


def test_a_leader_that_never_cleans_up_frees_its_waiters_once_collected(cache_dir: Path) -> None:
    """A leader whose clean-up phases never ran (another aspect raised first) ends its flight
    as abandoned when its Call is collected, so an identical call runs instead of waiting."""
    runs: list[int] = []
    failing = FailingSettle()

    @attach(failing)
    @cached(cache_dir)
    def work(x: int) -> int:
        runs.append(x)
        return x + 1

    with pytest.raises(RuntimeError, match="settle failed"):
        work(1)
    failing.armed = False  # (the failed Call is gone by now: nothing else refers to it)
    answers: list[int] = []  # (a daemon thread: one left waiting must not block the exit)
    runner = threading.Thread(target=lambda: answers.append(work(1)), daemon=True)
    runner.start()
    runner.join(timeout=10)
    assert answers == [2], "the identical call still waits on the failed leader's flight"
    assert runs == [1, 1]


async def test_a_leader_that_never_cleans_up_frees_its_waiting_tasks_once_collected(
    cache_dir: Path,
) -> None:
    """The async twin: once the failed leading call is collected, an identical task runs
    instead of awaiting its flight forever."""
    runs: list[int] = []
    failing = FailingSettle()

    @attach(failing)
    @cached(cache_dir)
    async def work(x: int) -> int:
        runs.append(x)
        return x + 1

    with pytest.raises(RuntimeError, match="settle failed"):
        await work(1)
    failing.armed = False
    answer = await asyncio.wait_for(work(1), timeout=10)
    assert answer == 2, "the identical call still waits on the failed leader's flight"
    assert runs == [1, 1]
