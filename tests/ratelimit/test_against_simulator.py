"""@rate_limited against the simulator enforcing the same limits: zero 429s, near the limit.

Client and server share a scaled clock (one simulated minute lasts two real seconds), so a
run covers simulated minutes in real seconds. Throughput is measured after the initial burst
and compared with the binding limit. Tests taking ``mode`` run their callers as threads of a
sync site, then as tasks of an async site (see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest

from prismq_llmtools import rate_limited
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing import Simulator, SimulatorConfig
from tests.drivers import SYNC, Mode

SCALE = 30.0  # simulated seconds per real second
MODEL = "gpt-4o-mini"
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


class ScaledClock:
    """Simulated time running SCALE times faster than real time, from ``offset_s``."""

    def __init__(self, offset_s: float = 0.0, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else origin
        self._offset = offset_s

    def now(self) -> float:
        return (time.monotonic() - self.origin) * SCALE + self._offset

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / SCALE)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / SCALE)


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
    started: list[Simulator] = []

    def start(**config: Any) -> tuple[Simulator, ScaledClock]:
        server_clock = ScaledClock()
        simulator = Simulator(SimulatorConfig(**config), clock=server_clock.now).start()
        started.append(simulator)
        return simulator, server_clock

    yield start
    for simulator in started:
        simulator.stop()


def _callers(
    mode: Mode, sim: Simulator, f: Any, clock: ScaledClock, seconds: float, workers: int
) -> Run:
    """``workers`` callers of ``f`` for ``seconds``: threads (sync) or tasks (async)."""
    end = clock.now() + seconds
    if mode.is_async:
        done, errors = mode.run(_tasks(sim.url, f, clock, end, workers))
    else:
        done, errors = _work(sim.url, f, clock, end, workers)
    return _collect(sim, done, errors)


async def _tasks(
    url: str, f: Any, clock: ScaledClock, end: float, workers: int
) -> tuple[list[float], list[BaseException]]:
    done: list[float] = []
    errors: list[BaseException] = []

    async def work(seed: int) -> None:
        rng = random.Random(seed)
        while clock.now() < end:
            try:
                await f(api, prompt(rng, rng.randint(4, 12)))
            except openai.OpenAIError as exc:
                errors.append(exc)
                continue
            done.append(clock.now())

    async with openai.AsyncOpenAI(base_url=url, api_key="sk-test", max_retries=0) as api:
        await asyncio.gather(*(work(n) for n in range(workers)))
    return done, errors


def _work(
    url: str, f: Any, clock: ScaledClock, end: float, workers: int, seed: int = 0
) -> tuple[list[float], list[BaseException]]:
    done: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        with openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0) as api:
            while clock.now() < end:
                try:
                    f(api, prompt(rng, rng.randint(4, 12)))
                except openai.OpenAIError as exc:
                    with lock:
                        errors.append(exc)
                    continue
                with lock:
                    done.append(clock.now())

    threads = [threading.Thread(target=work, args=(seed + n,)) for n in range(workers)]
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


def _limited(mode: Mode, clock: ScaledClock, **limits: Any) -> Any:  # a new site and registry
    @rate_limited(registry=StateRegistry(), clock=clock, **limits)
    @mode.make
    def ask(api: openai.OpenAI, messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=30)  # type: ignore[arg-type]

    return ask


@pytest.mark.parametrize("admission", ["exact", "chars"])
def test_callers_hold_an_rpm_limit_with_zero_429s(
    mode: Mode, simulator_at: Any, admission: str
) -> None:
    """8 threads or tasks, requests per minute binding: no 429, and the sustained rate is
    the limit."""
    sim, clock = simulator_at(rpm=120, tpm=1_000_000, admission=admission)
    ask = _limited(mode, clock, rpm=120, tpm=1_000_000)
    start = clock.now()
    run = _callers(mode, sim, ask, clock, seconds=60, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    ratio = run.sustained(start + 20, start + 60) / (120 / 60)
    assert ratio > 0.9, ratio


@pytest.mark.parametrize("admission", ["exact", "chars"])
def test_callers_hold_a_tpm_limit_with_zero_429s(
    mode: Mode, simulator_at: Any, admission: str
) -> None:
    """8 threads or tasks, tokens per minute binding, under both of the server's accountings
    (its character estimate charges these prompts far above their token count)."""
    sim, clock = simulator_at(rpm=10_000, tpm=4_000, admission=admission)
    ask = _limited(mode, clock, rpm=10_000, tpm=4_000)
    start = clock.now()
    run = _callers(mode, sim, ask, clock, seconds=60, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    steady = [t for t in run.done if t >= start + 20]
    assert len(steady) > 10
    charged_per_request = run.charged_tokens / run.served
    ratio = len(steady) * charged_per_request / 40 / (4_000 / 60)
    assert ratio > 0.85, ratio


def test_callers_hold_both_limits_with_zero_429s(mode: Mode, simulator_at: Any) -> None:
    """16 threads or tasks, both limits active: no 429."""
    sim, clock = simulator_at(rpm=150, tpm=6_000, admission="chars")
    ask = _limited(mode, clock, rpm=150, tpm=6_000)
    run = _callers(mode, sim, ask, clock, seconds=45, workers=16)
    assert (run.rate_limited, run.errors) == (0, [])
    assert len(run.done) > 60


def test_a_client_clock_started_before_the_servers_still_gets_no_429(
    mode: Mode, simulator_at: Any
) -> None:
    """The client's clock an hour ahead of the server's, limits exactly the server's:
    anchoring to the server's headers keeps every request inside the limit."""
    sim, _ = simulator_at(rpm=120, tpm=1_000_000)
    early = ScaledClock(offset_s=3_600.0)
    ask = _limited(mode, early, rpm=120, tpm=1_000_000)
    start = early.now()
    run = _callers(mode, sim, ask, early, seconds=45, workers=8)
    assert (run.rate_limited, run.errors) == (0, [])
    assert run.sustained(start + 15, start + 45) / 2.0 > 0.85


def test_an_account_shared_with_another_client_is_followed_from_headers(
    mode: Mode, simulator_at: Any
) -> None:
    """Another client spent half the tokens first: the headers tell us, and we adapt."""
    sim, clock = simulator_at(rpm=10_000, tpm=4_000)
    with sim.client() as other:
        for _ in range(10):
            other.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x " * 150}], max_tokens=40
            )
    ask = _limited(mode, clock, rpm=10_000, tpm=4_000)
    run = _callers(mode, sim, ask, clock, seconds=30, workers=4)
    assert (run.rate_limited, run.errors) == (0, [])


def _process(url: str, store: str, origin: float, seed: int, go: Any, results: Any) -> None:
    clock = ScaledClock(origin=origin)
    ask = _limited(SYNC, clock, rpm=10_000, tpm=4_000, store=store)
    results.put("ready")
    go.wait(60)
    done, errors = _work(url, ask, clock, clock.now() + 60, workers=4, seed=seed)
    results.put((done, [repr(e) for e in errors]))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_sharing_a_store_hold_the_limit_together(
    simulator_at: Any, kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """2 processes x 4 threads share one SQLite file or one Redis: still zero 429s."""
    sim, clock = simulator_at(rpm=10_000, tpm=4_000, admission="chars")
    if kind == "sqlite":
        store = f"sqlite://{tmp_path / 'limits.db'}"
    else:  # the simulated clock runs fast: Redis must use it, not its own
        store = f"{request.getfixturevalue('redis_server')}?clock=caller"
        StateRegistry().store(store).clear()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    go = context.Event()
    workers = [
        context.Process(target=_process, args=(sim.url, store, clock.origin, 10 * n, go, results))
        for n in range(2)
    ]
    for worker in workers:
        worker.start()
    assert [results.get(timeout=60) for _ in workers] == ["ready", "ready"]
    go.set()
    collected = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [errors for _, errors in collected] == [[], []]
    assert sim.stats().rate_limited == 0
    assert sum(len(done) for done, _ in collected) > 5  # throughput: see the benchmark
