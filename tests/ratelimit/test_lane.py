"""The in-process store's fast lane: the same tickets and state as the general way, always.

Tests taking ``mode`` run once with sync sites and once with async ones (see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prismq_llmtools.call import RateHeaders, current_call
from prismq_llmtools.ratelimit import RateLimit, rate_limited
from prismq_llmtools.retry import retried
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.stores.bucket import BucketSpec, KeyState, Ticket
from prismq_llmtools.stores.lane import local_ticket_id
from prismq_llmtools.stores.memory import MemoryStore
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode

KEY = "k"


def state_of(state: KeyState, now: float) -> tuple[Any, ...]:
    """What the next operation on ``state`` would see (the requests answered and expired by
    then forgotten), ticket ids aside: each way names its tickets itself."""
    state.forget_answered()
    state.expire(now)
    inflight = [(t.expires_at, t.start, t.seq, t.costs) for t in state.inflight.values()]
    return (state.tats, state.charged, state.last_start, state.pause_until, state.shift_s,
            state.seq, inflight)  # fmt: skip


def memory_state(registry: StateRegistry, specs: tuple[BucketSpec, ...], clock: Any) -> KeyState:
    store = registry.store()
    assert isinstance(store, MemoryStore)
    return store._key(KEY, specs, clock)


def same_ticket(a: Ticket, b: Ticket) -> bool:
    fields = ("start", "bucket", "costs", "shift_s", "charged", "wait_s", "seq")
    return [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


_bucket = st.builds(
    lambda capacity, burst, period: BucketSpec(
        "requests", capacity=capacity, burst=capacity * burst, rate_per_s=capacity / period
    ),
    st.floats(1, 500),
    st.floats(0.05, 1),
    st.floats(0.5, 120),
)
_lane_ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "admit", "admit", "answer", "answer", "feedback"]),
        st.floats(0, 3, allow_nan=False),
        st.integers(0, 1_000),
        st.floats(-0.5, 1.5, allow_nan=False),
    ),
    min_size=4,
    max_size=60,
)


@settings(max_examples=600, deadline=None)
@given(
    buckets=st.lists(_bucket, min_size=1, max_size=2),
    fractions=st.tuples(st.floats(0.01, 1), st.floats(0.01, 1)),
    ops=_lane_ops,
)
def test_a_lane_admits_and_releases_exactly_as_the_store_does(
    buckets: list[BucketSpec], fractions: tuple[float, float], ops: list[Any]
) -> None:
    """Same tickets, same feedback, same state, bit for bit: whatever mix of admissions,
    releases, corrections, refunds and pauses, and however the tickets expire."""
    specs = tuple(
        BucketSpec(f"requests{i}", capacity=s.capacity, burst=s.burst, rate_per_s=s.rate_per_s)
        for i, s in enumerate(buckets)
    )
    costs = tuple(max(1.0, f * s.capacity) for f, s in zip(fractions, specs, strict=False))
    clock = FakeClock(start=50.0)
    fast, general = MemoryStore(), MemoryStore()
    lane = fast.lane(KEY, specs, costs, clock=clock, ttl_s=5.0)
    tickets: list[tuple[Ticket, Ticket]] = []
    for op, dt, pick, fraction in ops:
        clock.advance(dt)
        if op == "admit":
            mine = lane.admit(1, None)
            theirs = general.admit(
                KEY, specs, costs, clock=clock, ticket_id=local_ticket_id(), ttl_s=5.0,
                max_wait_s=float("inf"),
            )  # fmt: skip
            assert isinstance(mine, Ticket)
            assert isinstance(theirs, Ticket)
            assert same_ticket(mine, theirs)
            assert lane.state.answered == []  # forgotten by the admission
            tickets.append((mine, theirs))
        elif tickets:
            mine, theirs = tickets.pop(pick % len(tickets))
            if op == "answer":
                lane.answer(mine.id)
                assert general.feedback(KEY, specs, theirs, clock=clock) == [0.0] * len(specs)
            else:
                kwargs: dict[str, Any] = {
                    "deficits": tuple(fraction * s.capacity for s in specs),
                    "refund": tuple(fraction * c for c in costs) if pick % 3 == 0 else (),
                    "pause_s": fraction * 10 if pick % 4 == 0 else 0.0,
                    "follow_down": pick % 2 == 0,
                }
                assert fast.feedback(KEY, specs, mine, clock=clock, **kwargs) == general.feedback(
                    KEY, specs, theirs, clock=clock, **kwargs
                )
        assert fast.levels(KEY, specs, clock=clock) == general.levels(KEY, specs, clock=clock)
    now = clock.now()
    assert state_of(lane.state, now) == state_of(general._key(KEY, specs, clock), now)


def test_an_answered_request_is_forgotten_as_a_released_one() -> None:
    """A release without the lock (its id in ``answered``): the next operation forgets the
    request, and expires what a release would have, so it sees the state release() leaves."""
    spec = (BucketSpec("requests", capacity=10, burst=10, rate_per_s=1.0),)
    answered, released = KeyState(1), KeyState(1)
    for state in (answered, released):
        for i, now in enumerate((0.0, 1.0, 2.0)):
            state.admit(spec, (1.0,), now, ticket_id=f"t{i}", ttl_s=5.0)
    answered.answered.append("t2")
    released.release(Ticket("t2", 2.0, "queue", (1.0,), 0.0, (3.0,)), 6.5)
    assert len(answered.inflight) == 3  # not yet forgotten
    for state in (answered, released):
        state.admit(spec, (1.0,), 7.0, ticket_id="t3", ttl_s=5.0)
    assert state_of(answered, 7.0) == state_of(released, 7.0)
    assert list(answered.inflight) == ["t3"]
    assert answered.answered == []


def test_a_lane_refuses_costs_its_buckets_cannot_hold() -> None:
    """A lane admits without checking sizes, so it is never made for a request too large."""
    spec = BucketSpec("requests", capacity=0.5, burst=0.5, rate_per_s=1.0)
    with pytest.raises(ValueError, match="within its capacity"):
        MemoryStore().lane(KEY, (spec,), (1.0,), clock=FakeClock(), ttl_s=1.0)


# -- the aspect: fast and general way side by side ------------------------------------


class Unreachable(Exception):
    """A failure before any request reached the server: refunded."""


class ServerError(Exception):
    status_code = 500


class TooMany(Exception):
    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(self, retry_after: float) -> None:
        super().__init__("429")
        self.response = SimpleNamespace(headers={"retry-after": str(retry_after)})


def _site(
    mode: Mode, registry: StateRegistry, clock: FakeClock, *, fast: bool, **limits: Any
) -> Any:
    key: Any = KEY if fast else (lambda call: KEY)  # a key function: the general way

    @rate_limited(key=key, registry=registry, clock=clock, **limits)
    @mode.make
    def ask(outcome: str, amount: float) -> str:
        call = current_call.get()
        assert call is not None
        if outcome == "headers":
            remaining = int(amount * limits["rpm"])
            call.rate_headers = RateHeaders(
                limit_requests=limits["rpm"], remaining_requests=remaining
            )
        elif outcome == "unreachable":
            raise Unreachable
        elif outcome == "server_error":
            raise ServerError
        elif outcome == "too_many":
            raise TooMany(retry_after=amount * 5)
        return "ok"

    return ask


_calls = st.lists(
    st.tuples(
        st.sampled_from(["ok", "ok", "ok", "headers", "unreachable", "server_error", "too_many"]),
        st.floats(0, 1, allow_nan=False),
        st.floats(0, 2, allow_nan=False),
    ),
    max_size=40,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rpm=st.integers(1, 120), rpd=st.none() | st.integers(1, 500), burst=st.floats(0.1, 1),
       calls=_calls)  # fmt: skip
def test_a_site_on_the_fast_lane_behaves_as_one_on_the_general_way(
    mode: Mode, rpm: int, rpd: int | None, burst: float, calls: list[Any]
) -> None:
    """Same waits, same pauses, same buckets, whatever the calls' outcomes."""
    limits = {"rpm": rpm, "rpd": rpd, "burst": burst}
    clocks = FakeClock(start=0.0), FakeClock(start=0.0)
    registries = StateRegistry(), StateRegistry()
    fast = _site(mode, registries[0], clocks[0], fast=True, **limits)
    general = _site(mode, registries[1], clocks[1], fast=False, **limits)
    specs = RateLimit(**limits).specs()
    for outcome, amount, dt in calls:
        for ask, clock in ((fast, clocks[0]), (general, clocks[1])):
            clock.advance(dt)
            with contextlib.suppress(Unreachable, ServerError, TooMany):
                mode.invoke(ask, outcome, amount)
        assert clocks[0].sleeps == clocks[1].sleeps
        levels = [
            r.store().levels(KEY, specs, clock=c) for r, c in zip(registries, clocks, strict=True)
        ]
        assert levels[0] == levels[1]
    assert (fast.llm.aspects[0]._lane is not None) == bool(calls)
    assert general.llm.aspects[0]._lane is None
    states = [memory_state(r, specs, c) for r, c in zip(registries, clocks, strict=True)]
    assert state_of(states[0], clocks[0].now()) == state_of(states[1], clocks[1].now())


def _lane_site(mode: Mode, registry: StateRegistry, clock: FakeClock) -> Any:
    @rate_limited(rpm=2, burst=1.0, key=KEY, registry=registry, clock=clock)
    @mode.make
    def ask() -> str:
        return "ok"

    return ask


def test_the_fast_lane_sees_a_cleared_store(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """After MemoryStore.clear() (tests, registry resets) the site starts from full buckets."""
    ask = _lane_site(mode, registry, clock)
    for _ in range(2):
        mode.invoke(ask)
    assert ask.llm.aspects[0]._lane is not None
    registry.store().clear()
    for _ in range(2):
        mode.invoke(ask)
    assert clock.sleeps == []
    mode.invoke(ask)
    assert clock.sleeps == [pytest.approx(30.0)]


def test_the_fast_lane_sees_a_key_declared_anew(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """A key's state replaced (declared with other limits) is not the lane's any more."""
    ask = _lane_site(mode, registry, clock)
    for _ in range(2):
        mode.invoke(ask)
    other = RateLimit(rpm=1000).specs()
    registry.store().admit(
        KEY, other, (1.0,), clock=clock, ticket_id="x", ttl_s=60, max_wait_s=0
    )  # replaced: the site's own limits then start afresh too
    for _ in range(2):
        mode.invoke(ask)
    assert clock.sleeps == []


def test_the_fast_lane_follows_the_sites_clock(mode: Mode, registry: StateRegistry) -> None:
    """State is per clock: a site whose clock changes admits on the new clock's buckets."""
    first, second = FakeClock(start=0.0), FakeClock(start=0.0)
    ask = _lane_site(mode, registry, first)
    for _ in range(2):
        mode.invoke(ask)
    ask.llm.clock = second
    for _ in range(2):
        mode.invoke(ask)
    assert (first.sleeps, second.sleeps) == ([], [])
    ask.llm.clock = first
    mode.invoke(ask)
    assert first.sleeps == [pytest.approx(30.0)]


def test_a_retried_clock_set_after_the_limiter_is_the_lanes(
    mode: Mode, registry: StateRegistry
) -> None:
    """@retried(clock=...) applied over @rate_limited sets the site's clock: waits use it."""
    clock = FakeClock(start=0.0)

    @retried(clock=clock)
    @rate_limited(rpm=2, burst=1.0, key=KEY, registry=registry)
    @mode.make
    def ask() -> str:
        return "ok"

    for _ in range(3):
        mode.invoke(ask)
    assert clock.sleeps == [pytest.approx(30.0)]


def test_a_custom_memory_store_is_always_asked(
    mode: Mode, clock: FakeClock, registry: StateRegistry
) -> None:
    """Only the plain in-process store gets a lane: a subclass sees every admission."""

    class Counting(MemoryStore):
        admitted = 0

        def admit(self, *args: Any, **kwargs: Any) -> Any:
            Counting.admitted += 1
            return super().admit(*args, **kwargs)

    registry.install("memory", Counting())
    ask = _lane_site(mode, registry, clock)
    for _ in range(5):
        mode.invoke(ask)
    assert Counting.admitted == 5
    assert ask.llm.aspects[0]._lane is None


def test_lanes_are_made_only_for_fixed_costs(mode: Mode, registry: StateRegistry) -> None:
    """Token buckets, key functions and timeouts keep a site on the general way."""
    sites = [
        rate_limited(rpm=60, tpm=1000, key="a", registry=registry)(mode.make(lambda: "ok")),
        rate_limited(rpm=60, key=lambda call: "b", registry=registry)(mode.make(lambda: "ok")),
        rate_limited(rpm=60, timeout_s=1, key="c", registry=registry)(mode.make(lambda: "ok")),
    ]
    for ask in sites:
        mode.invoke(ask)
        assert ask.llm.aspects[0]._lane is None


def test_threads_on_the_fast_lane_lose_no_admission_and_no_release(
    registry: StateRegistry,
) -> None:
    """Eight threads calling one fast-lane site at once: every admission is charged once,
    and every answered request (released without the lock) is forgotten."""
    from concurrent.futures import ThreadPoolExecutor

    @rate_limited(rpm=10**9, key="threads", registry=registry)
    def ask(i: int) -> int:
        return i

    ask(-1)  # the first admission goes the general way and makes the lane
    assert ask.llm.aspects[0]._lane is not None
    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(ask, range(4_000))) == sum(range(4_000))
    specs = ask.llm.aspects[0]._specs
    state = registry.store()._key("threads", specs, ask.llm.clock)
    assert state.seq == 4_001
    assert state.charged == [4_001.0]
    state.forget_answered()
    assert state.inflight == {}


async def test_tasks_on_the_fast_lane_lose_no_admission_and_no_release(
    registry: StateRegistry,
) -> None:
    """The async twin: 4,000 tasks on one fast-lane site, each holding its admission across
    an await: every admission is charged once, and every answered request is forgotten."""

    @rate_limited(rpm=10**9, key="tasks", registry=registry)
    async def ask(i: int) -> int:
        await asyncio.sleep(0)
        return i

    await ask(-1)  # the first admission goes the general way and makes the lane
    assert ask.llm.aspects[0]._lane is not None
    assert sum(await asyncio.gather(*(ask(i) for i in range(4_000)))) == sum(range(4_000))
    specs = ask.llm.aspects[0]._specs
    state = registry.store()._key("tasks", specs, ask.llm.clock)
    assert state.seq == 4_001
    assert state.charged == [4_001.0]
    state.forget_answered()
    assert state.inflight == {}
