"""@rate_limited on a site: waits, sharing by key, charges, and what the server says back.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
import pytest

from prismq_llmtools import ConfigurationError
from prismq_llmtools.aspect import CacheHit
from prismq_llmtools.call import Call
from prismq_llmtools.errors import RateLimitTimeout, RequestTooLarge, StateStoreError
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.ratelimit import RateLimit, rate_limited
from prismq_llmtools.retry import retried
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.stores.memory import MemoryStore
from prismq_llmtools.testing.clock import FakeClock
from tests.aspects import StubAspect
from tests.drivers import Mode

from .fakes import MESSAGES, MODEL, Script, client, limits, ok, too_many


def levels(registry: StateRegistry, key: str, f: Any) -> list[float]:
    aspect = next(a for a in core_of(f).aspects if a.kind == "rate_limited")
    specs = aspect.settings.specs()
    return [round(x, 6) for x in registry.store().levels(key, specs, clock=core_of(f).clock)]


def test_callers_wait_for_the_computed_wait(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Past the burst each call waits exactly until the bucket refilled, on the site's clock
    (a sync caller sleeps, an async one awaits)."""

    @rate_limited(rpm=60, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> str:
        return "ok"

    for _ in range(62):
        mode.invoke(ask)
    assert clock.sleeps == pytest.approx([1.0, 1.0])
    assert clock.now() == pytest.approx(2.0)


async def test_concurrent_tasks_queue_in_order(clock: FakeClock, registry: StateRegistry) -> None:
    """Concurrent tasks await the same computed waits, and are admitted in order."""

    started: list[tuple[int, float]] = []

    @rate_limited(rpm=60, burst=1.0, registry=registry, clock=clock, model=MODEL)
    async def ask(i: int) -> int:
        started.append((i, clock.now()))
        return i

    assert await asyncio.gather(*(ask(i) for i in range(63))) == list(range(63))
    assert [i for i, _ in started] == list(range(63))
    assert started[59][1] == 0.0
    assert clock.now() == pytest.approx(3.0)


def test_a_call_is_charged_its_prompt_tokens_plus_completion_cap(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """The token buckets pay prompt tokens (OpenAI's chat rules) plus max_tokens."""

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 500) -> str:
        return "ok"

    mode.invoke(ask, MESSAGES)
    prompt = count_request({"model": MODEL, "messages": MESSAGES}).prompt_tokens
    assert levels(registry, MODEL, ask) == [99, 10_000 - prompt - 500]


def test_sites_using_the_same_model_share_its_buckets(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """The default key is the model: every site using it draws on one limit."""

    @rate_limited(rpm=2, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def titles() -> str:
        return "t"

    @rate_limited(rpm=2, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def summaries() -> str:
        return "s"

    @rate_limited(rpm=2, burst=1.0, registry=registry, clock=clock, model="gpt-4o")
    @mode.make
    def other_model() -> str:
        return "o"

    mode.invoke(titles)
    mode.invoke(summaries)
    mode.invoke(other_model)
    assert clock.sleeps == []
    mode.invoke(titles)
    assert clock.sleeps == [pytest.approx(30.0)]


def test_key_may_be_a_string_or_a_function_of_the_call(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """key= names the shared bucket; a callable derives it from each Call."""

    @rate_limited(rpm=1, burst=1.0, key="team-a", registry=registry, clock=clock, model=MODEL)
    @mode.make
    def a() -> None:
        return None

    @rate_limited(
        rpm=1,
        burst=1.0,
        key=lambda call: f"user-{call.kwargs['user']}",
        registry=registry,
        clock=clock,
    )
    @mode.make
    def b(*, user: str) -> None:
        return None

    mode.invoke(a)
    mode.invoke(b, user="x")
    mode.invoke(b, user="y")
    assert clock.sleeps == []
    specs = RateLimit(rpm=1, burst=1.0).specs()
    assert registry.store().levels("team-a", specs, clock=clock) == [0.0]
    assert registry.store().levels("user-x", specs, clock=clock) == [0.0]


def test_sites_sharing_a_key_must_declare_the_same_limits(
    mode: Mode, registry: StateRegistry
) -> None:
    """Two different limits for one key is a configuration error, naming both sites."""

    @rate_limited(rpm=10, registry=registry, model=MODEL)
    @mode.make
    def first() -> None:
        return None

    @rate_limited(rpm=20, registry=registry, model=MODEL)
    @mode.make
    def second() -> None:
        return None

    mode.invoke(first)
    with pytest.raises(ConfigurationError, match="first"):
        mode.invoke(second)


class FakeCache(StubAspect):
    """An enter hook that answers every call itself, like a cache hit."""

    kind = "cached"

    def enter(self, call: Call) -> CacheHit | None:
        return CacheHit("from cache")


def test_a_cache_hit_is_never_charged(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Calls served by an enter hook never reach admission: the buckets stay full."""

    @attach(FakeCache())
    @rate_limited(rpm=1, tpm=100, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask(messages: list[dict[str, str]]) -> str:
        raise AssertionError("not called")

    assert [mode.invoke(ask, MESSAGES) for _ in range(5)] == ["from cache"] * 5
    assert levels(registry, MODEL, ask) == [1, 100]
    assert clock.sleeps == []


def test_a_request_that_never_reached_the_server_is_refunded(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A connection error before any response gives the request and its tokens back."""
    api = client(Script(httpx2.ConnectError("refused")), mode)

    @rate_limited(rpm=10, tpm=1_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=50)

    with pytest.raises(openai.APIConnectionError):
        mode.invoke(ask, MESSAGES)
    assert levels(registry, MODEL, ask) == [10, 1_000]


def test_a_timed_out_request_stays_charged(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A timeout may have been served and billed: its charge is kept."""
    api = client(Script(httpx2.ReadTimeout("slow")), mode)

    @rate_limited(rpm=10, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    with pytest.raises(openai.APITimeoutError):
        mode.invoke(ask, MESSAGES)
    assert levels(registry, MODEL, ask) == [9]


def test_only_the_attempt_that_may_have_been_billed_stays_charged(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A timed-out attempt keeps its charge; the retry that could not connect is refunded,
    although the call as a whole is possibly billed."""
    api = client(Script(httpx2.ReadTimeout("slow"), httpx2.ConnectError("refused")), mode)

    @retried(attempts=2, initial_wait_s=0, clock=clock)
    @rate_limited(rpm=10, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    with pytest.raises(openai.APIConnectionError):
        mode.invoke(ask, MESSAGES)
    assert levels(registry, MODEL, ask) == [9]


def test_a_function_failing_before_any_request_is_refunded(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """An exception of the function itself, with no HTTP response seen, is refunded."""

    @rate_limited(rpm=10, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        mode.invoke(ask)
    assert levels(registry, MODEL, ask) == [10]


def test_a_429_pauses_the_key_for_every_caller(
    mode: Mode, clock: FakeClock, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """Retry-After stops every site using the key; the refused request is not charged."""
    api = client(Script(too_many("7"), ok()), mode)

    @rate_limited(rpm=100, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    @rate_limited(rpm=100, burst=1.0, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def neighbour() -> str:
        return "n"

    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask, MESSAGES)
    assert levels(registry, MODEL, ask) == [100]
    mode.invoke(neighbour)
    assert clock.sleeps == [pytest.approx(7.0)]
    pause = next(e for e in events if e["event"] == "llm.ratelimit.pause")
    assert pause["key"] == MODEL
    assert pause["wait_s"] == 7.0


def test_retries_pass_the_limiter_again_after_the_pause(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Under @retried the 429'd attempt waits the pause once (not twice) and is re-admitted."""
    script = Script(too_many("2"), ok())
    api = client(script, mode)

    @retried(attempts=3, clock=clock)
    @rate_limited(rpm=100, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    mode.invoke(ask, MESSAGES)
    assert script.requests == 2
    assert sum(clock.sleeps) == pytest.approx(2.0)
    assert levels(registry, MODEL, ask)[0] == pytest.approx(99, abs=0.1)


def test_server_headers_correct_the_local_bucket(
    mode: Mode, clock: FakeClock, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """When the server reports less room (another client shares the account), we follow."""
    api = client(Script(ok(limits((100, 40), (10_000, 2_000)))), mode)

    @rate_limited(rpm=100, tpm=10_000, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=10)

    mode.invoke(ask, MESSAGES)
    assert levels(registry, MODEL, ask) == [40, 2_000]
    corrections = [e for e in events if e["event"] == "llm.ratelimit.correction"]
    assert {e["bucket"] for e in corrections} == {"requests", "tokens"}
    assert next(e for e in corrections if e["bucket"] == "tokens")["server_remaining"] == 2_000


def test_headers_showing_more_room_are_followed_only_at_the_servers_limits(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Our own lower limit (or headroom) is never raised by the server's spare room."""
    api = client(Script(ok(limits((500, 499), None)), ok(limits((100, 99), None))), mode)

    @rate_limited(rpm=100, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages)

    specs = RateLimit(rpm=100, burst=1.0).specs()
    for i in range(30):  # spent by requests answered without headers
        ticket = registry.store().admit(
            MODEL, specs, (1,), clock=clock, ticket_id=str(i), ttl_s=60, max_wait_s=0
        )
        registry.store().feedback(MODEL, specs, ticket, clock=clock)  # type: ignore[arg-type]
    mode.invoke(ask, MESSAGES)  # the account's limit is 500: keep our own count
    assert levels(registry, MODEL, ask) == [69]
    mode.invoke(ask, MESSAGES)  # the headers state our limit: follow them down
    assert levels(registry, MODEL, ask) == [99]


def test_timeout_raises_at_once_without_waiting(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A wait longer than timeout_s raises RateLimitTimeout (a TimeoutError) immediately."""

    @rate_limited(rpm=60, burst=1.0, timeout_s=0.5, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> str:
        return "ok"

    for _ in range(60):
        mode.invoke(ask)
    with pytest.raises(RateLimitTimeout, match="beyond the timeout") as caught:
        mode.invoke(ask)
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.key, caught.value.bucket) == (MODEL, "requests")
    assert clock.sleeps == []


def test_a_pause_beyond_the_timeout_raises_and_refunds(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A waiting caller whose wait a pause extends past its timeout gives up and is refunded."""
    specs = RateLimit(rpm=60, burst=1.0).specs()
    store = registry.store()

    class PauseWhileWaiting(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            ticket = store.admit(
                MODEL, specs, (0,), clock=self, ticket_id="p", ttl_s=1, max_wait_s=99
            )
            store.feedback(MODEL, specs, ticket, clock=self, pause_s=30)  # type: ignore[arg-type]

    sleeper = PauseWhileWaiting(start=0.0)

    @rate_limited(rpm=60, burst=1.0, timeout_s=5, registry=registry, clock=sleeper, model=MODEL)
    @mode.make
    def ask() -> str:
        return "ok"

    for _ in range(60):
        mode.invoke(ask)
    with pytest.raises(RateLimitTimeout):
        mode.invoke(ask)


def test_a_request_larger_than_the_bucket_fails_at_once(
    mode: Mode, registry: StateRegistry
) -> None:
    """A request no bucket can ever hold is RequestTooLarge, before any wait."""

    @rate_limited(tpm=100, registry=registry)
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 500) -> str:
        return "ok"

    with pytest.raises(RequestTooLarge, match="tokens bucket"):
        mode.invoke(ask, MESSAGES)


@pytest.mark.parametrize(("policy", "expected"), [("server", 8_000), ("refund", 9_983)])
def test_reconciliation_policy(
    mode: Mode, clock: FakeClock, registry: StateRegistry, policy: str, expected: int
) -> None:
    """'server' keeps the admission charge as OpenAI does; 'refund' returns the unused cap."""
    api = client(Script(ok(prompt_tokens=12, completion_tokens=5)), mode)

    @rate_limited(tpm=10_000, burst=1.0, reconcile=policy, registry=registry, clock=clock)  # type: ignore[arg-type]
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

    mode.invoke(ask, MESSAGES, max_tokens=2_000 - count(MESSAGES))
    assert levels(registry, MODEL, ask) == [expected]


def count(messages: list[dict[str, str]]) -> int:
    return count_request({"model": MODEL, "messages": messages}).prompt_tokens


def test_settings_override_the_decorator_arguments(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """rpm etc. are policy as data: runtime overrides and bad values are checked."""

    @rate_limited(rpm=60, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> str:
        return "ok"

    with ask.llm.override(rpm=1, burst=1.0):
        mode.invoke(ask)
        mode.invoke(ask)
    assert clock.sleeps == [pytest.approx(60.0)]
    assert ask.llm.settings()["rate_limited"]["rpm"] == 60
    with pytest.raises(ConfigurationError, match="burst"):
        ask.llm.configure(burst=2)
    with pytest.raises(ConfigurationError, match="needs at least one"):
        rate_limited()(ask)
    with pytest.raises(ConfigurationError, match="unknown state store"):
        rate_limited(rpm=1, store="mongodb://x")(ask)


class BrokenStore(MemoryStore):
    """Every operation fails as an unreachable server would."""

    url = "broken"

    def admit(self, *args: Any, **kwargs: Any) -> Any:
        raise StateStoreError("redis://cache:6379/0", ConnectionRefusedError("refused"))


@pytest.mark.parametrize("policy", ["raise", "allow"])
def test_an_unreachable_store_fails_closed_or_open(
    mode: Mode, registry: StateRegistry, policy: str, events: list[dict[str, Any]]
) -> None:
    """By default an unreachable store raises; 'allow' lets the call through with a warning."""
    registry.install("memory", BrokenStore())

    @rate_limited(rpm=1, on_store_error=policy, registry=registry, model=MODEL)  # type: ignore[arg-type]
    @mode.make
    def ask() -> str:
        return "ok"

    if policy == "raise":
        with pytest.raises(StateStoreError, match="refused"):
            mode.invoke(ask)
    else:
        assert mode.invoke(ask) == "ok"
        warning = next(e for e in events if e["event"] == "llm.store.error")
        assert warning["log_level"] == "warning"


class UnreleasingStore(MemoryStore):
    """Admits, then fails as an unreachable server would when told the answer came."""

    url = "unreleasing"

    def release(self, *args: Any, **kwargs: Any) -> None:
        raise StateStoreError("redis://cache:6379/0", ConnectionRefusedError("refused"))


@pytest.mark.parametrize("policy", ["raise", "allow"])
def test_a_store_lost_before_the_release_fails_closed_or_open(
    mode: Mode, registry: StateRegistry, policy: str, events: list[dict[str, Any]]
) -> None:
    """The answer's release goes through the same unreachable-store policy as admission."""
    registry.install("memory", UnreleasingStore())

    @rate_limited(rpm=1_000, on_store_error=policy, registry=registry, model=MODEL)  # type: ignore[arg-type]
    @mode.make
    def ask() -> str:
        return "ok"

    if policy == "raise":
        with pytest.raises(StateStoreError, match="refused"):
            mode.invoke(ask)
    else:
        assert mode.invoke(ask) == "ok"
        warning = next(e for e in events if e["event"] == "llm.store.error")
        assert warning["log_level"] == "warning"


def test_wait_events_name_the_key_and_the_binding_bucket(
    mode: Mode, clock: FakeClock, registry: StateRegistry, events: list[dict[str, Any]]
) -> None:
    """llm.ratelimit.wait carries key, bucket and wait_s."""

    @rate_limited(rpm=100, tpm=50, burst=1.0, registry=registry, clock=clock)
    @mode.make
    def ask(messages: Sequence[dict[str, str]], *, model: str = MODEL, max_tokens: int = 20) -> str:
        return "ok"

    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    wait = next(e for e in events if e["event"] == "llm.ratelimit.wait")
    assert (wait["key"], wait["bucket"]) == (MODEL, "tokens")
    assert wait["wait_s"] == pytest.approx(clock.sleeps[0])


@pytest.mark.parametrize("count_mode", ["tokens", "chars", "max"])
def test_count_chooses_how_the_prompt_is_charged(
    mode: Mode, clock: FakeClock, registry: StateRegistry, count_mode: str
) -> None:
    """tokens: tiktoken's count; chars: OpenAI's admission estimate (chars / 4); max: the
    larger. The completion cap is added to each."""
    messages = [{"role": "user", "content": "internationalization " * 20}]
    tokens = count_request({"model": MODEL, "messages": messages}).prompt_tokens
    chars = -(-len(messages[0]["content"]) // 4)
    assert chars > tokens  # long words: the server's estimate is the larger here

    @rate_limited(tpm=10_000, burst=1.0, count=count_mode, registry=registry, clock=clock)  # type: ignore[arg-type]
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 50) -> str:
        return "ok"

    mode.invoke(ask, messages)
    charged = {"tokens": tokens, "chars": chars, "max": max(tokens, chars)}[count_mode] + 50
    assert levels(registry, MODEL, ask) == [10_000 - charged]


def test_the_character_estimate_reads_every_kind_of_request() -> None:
    """Chat contents and parts, Responses instructions and input, embeddings, plain text."""
    from prismq_llmtools.openai.admission import character_estimate

    parts = [{"type": "text", "text": "abcd" * 3}, {"type": "image_url", "image_url": {}}]
    assert character_estimate({"messages": [{"role": "user", "content": parts}]}) == 3
    assert character_estimate({"instructions": "abcd", "input": [{"content": "abcdabcd"}]}) == 3
    assert character_estimate({"input": ["abcd", "abcde"]}) == 3
    assert character_estimate({"input": [1, 2, 3]}) == 3  # token ids: four characters each
    assert character_estimate({"model": "m"}, ["plain text arg"]) == 4


@pytest.mark.parametrize("key", [None, "fixed"])
def test_an_interrupted_call_gives_its_admission_back(
    mode: Mode, clock: FakeClock, registry: StateRegistry, key: str | None
) -> None:
    """A KeyboardInterrupt in the function (no request seen) refunds the admission, whether
    the key is the model or a fixed string."""

    @rate_limited(rpm=10, key=key, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def ask() -> None:
        raise KeyboardInterrupt

    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            mode.invoke(ask)
    assert levels(registry, key or MODEL, ask) == [10]


@pytest.mark.parametrize("key", [None, "fixed"])
async def test_a_task_cancelled_in_the_function_gives_its_admission_back(
    clock: FakeClock, registry: StateRegistry, key: str | None
) -> None:
    """Cancellation, the async counterpart of an interrupt: a task cancelled while the
    function runs (no request seen) refunds its admission, on both ways alike."""
    running = asyncio.Event()

    @rate_limited(rpm=10, key=key, registry=registry, clock=clock, model=MODEL)
    async def ask() -> None:
        running.set()
        await asyncio.Event().wait()  # until cancelled

    for _ in range(3):
        running.clear()
        task = asyncio.create_task(ask())
        await running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert levels(registry, key or MODEL, ask) == [10]


async def test_a_task_cancelled_while_waiting_gives_its_place_back(
    registry: StateRegistry,
) -> None:
    """A task cancelled while it awaits admission leaves no charge behind: the next caller
    waits as long as it would have, had the cancelled task never asked."""

    class StuckOnceClock(FakeClock):
        stuck = True

        async def asleep(self, seconds: float) -> None:
            if self.stuck:
                self.stuck = False
                await asyncio.Event().wait()  # until cancelled
            await super().asleep(seconds)

    clock = StuckOnceClock()

    @rate_limited(rpm=60, burst=1.0, key="k", registry=registry, clock=clock)
    async def ask() -> str:
        return "ok"

    for _ in range(60):
        await ask()
    waiting = asyncio.ensure_future(ask())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await ask()
    assert clock.sleeps == pytest.approx([1.0])  # not 2.0: the cancelled place is free


@pytest.mark.parametrize("key", ["shared", None])
def test_sites_keep_sharing_a_key_across_a_registry_reset(
    mode: Mode, clock: FakeClock, registry: StateRegistry, key: str | None
) -> None:
    """After ``registry.reset()`` a site that had opened the store and a site opening it
    now use the same fresh store: they still share the key's bucket."""

    @rate_limited(rpm=60, burst=1.0, key=key, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def first() -> None:
        return None

    @rate_limited(rpm=60, burst=1.0, key=key, registry=registry, clock=clock, model=MODEL)
    @mode.make
    def second() -> None:
        return None

    mode.invoke(first)
    registry.reset()
    for _ in range(30):
        mode.invoke(first)
    for _ in range(30):
        mode.invoke(second)
    assert clock.sleeps == []
    mode.invoke(second)  # the 61st request on the fresh bucket waits, whoever sends it
    assert clock.sleeps == pytest.approx([1.0])


def test_an_installed_store_serves_sites_that_opened_the_old_one(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """``registry.install`` replaces the store for every site, also those already using it
    (the replaced store is closed)."""

    @rate_limited(rpm=10, key="k", registry=registry, clock=clock)
    @mode.make
    def ask() -> None:
        return None

    mode.invoke(ask)
    replaced = registry.store()
    fresh = MemoryStore()
    registry.install("memory", fresh)
    mode.invoke(ask)
    mode.invoke(ask)
    specs = RateLimit(rpm=10).specs()
    assert [round(x, 6) for x in fresh.levels("k", specs, clock=clock)] == [8]
    assert replaced.levels("k", specs, clock=clock) == [10]  # closed: it forgot its charge
