"""The token-bucket math: virtual scheduling, FIFO, refunds, pauses, server corrections."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prismq_llmtools.stores.bucket import BucketSpec, KeyState, Refusal, Ticket

RPM = BucketSpec("requests", capacity=60, burst=60, rate_per_s=1.0)
_ids = itertools.count()


def admit(
    state: KeyState, specs: tuple[BucketSpec, ...], costs: tuple[float, ...], now: float
) -> Ticket:
    result = state.admit(specs, costs, now, ticket_id=f"t{next(_ids)}", ttl_s=600)
    assert isinstance(result, Ticket)
    return result


def test_full_bucket_admits_its_burst_then_one_per_refill() -> None:
    """A full bucket admits its capacity at once; each next request starts one refill later."""
    state = KeyState(1)
    starts = [admit(state, (RPM,), (1,), 0.0).start for _ in range(62)]
    assert starts[:60] == [0.0] * 60
    assert starts[60:] == pytest.approx([1.0, 2.0])


def test_the_start_time_is_computed_not_polled() -> None:
    """An empty bucket tells the caller exactly when to start, and how long that is."""
    specs = (BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),)
    state = KeyState(1)
    admit(state, specs, (1000,), 0.0)
    ticket = admit(state, specs, (250,), 5.0)
    assert ticket.start == pytest.approx(25.0)
    assert ticket.wait_s == pytest.approx(20.0)
    assert ticket.bucket == "tokens"
    assert state.wait_s(ticket, 24.0) == pytest.approx(1.0)
    assert state.wait_s(ticket, 25.0) == 0.0


def test_a_large_request_is_not_starved_by_small_ones() -> None:
    """First come, first served: small requests arriving after a large one queue behind it."""
    specs = (BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),)
    state = KeyState(1)
    admit(state, specs, (900,), 0.0)
    large = admit(state, specs, (1000,), 0.0)
    small = [admit(state, specs, (10,), 1.0) for _ in range(5)]
    assert large.start == pytest.approx(90.0)
    assert all(t.start >= large.start for t in small)
    assert [t.start for t in small] == sorted(t.start for t in small)


def test_both_buckets_must_allow_and_both_pay() -> None:
    """Requests and tokens are limited together; the binding bucket sets the start."""
    specs = (
        BucketSpec("requests", capacity=10, burst=10, rate_per_s=1.0),
        BucketSpec("tokens", capacity=100, burst=100, rate_per_s=1.0),
    )
    state = KeyState(2)
    first = admit(state, specs, (1, 100), 0.0)
    second = admit(state, specs, (1, 10), 0.0)
    assert (first.start, second.start) == (0.0, pytest.approx(10.0))
    assert second.bucket == "tokens"
    assert state.level(specs, 0, 10.0) == pytest.approx(9.0)


def test_burst_keeps_a_margin_but_a_request_up_to_capacity_still_fits() -> None:
    """With burst < capacity a margin stays unspent; a request above the burst waits for a
    full bucket instead of being refused."""
    specs = (BucketSpec("tokens", capacity=100, burst=90, rate_per_s=1.0),)
    state = KeyState(1)
    assert admit(state, specs, (90,), 0.0).start == 0.0
    assert admit(state, specs, (1,), 0.0).start == pytest.approx(1.0)  # margin of 10 kept
    big = admit(state, specs, (100,), 1.0)
    assert big.start == pytest.approx(91.0)  # when the bucket is full again
    assert state.level(specs, 0, big.start) == pytest.approx(0.0)


def test_a_wait_beyond_max_wait_is_refused_and_changes_nothing() -> None:
    """Refusing for the timeout leaves the buckets as they were."""
    state = KeyState(1)
    for _ in range(60):
        admit(state, (RPM,), (1,), 0.0)
    before = state.to_dict()
    refusal = state.admit((RPM,), (1,), 0.0, ticket_id="x", ttl_s=60, max_wait_s=0.5)
    assert isinstance(refusal, Refusal)
    assert (refusal.wait_s, refusal.bucket) == (pytest.approx(1.0), "requests")
    assert state.to_dict() == before


def test_a_refund_gives_back_what_the_request_took() -> None:
    """A request that never reached the server is refunded in full."""
    state = KeyState(1)
    tickets = [admit(state, (RPM,), (1,), 0.0) for _ in range(60)]
    state.feedback((RPM,), tickets[-1], 0.0, refund=(1,))
    assert state.level((RPM,), 0, 0.0) == pytest.approx(1.0)
    assert admit(state, (RPM,), (1,), 0.0).start == 0.0


def test_a_refund_never_credits_capacity_that_refilled_anyway() -> None:
    """Refunding a request after the bucket refilled past it adds nothing: the bucket
    would have been full without it."""
    specs = (BucketSpec("tokens", capacity=10, burst=10, rate_per_s=1.0),)
    state = KeyState(1)
    old = admit(state, specs, (10,), 0.0)
    admit(state, specs, (10,), 10.0)
    state.feedback(specs, old, 10.0, refund=(10,))
    assert state.level(specs, 0, 10.0) == pytest.approx(0.0)


def test_a_ticket_refunded_twice_gets_back_at_most_its_cost() -> None:
    """Refunds of one ticket add up to at most its cost in each bucket, however many."""
    specs = (
        BucketSpec("requests", capacity=10, burst=10, rate_per_s=1.0),
        BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),
    )
    state = KeyState(2)
    admit(state, specs, (1, 400), 0.0)
    ticket = admit(state, specs, (1, 600), 0.0)
    state.feedback(specs, ticket, 0.0, refund=(0, 250))
    assert [state.level(specs, i, 0.0) for i in (0, 1)] == pytest.approx([8.0, 250.0])
    state.feedback(specs, ticket, 0.0, refund=(1, 1000))  # only 350 tokens were left
    assert [state.level(specs, i, 0.0) for i in (0, 1)] == pytest.approx([9.0, 600.0])
    assert state.feedback(specs, ticket, 0.0, refund=(1, 600)) == [0.0, 0.0]
    assert [state.level(specs, i, 0.0) for i in (0, 1)] == pytest.approx([9.0, 600.0])


def test_a_refund_after_the_ticket_expired_gives_nothing() -> None:
    """Past its expiry a ticket's refunds are forgotten, so none is given any more."""
    specs = (BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),)
    state = KeyState(1)
    state.admit(specs, (1000,), 0.0, ticket_id="a", ttl_s=10)
    last = state.admit(specs, (1000,), 0.0, ticket_id="b", ttl_s=10)
    assert isinstance(last, Ticket)
    assert (last.start, last.expires_at) == (pytest.approx(100.0), pytest.approx(110.0))
    state.feedback(specs, last, 100.0, refund=(500,))
    assert state.level(specs, 0, 100.0) == pytest.approx(500.0)
    assert set(state.refunded) == {"b"}
    state.feedback(specs, last, 111.0, refund=(500,))
    assert state.level(specs, 0, 111.0) == pytest.approx(610.0)  # refilled, nothing refunded
    assert state.refunded == {}


def test_a_pause_moves_every_waiting_request_keeping_their_spacing() -> None:
    """A 429 pause delays queued requests by the pause, not all to the same instant."""
    state = KeyState(1)
    for _ in range(60):
        admit(state, (RPM,), (1,), 0.0)
    queued = [admit(state, (RPM,), (1,), 0.0) for _ in range(3)]
    shifted = state.feedback((RPM,), queued[0], 0.5, pause_s=10.0)
    assert shifted == [pytest.approx(0.0)]
    assert [state.wait_s(t, 0.5) for t in queued[1:]] == pytest.approx([11.5, 12.5])
    late = admit(state, (RPM,), (1,), 0.5)
    assert late.start == pytest.approx(14.0)


def test_a_pause_blocks_new_starts_even_with_a_full_bucket() -> None:
    """No caller starts before a pause ends."""
    state = KeyState(1)
    first = admit(state, (RPM,), (1,), 0.0)
    state.feedback((RPM,), first, 0.0, pause_s=5.0)
    ticket = admit(state, (RPM,), (1,), 1.0)
    assert (ticket.start, ticket.bucket) == (5.0, "pause")


def test_the_server_deficit_corrects_the_bucket_counting_unanswered_requests() -> None:
    """Headers saying the server has spent more than we counted empty the local bucket,
    with requests still in flight counted on top."""
    specs = (BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),)
    state = KeyState(1)
    answered = admit(state, specs, (100,), 0.0)
    admit(state, specs, (100,), 0.0)  # in flight
    dropped = state.feedback(specs, answered, 0.0, deficits=(700,))
    assert dropped == [pytest.approx(600.0)]
    assert state.level(specs, 0, 0.0) == pytest.approx(200.0)


def test_following_the_server_down_needs_permission() -> None:
    """Headers showing more room lower the count only with follow_down."""
    specs = (BucketSpec("tokens", capacity=1000, burst=1000, rate_per_s=10.0),)
    state = KeyState(1)
    ticket = admit(state, specs, (600,), 0.0)
    state.feedback(specs, ticket, 0.0, deficits=(100,), follow_down=False)
    assert state.level(specs, 0, 0.0) == pytest.approx(400.0)
    other = admit(state, specs, (0,), 0.0)
    state.feedback(specs, other, 0.0, deficits=(100,), follow_down=True)
    assert state.level(specs, 0, 0.0) == pytest.approx(900.0)


def test_state_round_trips_through_json() -> None:
    """What the SQLite and Redis stores persist reads back the same."""
    state = KeyState(2)
    specs = (RPM, BucketSpec("tokens", capacity=100, burst=90, rate_per_s=2.0))
    admit(state, specs, (1, 50), 3.0)
    state.feedback(specs, admit(state, specs, (1, 20), 3.0), 3.0, refund=(0, 5))
    copy = KeyState.from_dict(json.loads(json.dumps(state.to_dict())), 2)
    assert copy.to_dict() == state.to_dict()
    assert KeyState.from_dict(state.to_dict(), 3).to_dict() == KeyState(3).to_dict()


def test_requests_in_flight_keep_their_stored_form() -> None:
    """A shared store keeps each request in flight as [expires_at, start, seq, costs...], as
    files written by earlier versions do, and reads it back as a ticket."""
    state = KeyState(2)
    specs = (RPM, BucketSpec("tokens", capacity=100, burst=90, rate_per_s=2.0))
    state.admit(specs, (1, 50), 3.0, ticket_id="t", ttl_s=60)
    assert state.to_dict()["inflight"] == {"t": [63.0, 3.0, 1.0, 1.0, 50.0]}
    copy = KeyState.from_dict(json.loads(json.dumps(state.to_dict())), 2).inflight["t"]
    assert (copy.id, copy.expires_at, copy.start, copy.seq, copy.costs) == (
        "t",
        63.0,
        3.0,
        1,
        (1.0, 50.0),
    )


def test_refunds_are_kept_beside_the_requests_in_flight() -> None:
    """A refunded ticket is kept as [expires_at, refunded...]; state written before refunds
    were kept has none, which reads as nothing refunded yet."""
    specs = (RPM, BucketSpec("tokens", capacity=100, burst=100, rate_per_s=2.0))
    state = KeyState(2)
    ticket = state.admit(specs, (1, 50), 3.0, ticket_id="t", ttl_s=60)
    assert isinstance(ticket, Ticket)
    old = state.to_dict()
    del old["refunded"]
    state.feedback(specs, ticket, 3.0, refund=(0, 20))
    assert state.to_dict()["refunded"] == {"t": [63.0, 0.0, 20.0]}
    earlier = KeyState.from_dict(json.loads(json.dumps(old)), 2)
    earlier.feedback(specs, ticket, 3.0, refund=(1, 50))
    earlier.feedback(specs, ticket, 3.0, refund=(1, 50))
    assert earlier.level(specs, 1, 3.0) == pytest.approx(100.0)
    assert earlier.level(specs, 0, 3.0) == pytest.approx(60.0)
    assert earlier.to_dict()["refunded"] == {"t": [63.0, 1.0, 50.0]}


# -- properties ----------------------------------------------------------------------

_specs = st.tuples(
    st.integers(1, 500), st.floats(0.1, 1.0), st.floats(0.01, 50.0, allow_nan=False)
).map(lambda t: BucketSpec("tokens", capacity=t[0], burst=t[0] * t[1], rate_per_s=t[2]))

_ops = st.lists(
    st.tuples(
        st.floats(0, 20, allow_nan=False),
        st.sampled_from(["admit", "admit", "admit", "refund", "pause"]),
        st.floats(0, 1, allow_nan=False),
        st.integers(0, 10_000),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(spec=_specs, ops=_ops)
@example(  # one ticket refunded twice was given back twice its cost
    spec=BucketSpec("tokens", capacity=2, burst=2.0, rate_per_s=1.0),
    ops=[
        *[(0.0, "admit", 0.0, 0)] * 3,
        (0.0, "refund", 1.0, 32),
        (0.0, "refund", 1.0, 158),
        *[(0.0, "admit", 0.0, 0)] * 2,
    ],
)
def test_admitted_never_exceeds_rate_times_elapsed_plus_capacity(
    spec: BucketSpec, ops: list[tuple[float, str, float, int]]
) -> None:
    """Over any window, what started (net of refunds) <= rate x window + capacity, under
    any interleaving of admissions, refunds and pauses."""
    state = KeyState(1)
    now = 0.0
    tickets: list[Ticket] = []
    net: dict[str, float] = {}
    started: dict[str, float] = {}
    for dt, op, fraction, pick in ops:
        now += dt
        for t in tickets:  # requests whose start passed have started, whatever comes next
            if t.id not in started and state.wait_s(t, now) == 0:
                started[t.id] = t.start + (state.shift_s - t.shift_s)
        if op == "admit":
            cost = max(1.0, round(fraction * spec.capacity))
            ticket = admit(state, (spec,), (cost,), now)
            tickets.append(ticket)
            net[ticket.id] = cost
        elif op == "refund" and tickets:
            ticket = tickets[pick % len(tickets)]
            amount = fraction * ticket.costs[0]
            state.feedback((spec,), ticket, now, refund=(amount,))
            net[ticket.id] -= min(amount, net[ticket.id])
        elif op == "pause" and tickets:
            state.feedback((spec,), tickets[-1], now, pause_s=fraction * 30)
    for t in tickets:
        started.setdefault(t.id, t.start + (state.shift_s - t.shift_s))
    points = sorted((started[t.id], net[t.id]) for t in tickets)
    for i, (t1, _) in enumerate(points):
        total = 0.0
        for t2, amount in points[i:]:
            total += amount
            assert total <= spec.rate_per_s * (t2 - t1) + spec.capacity + 1e-6 * spec.capacity


_feedback_ops = st.lists(
    st.tuples(
        st.floats(0, 20, allow_nan=False),
        st.sampled_from(["admit", "refund", "follow", "follow_down", "pause"]),
        st.floats(-2, 2, allow_nan=False),
        st.integers(0, 10_000),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(spec=_specs, ops=_feedback_ops)
def test_reconciliation_keeps_every_level_between_zero_and_capacity(
    spec: BucketSpec, ops: list[tuple[float, str, float, int]]
) -> None:
    """Refunds, server corrections (any deficit, even nonsense) and pauses never drive a
    bucket below zero or above its capacity."""
    state = KeyState(1)
    now = 0.0
    tickets: list[Ticket] = []
    for dt, op, x, pick in ops:
        now += dt
        if op == "admit":
            tickets.append(admit(state, (spec,), (min(spec.capacity, abs(x) * 100),), now))
        elif tickets:
            ticket = tickets[pick % len(tickets)]
            if op == "refund":
                state.feedback((spec,), ticket, now, refund=(abs(x) * spec.capacity,))
            elif op == "pause":
                state.feedback((spec,), ticket, now, pause_s=abs(x) * 10)
            else:
                state.feedback(
                    (spec,),
                    ticket,
                    now,
                    deficits=(x * spec.capacity,),
                    follow_down=op == "follow_down",
                )
        level = state.level((spec,), 0, now)
        assert -1e-6 * spec.capacity <= level <= spec.capacity * (1 + 1e-9)
        assert math.isfinite(level)


class _Scanning(KeyState):
    """The expiry every key had before :attr:`KeyState.next_expiry`: each operation looks at
    every ticket in flight and every refund kept."""

    def expire(self, now: float) -> None:
        self.next_expiry = -math.inf  # as if one might have expired: look at every one
        super().expire(now)


_expiry_ops = st.lists(
    st.tuples(
        st.floats(0, 40, allow_nan=False),
        st.sampled_from(["admit", "admit", "answer", "refund", "correct", "learn", "reload"]),
        st.floats(0.5, 60, allow_nan=False),
        st.integers(0, 10_000),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=_expiry_ops)
@example(  # a refund kept for a ticket answered before the earliest expiry was looked for
    ops=[
        (0.0, "admit", 10.0, 0),
        (0.0, "admit", 5.0, 0),
        (0.0, "admit", 60.0, 0),
        (1.0, "answer", 1.0, 0),
        (5.0, "admit", 60.0, 0),
        (1.0, "refund", 1.0, 0),
        (5.0, "admit", 60.0, 0),
    ]
)
def test_expiry_forgets_what_looking_at_every_ticket_forgot(
    ops: list[tuple[float, str, float, int]],
) -> None:
    """Looking for expired tickets only once the earliest may have expired gives, after any
    sequence of admissions (any ticket lifetime), answers, refunds, corrections, lessons
    and reloads, the same state and results as looking at every ticket every time."""
    specs = (BucketSpec("tokens", capacity=1_000, burst=900, rate_per_s=20.0),)
    states: list[KeyState] = [KeyState(1), _Scanning(1)]
    tickets: list[list[Ticket]] = [[], []]
    now = 0.0
    for n, (dt, op, x, pick) in enumerate(ops):
        now += dt
        results: list[object] = []
        for state, held in zip(states, tickets, strict=True):
            if op == "admit":
                result = state.admit(specs, (x * 10,), now, ticket_id=f"t{n}", ttl_s=x)
                assert isinstance(result, Ticket)
                held.append(result)
                results.append(result)
            elif op == "reload":
                results.append(None)
            elif held:
                ticket = held[pick % len(held)]
                if op == "answer":
                    results.append(state.feedback(specs, ticket, now))
                elif op == "refund":
                    results.append(state.feedback(specs, ticket, now, refund=(x,)))
                else:
                    results.append(
                        state.feedback(
                            specs,
                            ticket,
                            now,
                            deficits=(x * 10,),
                            server_limits=(1_000.0,) if op == "learn" else (),
                        )
                    )
        if op == "reload":
            states = [
                type(state).from_dict(json.loads(json.dumps(state.to_dict())), 1)
                for state in states
            ]
        new, old = states
        if results:
            assert results[0] == results[1]
        assert new.to_dict() == old.to_dict()
        assert new.inflight == old.inflight
        assert all(t.expires_at >= new.next_expiry for t in new.inflight.values())
