"""A 429's Retry-After, bounded: it never stalls nor breaks a key, in any store, in this
process or a fresh one.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py); tests taking ``url`` run on each store.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import openai
import pytest

from prismq_llmtools.ratelimit import RateLimit, rate_limited
from prismq_llmtools.retry import retried
from prismq_llmtools.settings import Settings, reset_settings
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing import Fault, FaultKind, Simulator
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode, Steps
from tests.stores.poison import poison
from tests.stores.store_servers import STORES, store_url

from .fakes import MESSAGES, MODEL, Script, client, limits, ok, too_many
from .test_against_simulator import _limited, _work, simulator_at
from .virtual_time import TaskClock, VirtualClock

__all__ = ["simulator_at"]  # the fixture, shared with the other simulator runs

SPECS = RateLimit(rpm=100, burst=1.0).specs()

# (Retry-After as sent, why the key does not pause for it, the pause it gets instead)
UNHEEDED = [
    ("3600", "above_cap", 0.0),
    ("inf", "not_finite", 1.0),
    ("nan", "not_finite", 1.0),
    ("1e300", "absurd", 1.0),
    ("-5", "negative", 1.0),
    ("soon", "not_a_number", 1.0),
]


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = store_url(request, tmp_path)
    cleaner = StateRegistry()
    cleaner.store(url).clear()
    cleaner.reset()
    return url


def pair(api: Any, mode: Mode, url: str, registry: StateRegistry, clock: FakeClock) -> Any:
    """A site asking the (fake) server, and a neighbour sharing its key that asks nothing."""

    @rate_limited(rpm=100, burst=1.0, store=url, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    @rate_limited(rpm=100, burst=1.0, store=url, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def neighbour() -> str:
        return "n"

    return ask, neighbour


@pytest.mark.parametrize(("retry_after", "reason", "pause_s"), UNHEEDED)
def test_a_retry_after_beyond_the_cap_or_unusable_neither_stalls_nor_breaks_the_key(
    mode: Mode,
    url: str,
    clock: FakeClock,
    registry: StateRegistry,
    events: list[dict[str, Any]],
    retry_after: str,
    reason: str,
    pause_s: float,
) -> None:
    """Retry-After 3600 (above the 60 s cap) pauses nothing; inf, nan, 1e300, -5 and text
    are ignored (the pause of a 429 without one: 1 s). Each says so in a warning event, and
    the key keeps working for every site sharing it."""
    api = client(Script(too_many(retry_after), ok()), mode)
    ask, neighbour = pair(api, mode, url, registry, clock)

    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask, MESSAGES)
    assert mode.invoke(neighbour) == "n"
    assert clock.sleeps == ([pytest.approx(pause_s)] if pause_s else [])
    mode.invoke(ask, MESSAGES)
    assert mode.invoke(neighbour) == "n"
    assert len(clock.sleeps) == (1 if pause_s else 0)
    (level,) = registry.store(url).levels(MODEL, SPECS, clock=clock)
    assert 96 <= level <= 98  # three requests charged (the refused one was not), some refill
    ignored = [e for e in events if e["event"] == "llm.ratelimit.retry_after_ignored"]
    assert [(e["key"], e["reason"], e["cap_s"], e["log_level"]) for e in ignored] == [
        (MODEL, reason, 60.0, "warning")
    ]
    assert ignored[0]["retry_after"] == f"retry-after: {retry_after}"
    pauses = [e["wait_s"] for e in events if e["event"] == "llm.ratelimit.pause"]
    assert pauses == ([pause_s] if pause_s else [])


@pytest.mark.parametrize("retry_after", ["3600", "inf", "1e300"])
def test_under_retried_the_call_fails_at_once_or_backs_off(
    mode: Mode, url: str, clock: FakeClock, registry: StateRegistry, retry_after: str
) -> None:
    """With @retried (same cap): above the cap the server's error surfaces at once, nothing
    slept; an unusable value is retried after a bounded backoff, and then succeeds."""
    script = Script(too_many(retry_after), ok())
    api = client(script, mode)

    @retried(attempts=3, max_wait_s=2.0, clock=clock)
    @rate_limited(rpm=100, burst=1.0, store=url, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    if retry_after == "3600":
        with pytest.raises(openai.RateLimitError):
            mode.invoke(ask, MESSAGES)
        assert (script.requests, clock.sleeps) == (1, [])
    else:
        mode.invoke(ask, MESSAGES)
        assert script.requests == 2
        assert 0 < sum(clock.sleeps) <= 2.0 + 1.0  # the backoff, and the key's 1 s pause


def test_the_cap_is_the_sites_setting_for_both_decorators(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """retry_after_cap_s set once for a site (settings file) bounds the key's pause and
    @retried's wait alike: 90 s honoured by both, 120 s by neither."""
    script = Script(too_many("90"), ok(), too_many("120"))
    api = client(script, mode)

    reset_settings(Settings(sites={"capped": {"retry_after_cap_s": 100}}))

    @retried(attempts=3, clock=clock, name="capped")
    @rate_limited(rpm=100, burst=1.0, registry=registry, clock=clock, name="capped")
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    mode.invoke(ask, MESSAGES)
    assert sum(clock.sleeps) == pytest.approx(90.0)  # the pause, waited once
    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask, MESSAGES)
    assert sum(clock.sleeps) == pytest.approx(90.0)
    assert script.requests == 3


def test_a_429_with_room_left_pauses_only_its_caller(
    mode: Mode, clock: FakeClock, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """A 429 whose headers show room for the request (a transient refusal, not the limit)
    does not pause the key: the neighbour goes at once; under @retried the caller waits its
    own Retry-After, once."""
    room = limits((100, 60), (10_000, 5_000))
    script = Script(too_many("5", room), too_many("5", room), ok())
    api = client(script, mode)

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 50) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

    @retried(attempts=3, clock=clock)
    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask_again(
        messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 50
    ) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def neighbour() -> str:
        return "n"

    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask, MESSAGES)
    mode.invoke(neighbour)
    assert clock.sleeps == []
    mode.invoke(ask_again, MESSAGES)
    assert clock.sleeps == [pytest.approx(5.0)]
    assert not any(e["event"] == "llm.ratelimit.pause" for e in events)


@pytest.mark.parametrize(
    "room",
    [
        limits((100, 0), (10_000, 5_000)),  # no request left
        limits((100, 60), (10_000, 20)),  # fewer tokens left than the request needs
        limits((100, 60), None),  # tokens not reported, but our key counts them: unproven
    ],
)
def test_a_429_at_the_limit_still_pauses_the_key(
    mode: Mode, clock: FakeClock, registry: StateRegistry, room: dict[str, str]
) -> None:
    """Headers showing no room for the request (or not proving it) leave the 429 a limit:
    the whole key pauses for its Retry-After."""
    api = client(Script(too_many("5", room)), mode)

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 50) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def neighbour() -> str:
        return "n"

    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask, MESSAGES)
    mode.invoke(neighbour)
    assert clock.sleeps == [pytest.approx(5.0)]


@pytest.mark.parametrize("reset", ["inf", "nan", "Infinity"])
def test_a_reset_header_that_is_no_duration_corrects_nothing(
    mode: Mode, clock: FakeClock, registry: StateRegistry, reset: str
) -> None:
    """An x-ratelimit-reset-* that is no finite duration is not read as "empty for ever":
    the bucket keeps its own count."""
    headers = {"x-ratelimit-limit-requests": "100", "x-ratelimit-reset-requests": reset}
    api = client(Script(ok(headers)), mode)
    ask, _ = pair(api, mode, "memory", registry, clock)
    mode.invoke(ask, MESSAGES)
    assert registry.store().levels(MODEL, SPECS, clock=clock) == [99]


def _fresh_process(url: str, wall: datetime, keys: list[str], results: Any) -> None:
    """In a new process: call a site on each key twice, and report what it slept."""
    try:
        clock = FakeClock(wall_start=wall)
        registry = StateRegistry()
        slept: dict[str, list[float]] = {}
        for key in keys:

            @rate_limited(
                rpm=100, burst=1.0, key=key, store=url, registry=registry, clock=clock, model=MODEL
            )
            def again() -> str:
                return "ok"

            before = len(clock.sleeps)
            again()
            again()
            slept[key] = clock.sleeps[before:]
        registry.reset()
        results.put(slept)
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(repr(exc))


@pytest.mark.parametrize("url", [s for s in STORES if s != "memory"], indirect=True)
def test_a_fresh_process_on_the_same_store_finds_every_key_working(
    url: str, clock: FakeClock, registry: StateRegistry, processes: ForkServerContext
) -> None:
    """After 429s asking 3600 s, inf or 1e300, and on keys an older version damaged (an
    infinite or absurd pause, queue or bucket stored raw), a new process opening the same
    SQLite file or Redis calls at once on every key."""
    keys: list[str] = []
    for retry_after in ("3600", "inf", "1e300"):
        key = f"answered-{retry_after}"
        api = client(Script(too_many(retry_after)))

        @rate_limited(rpm=100, burst=1.0, key=key, store=url, registry=registry, clock=clock)
        def ask(messages: list[dict[str, str]], *, model: str = MODEL, api: Any = api) -> Any:
            return api.chat.completions.create(model=model, messages=messages)

        with pytest.raises(openai.RateLimitError):
            ask(MESSAGES)
        keys.append(key)
    store = registry.store(url)
    for field, value in [
        ("pause_until", math.inf),
        ("pause_until", 1e300),
        ("last_start", math.inf),
        ("tats", math.nan),
        ("shift_s", math.inf),
    ]:
        key = f"damaged-{field}-{value}"
        poison(store, key, SPECS, clock, field, value)
        keys.append(key)
    clock.advance(1.0)  # the 1 s pauses of the ignored values are over
    registry.reset()

    results = processes.Queue()
    process = processes.Process(target=_fresh_process, args=(url, clock.wall(), keys, results))
    process.start()
    slept = results.get(timeout=120)
    process.join(timeout=60)
    assert process.exitcode == 0
    assert slept == {key: [] for key in keys}


@pytest.mark.parametrize(("retry_after_s", "requests"), [(3600.0, 1), (1e300, 2)])
def test_against_the_simulator_a_long_or_absurd_retry_after_stalls_nothing(
    mode: Mode,
    sim: Simulator,
    clock: FakeClock,
    registry: StateRegistry,
    events: list[dict[str, Any]],
    retry_after_s: float,
    requests: int,
) -> None:
    """The simulator's 429 asking an hour fails the call at once, pausing nothing; one
    asking 1e300 s is ignored (the key pauses 1 s) and retried after a bounded backoff.
    Either way the next call goes at once."""
    sim.script(Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=retry_after_s))
    api = mode.client_for(sim)

    @retried(attempts=3, max_wait_s=2.0, clock=clock)
    @rate_limited(rpm=100, tpm=100_000, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
        return r.choices[0].message.content or ""

    if requests == 1:
        with pytest.raises(openai.RateLimitError):
            mode.invoke(ask)
        assert clock.sleeps == []
    else:
        assert mode.invoke(ask)
        assert 0 < sum(clock.sleeps) <= 2.0  # the backoff (the key's 1 s pause within it)
    before = len(clock.sleeps)
    assert mode.invoke(ask)
    assert clock.sleeps[before:] == []
    assert sim.stats().faults == {"rate_limit": 1}
    ignored = [e["reason"] for e in events if e["event"] == "llm.ratelimit.retry_after_ignored"]
    assert ignored == ["above_cap" if requests == 1 else "absurd"]


@pytest.mark.parametrize("retry_after_s", [3600.0, 1e300])
def test_threads_at_the_limit_run_on_past_a_429_asking_an_hour_or_forever(
    simulator_at: Any, retry_after_s: float
) -> None:
    """8 threads at an RPM limit, on virtual time: the server's first answer is a 429 asking
    3600 s (or 1e300 s). That one call fails; the others keep the limit's rate to the end
    of the minute, and no bucket of the server overflows."""
    clock = VirtualClock(participants=8)
    sim = simulator_at(clock, rpm=120, tpm=1_000_000)
    sim.script(Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=retry_after_s))
    ask = _limited(clock, rpm=120, tpm=1_000_000)
    start = clock.now()
    done, errors = _work(sim.url, ask, clock, start + 60, workers=8)
    assert [type(error) for error in errors] == [openai.RateLimitError]
    assert sim.stats().rate_limited == 0
    sustained = sum(1 for t in done if start + 20 <= t < start + 60) / 40
    assert sustained / (120 / 60) > 0.9


@pytest.mark.parametrize("retry_after_s", [3600.0, 1e300])
async def test_tasks_at_the_limit_run_on_past_a_429_asking_an_hour_or_forever(
    simulator_at: Any, retry_after_s: float
) -> None:
    """The same for 8 asyncio tasks on the async client."""
    clock = TaskClock(participants=8)
    sim = simulator_at(clock, rpm=120, tpm=1_000_000)
    sim.script(Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=retry_after_s))
    api = sim.async_client()

    @rate_limited(rpm=120, tpm=1_000_000, registry=StateRegistry(), clock=clock)
    async def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return await api.chat.completions.create(model=model, messages=messages, max_tokens=30)

    done: list[float] = []
    errors: list[BaseException] = []
    start = clock.now()

    async def work() -> None:
        try:
            while clock.now() < start + 60:
                try:
                    await ask(MESSAGES)
                except openai.RateLimitError as exc:
                    errors.append(exc)
                    continue
                done.append(clock.now())
        finally:
            clock.leave()

    await asyncio.gather(*(work() for _ in range(8)))
    await api.close()
    assert len(errors) == 1
    assert sim.stats().rate_limited == 0
    sustained = sum(1 for t in done if start + 20 <= t < start + 60) / 40
    assert sustained / (120 / 60) > 0.9
