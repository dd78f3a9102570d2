"""No store keeps an unbounded value: what each refuses to write, and how a key damaged by an
older version (an infinite or absurd pause stored from a Retry-After) works again."""

from __future__ import annotations

import math
import re
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.openai.headers import RETRY_AFTER_MAX_S
from prismq_llmtools.stores import StateRegistry, StateStore
from prismq_llmtools.stores.bucket import (
    HORIZON_S,
    MAX_PAUSE_S,
    NEVER,
    BucketSpec,
    KeyState,
    Ticket,
)
from prismq_llmtools.testing.clock import FakeClock
from tests.stores.poison import poison

SPECS = (
    BucketSpec("requests", capacity=10, burst=9, rate_per_s=10 / 60),
    BucketSpec("tokens", capacity=1_000, burst=900, rate_per_s=1_000 / 60),
)
UNBOUNDED = [math.inf, -math.inf, math.nan, -5.0, 1e300, MAX_PAUSE_S + 1]


def admit(store: StateStore, clock: FakeClock, ticket_id: str, costs: Any = (1, 100)) -> Ticket:
    ticket = store.admit(
        "k", SPECS, costs, clock=clock, ticket_id=ticket_id, ttl_s=60, max_wait_s=math.inf
    )
    assert isinstance(ticket, Ticket)
    return ticket


@pytest.mark.parametrize("pause_s", UNBOUNDED)
def test_no_store_takes_a_pause_that_is_not_a_bounded_number(
    store: StateStore, pause_s: float
) -> None:
    """A pause that is infinite, NaN, negative or beyond a day is refused with a ValueError
    naming the key, and nothing of it is kept: the key admits at once."""
    clock = FakeClock()
    ticket = admit(store, clock, "a")
    with pytest.raises(ValueError, match=r"rate-limit key 'k': a pause must be within"):
        store.feedback("k", SPECS, ticket, clock=clock, pause_s=pause_s)
    assert admit(store, clock, "b").wait_s == 0.0


def test_a_pause_of_up_to_a_day_is_kept(store: StateStore) -> None:
    """The longest pause a key takes is a day, and that one is kept whole."""
    clock = FakeClock()
    ticket = admit(store, clock, "a")
    store.feedback("k", SPECS, ticket, clock=clock, pause_s=MAX_PAUSE_S)
    assert admit(store, clock, "b").wait_s == pytest.approx(MAX_PAUSE_S)


@pytest.mark.parametrize(
    ("what", "value"),
    [
        ("costs", math.inf),
        ("costs", math.nan),
        ("costs", -1.0),
        ("refund", math.inf),
        ("refund", -1.0),
        ("deficits", math.inf),
        ("deficits", math.nan),
        ("ttl_s", math.inf),
    ],
)
def test_no_store_takes_a_charge_refund_or_correction_that_is_not_finite(
    store: StateStore, what: str, value: float
) -> None:
    """Costs, refunds, server corrections and ticket lifetimes that are not finite numbers
    (costs and refunds: not negative either) are refused, and the key stays as it was."""
    clock = FakeClock()
    ticket = admit(store, clock, "a")
    before = store.levels("k", SPECS, clock=clock)
    if what in ("costs", "ttl_s"):
        costs, ttl_s = ((1, value), 60.0) if what == "costs" else ((1, 1), value)
        with pytest.raises(ValueError, match=r"rate-limit key 'k'"):
            store.admit("k", SPECS, costs, clock=clock, ticket_id="b", ttl_s=ttl_s, max_wait_s=0)
    else:
        given: dict[str, Any] = {what: (0.0, value) if what == "refund" else (None, value)}
        with pytest.raises(ValueError, match=r"rate-limit key 'k'"):
            store.feedback("k", SPECS, ticket, clock=clock, **given)
    assert store.levels("k", SPECS, clock=clock) == pytest.approx(before)


DAMAGE: list[tuple[str, float | str]] = [
    ("pause_until", math.inf),
    ("pause_until", math.nan),
    ("pause_until", 1e300),
    ("pause_until", 1e308),
    ("last_start", math.inf),
    ("last_start", 1e300),
    ("tats", math.inf),
    ("tats", math.nan),
    ("tats", 1e300),
    ("shift_s", math.inf),
    ("shift_s", math.nan),
]


# The in-process store holds no state an older version wrote: it lives with the process.
PERSISTENT = ["sqlite", "redis"]


@pytest.mark.parametrize("url", PERSISTENT, indirect=True)
@pytest.mark.parametrize(("field", "value"), DAMAGE)
def test_a_key_damaged_by_an_older_version_works_again(
    store: StateStore, url: str, field: str, value: float | str
) -> None:
    """A non-finite or absurd time stored raw (an older version stored an unbounded
    Retry-After) makes the key start afresh, as a new key: it admits at once, full, and a
    store opened anew on the same state (a restart) finds it sound too. (Text where a number
    belongs is no older version's: it stays a StateStoreError, see test_corrupt_state.)"""
    clock = FakeClock()
    poison(store, "k", SPECS, clock, field, value)
    ticket = admit(store, clock, "a")
    assert ticket.wait_s == 0.0
    assert store.wait_s("k", SPECS, ticket, clock=clock) == 0.0
    assert store.levels("k", SPECS, clock=clock) == pytest.approx([9, 900])
    store.feedback("k", SPECS, ticket, clock=clock, pause_s=2.0)
    assert admit(store, clock, "b").wait_s == pytest.approx(2.0)
    again = StateRegistry()
    try:
        levels = again.store(url).levels("k", SPECS, clock=clock)
    finally:
        again.reset()
    assert all(math.isfinite(level) for level in levels)


@pytest.mark.parametrize("url", PERSISTENT, indirect=True)
def test_reading_a_damaged_key_recovers_it_too(store: StateStore, url: str) -> None:
    """A wait or a level asked of a damaged key is finite (the damage is never handed out)."""
    clock = FakeClock()
    ticket = admit(store, clock, "a")
    poison(store, "k", SPECS, clock, "pause_until", math.inf)
    assert store.wait_s("k", SPECS, ticket, clock=clock) == 0.0
    assert store.levels("k", SPECS, clock=clock) == [10, 1_000]


_ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "admit", "pause", "follow", "refund"]),
        st.floats(0, 90_000, allow_nan=False),  # time passing (up to more than a day)
        st.floats(0, MAX_PAUSE_S),
        st.integers(0, 1_000),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops)
def test_every_operation_leaves_a_sound_state(ops: list[Any]) -> None:
    """Whatever bounded admissions, pauses (up to a day), corrections and refunds do, a
    key's state stays sound: recovering it never forgets a key that was not damaged."""
    specs = (
        BucketSpec("tokens_day", capacity=1_000, burst=900, rate_per_s=1_000 / 86_400),
        *SPECS,
    )
    state, now = KeyState(len(specs)), 1e9
    tickets: list[Ticket] = []
    for op, dt, pause_s, number in ops:
        now += dt
        if op == "admit" or not tickets:
            ticket = state.admit(
                specs, (number, 1, number), now, ticket_id=str(len(tickets)), ttl_s=900
            )
            assert isinstance(ticket, Ticket)
            tickets.append(ticket)
        elif op == "pause":
            state.feedback(specs, tickets[number % len(tickets)], now, pause_s=pause_s)
        elif op == "follow":
            deficits = (None, number % 10, number)
            state.feedback(specs, tickets[number % len(tickets)], now, deficits=deficits)
        else:
            ticket = tickets[number % len(tickets)]
            state.feedback(specs, ticket, now, refund=ticket.costs)
        assert state.is_sound(now)
        assert not state.recover(now)
        assert all(0 <= state.wait_s(t, now) <= HORIZON_S for t in tickets)


def test_a_new_key_is_sound_from_any_clock() -> None:
    """A new key's times (never) are sound on a monotonic clock near 0 and on a wall clock."""
    for now in (0.0, 1e9, -1e6):
        assert KeyState(2).is_sound(now)
    assert NEVER < -1e299


def test_the_longest_pause_is_the_longest_retry_after_that_can_be_meant() -> None:
    """A Retry-After the limiter accepts always fits in a store's pause (storage cannot
    import the OpenAI layer, so the two bounds are kept equal here)."""
    assert MAX_PAUSE_S == RETRY_AFTER_MAX_S == 86_400.0


def test_the_redis_script_bounds_times_as_the_pure_math_does() -> None:
    """ratelimit.lua's horizons are bucket.py's (it cannot import them)."""
    lua = files("prismq_llmtools.stores").joinpath("ratelimit.lua").read_text()
    found = re.search(r"local HORIZON_S, PAUSE_HORIZON_S = (\d+), (\d+)", lua)
    assert found is not None
    assert (float(found[1]), float(found[2])) == (HORIZON_S, 2 * MAX_PAUSE_S)
    assert f"within [0, {MAX_PAUSE_S:g}] s" in lua
