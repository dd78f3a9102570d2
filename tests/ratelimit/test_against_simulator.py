"""@rate_limited against the simulator enforcing the same limits: zero 429s, near the limit.

Client and server share a virtual clock that moves only when every client waits on it
(``virtual_time``), so a run covers simulated minutes in a fraction of a real second and
its outcome does not depend on the machine's load. Throughput is measured after the
initial burst and compared with the binding limit.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from typing import Any

import openai
import pytest

from prismq_llmtools import rate_limited
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing import Accounting, Simulator, SimulatorConfig

from .virtual_time import TaskClock, VirtualClock

MODEL = "gpt-4o-mini"
# openai's defaults but for the connect timeout: its 5 s can fire on a busy machine, and a
# loopback connection with nothing listening is refused at once anyway.
TIMEOUT = openai.Timeout(600.0, connect=60.0)
WORDS = [
    "administration",
    "development",
    "organization",
    "responsibility",
    "international",
    "environment",
    "performance",
    "information",
    "relationship",
    "understanding",
    "management",
    "technology",
]


@dataclass
class Run:
    """What one run did: completion times (simulated) and failures, and what the server saw."""

    done: list[float]
    errors: list[BaseException]
    served: int
    rate_limited: int
    charged_tokens: int

    def sustained(self, start: float, end: float) -> float:
        """Requests per simulated second completed within [start, end)."""
        return sum(1 for t in self.done if start <= t < end) / (end - start)


def prompt(rng: random.Random, words: int) -> list[dict[str, str]]:
    """English-like text that OpenAI's character estimate charges above its token count."""
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return [{"role": "user", "content": f"Write a title for: {text}"}]


@pytest.fixture
def simulator_at() -> Iterator[Any]:
    """``start(clock, **config)``: a simulator whose buckets run on ``clock``."""
    started: list[Simulator] = []

    def start(clock: VirtualClock | TaskClock, **config: Any) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config), clock=clock.now).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def _threads(sim: Simulator, f: Any, clock: VirtualClock, seconds: float, workers: int) -> Run:
    done, errors = _work(sim.url, f, clock, clock.now() + seconds, workers)
    return _collect(sim, done, errors)


def _work(
    url: str, f: Any, clock: VirtualClock, end: float, workers: int, seed: int = 0
) -> tuple[list[float], list[BaseException]]:
    done: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        rng = random.Random(seed + n)
        with (
            clock.participant(n if clock.serial else None),
            openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0, timeout=TIMEOUT) as api,
        ):
            while clock.now() < end:
                try:
                    f(api, prompt(rng, rng.randint(4, 12)))
                except openai.OpenAIError as exc:
                    with lock:
                        errors.append(exc)
                    continue
                with lock:
                    done.append(clock.now())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done, errors


def _collect(sim: Simulator, done: list[float], errors: list[BaseException]) -> Run:
    stats = sim.stats()
    return Run(
        done=sorted(done),
        errors=errors,
        served=stats.served,
        rate_limited=stats.rate_limited,
        charged_tokens=stats.charged_tokens,
    )


def _limited(clock: VirtualClock, **limits: Any) -> Any:  # a new site (and registry) each time
    @rate_limited(registry=StateRegistry(), clock=clock, **limits)
    def ask(api: openai.OpenAI, messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=30)  # type: ignore[arg-type]

    return ask


@pytest.mark.parametrize("admission", ["exact", "chars"])
def test_threads_hold_an_rpm_limit_with_zero_429s(simulator_at: Any, admission: str) -> None:
    """8 threads, requests per minute binding: no 429, and the sustained rate is the limit."""
    clock = VirtualClock(participants=8)
    sim = simulator_at(clock, rpm=120, tpm=1_000_000, admission=admission)
    ask = _limited(clock, rpm=120, tpm=1_000_000)
    start = clock.now()
    run = _threads(sim, ask, clock, seconds=60, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    ratio = run.sustained(start + 20, start + 60) / (120 / 60)
    assert ratio > 0.9, ratio


@pytest.mark.parametrize("admission", ["exact", "chars"])
def test_threads_hold_a_tpm_limit_with_zero_429s(simulator_at: Any, admission: str) -> None:
    """8 threads, tokens per minute binding, under both of the server's accountings (its
    character estimate charges these prompts far above their token count)."""
    clock = VirtualClock(participants=8)
    sim = simulator_at(clock, rpm=10_000, tpm=4_000, admission=admission)
    ask = _limited(clock, rpm=10_000, tpm=4_000)
    start = clock.now()
    run = _threads(sim, ask, clock, seconds=60, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    steady = [t for t in run.done if t >= start + 20]
    assert len(steady) > 10
    charged_per_request = run.charged_tokens / run.served
    ratio = len(steady) * charged_per_request / 40 / (4_000 / 60)
    assert ratio > 0.85, ratio


async def test_asyncio_tasks_hold_the_limits_with_zero_429s(simulator_at: Any) -> None:
    """16 concurrent tasks on the async client, both limits active: no 429."""
    clock = TaskClock(participants=16)
    sim = simulator_at(clock, rpm=150, tpm=6_000, admission="chars")
    api = sim.async_client()

    @rate_limited(rpm=150, tpm=6_000, registry=StateRegistry(), clock=clock)
    async def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return await api.chat.completions.create(model=model, messages=messages, max_tokens=30)  # type: ignore[arg-type]

    done: list[float] = []
    end = clock.now() + 45

    async def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while clock.now() < end:
                await ask(prompt(rng, rng.randint(4, 12)))
                done.append(clock.now())
        finally:
            clock.leave()

    tasks = [asyncio.ensure_future(work(n)) for n in range(16)]
    try:
        await asyncio.gather(*tasks)
    finally:  # one task failing ends the others, and their connections, here
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.close()
    assert sim.stats().rate_limited == 0
    assert len(done) > 60


def test_a_client_clock_started_before_the_servers_still_gets_no_429(simulator_at: Any) -> None:
    """The client's clock an hour ahead of the server's, limits exactly the server's:
    anchoring to the server's headers keeps every request inside the limit."""
    clock = VirtualClock(participants=8)
    sim = simulator_at(clock, rpm=120, tpm=1_000_000)
    early = clock.shifted(3_600.0)
    ask = _limited(early, rpm=120, tpm=1_000_000)
    start = early.now()
    run = _threads(sim, ask, early, seconds=45, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    assert run.sustained(start + 15, start + 45) / 2.0 > 0.85


def test_an_account_shared_with_another_client_is_followed_from_headers(
    simulator_at: Any,
) -> None:
    """Another client spent half the tokens first: the headers tell us, and we adapt."""
    clock = VirtualClock(participants=4)
    sim = simulator_at(clock, rpm=10_000, tpm=4_000)
    with sim.client() as other:
        for _ in range(10):
            other.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x " * 150}], max_tokens=40
            )
    ask = _limited(clock, rpm=10_000, tpm=4_000)
    run = _threads(sim, ask, clock, seconds=30, workers=4)
    assert (run.rate_limited, run.errors) == (0, [])


def _process(
    url: str, store: str, clock: VirtualClock, end: float, seed: int, results: Any
) -> None:
    ask = _limited(clock, rpm=10_000, tpm=4_000, store=store)
    done, errors = _work(url, ask, clock, end, workers=4, seed=seed)
    results.put((done, [repr(e) for e in errors]))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_sharing_a_store_hold_the_limit_together(
    simulator_at: Any,
    kind: str,
    tmp_path: Any,
    request: pytest.FixtureRequest,
    processes: ForkServerContext,
) -> None:
    """2 processes x 4 threads share one SQLite file or one Redis: still zero 429s."""
    clock = VirtualClock(participants=2 * 4)  # shared with the processes
    sim = simulator_at(clock, rpm=10_000, tpm=4_000, admission="chars")
    if kind == "sqlite":
        store = f"sqlite://{tmp_path / 'limits.db'}"
    else:  # the simulated clock runs fast: Redis must use it, not its own
        store = f"{request.getfixturevalue('redis_server')}?clock=caller"
        StateRegistry().store(store).clear()
    results = processes.Queue()
    end = clock.now() + 60
    workers = [  # (daemons: one waiting for a peer that died never outlives the test)
        processes.Process(
            target=_process, args=(sim.url, store, clock, end, 10 * n, results), daemon=True
        )
        for n in range(2)
    ]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [errors for _, errors in collected] == [[], []]
    assert sim.stats().rate_limited == 0
    assert sum(len(done) for done, _ in collected) > 5  # throughput: see the benchmark


SKEWED = {
    "ratio 0.7": Accounting(factor=0.7),
    "ratio 1.5": Accounting(factor=1.5),
    "20 a request": Accounting(per_request=20),
    "body bytes": Accounting(prompt="bytes"),
}


@pytest.mark.parametrize("accounting", list(SKEWED), ids=list(SKEWED))
def test_threads_learn_a_server_that_counts_otherwise(simulator_at: Any, accounting: str) -> None:
    """A server charging another multiple of our count, a constant more, or its body's
    bytes: the limiter learns it from the headers and holds the limit (at most 1 x 429 per
    100 requests after the first 30 s, at least 95% of the limit used).

    The steady part lasts two simulated minutes, so that it holds more than 100 requests in
    every accounting. The clock is serial: threads due at the same instant reach the server
    in a fixed order, so the run is the same every time (with racing threads, about one run
    in 40 against the 1.5x server saw 2 or 3 x 429 in its ~115 steady requests)."""
    clock = VirtualClock(participants=8, serial=True)
    sim = simulator_at(clock, rpm=10_000, tpm=4_000, admission=SKEWED[accounting])
    ask = _limited(clock, rpm=10_000, tpm=4_000)
    learned_at = clock.now() + 30
    marks: list[Any] = []
    lock = threading.Lock()

    def steady(api: openai.OpenAI, messages: list[dict[str, str]]) -> Any:
        with lock:
            if not marks and clock.now() >= learned_at:
                marks.append(sim.stats())
        return ask(api, messages)

    run = _threads(sim, steady, clock, seconds=150, workers=8)
    (learned,) = marks
    refused = run.rate_limited - learned.rate_limited
    requests = run.served - learned.served + refused
    assert len(run.errors) == run.rate_limited  # 429s only
    assert requests >= 100, requests
    assert refused * 100 <= requests, (refused, requests)
    used = (run.charged_tokens - learned.charged_tokens) / (clock.now() - learned_at)
    assert used / (4_000 / 60) > 0.95, used


def test_a_server_counting_less_than_we_do_is_used_to_its_burst(simulator_at: Any) -> None:
    """Our count at or above the server's: no 429 at all, and once the headers have been
    seen the margin follows the server's state, so the run uses at least 98% of what the
    server would admit (its full bucket at the start plus its refill)."""
    clock = VirtualClock(participants=8)
    sim = simulator_at(clock, rpm=10_000, tpm=4_000, admission="exact")
    ask = _limited(clock, rpm=10_000, tpm=4_000)
    start = clock.now()
    run = _threads(sim, ask, clock, seconds=90, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    admissible = 4_000 * (1 + (clock.now() - start) / 60)
    assert run.charged_tokens / admissible >= 0.98, run.charged_tokens / admissible
