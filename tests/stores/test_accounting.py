"""Learning how the server charges, from its rate-limit headers: the pure math.

A synthetic server (its charge a function of our count, a deterministic jitter on its
admission times) feeds :func:`accounting.observe` what its headers would say; the learned
relation must predict its charge, and no sequence of readings whatever can push the
learned relation out of its bounds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools.stores import accounting
from prismq_llmtools.stores.bucket import BucketSpec, KeyState, Ticket

CAPACITY = 4_000.0
RATE = CAPACITY / 60


def _feed(
    record: list[float], server: Callable[[float], float], *, requests: int, seed: int = 0
) -> None:
    """Requests of 40-70 tokens (ours) at the server's limit; its deficit as its headers
    state it, after each admission, at a time known to within 20 ms."""
    rng = random.Random(seed)
    deficit, t, counted = 0.9 * CAPACITY, 0.0, 0.0
    for seq in range(1, requests + 1):
        ours = rng.uniform(40, 70)
        theirs = server(ours)
        dt = theirs / RATE
        t += dt
        deficit = min(CAPACITY, max(0.0, deficit - RATE * dt) + theirs)
        counted += ours
        seen = t + rng.uniform(-0.02, 0.02)
        accounting.observe(
            record, CAPACITY, seq=seq, counted=counted, now=seen, deficit=deficit, rate=RATE
        )


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(lambda c: 0.7 * c, id="ratio 0.7"),
        pytest.param(lambda c: 1.04 * c, id="ratio 1.04"),
        pytest.param(lambda c: 1.5 * c, id="ratio 1.5"),
        pytest.param(lambda c: c + 20, id="20 a request"),
        pytest.param(lambda c: 1.2 * c + 15, id="both"),
    ],
)
def test_the_relation_is_learned_from_successive_headers(server: Callable[[float], float]) -> None:
    """Exact for the typical request; pairs span several requests (the timing noise), so
    the split between ratio and constant is less sure at the ends of the sizes seen."""
    record = accounting.fresh()
    _feed(record, server, requests=200)
    assert accounting.charge(record, 55.0, CAPACITY) == pytest.approx(server(55.0), rel=0.02)
    for ours in (40.0, 70.0):
        assert accounting.charge(record, ours, CAPACITY) == pytest.approx(server(ours), rel=0.08)
    ratio, per_request = accounting.ratio(record)
    assert accounting.RATIO_BOUNDS[0] <= ratio <= accounting.RATIO_BOUNDS[1]
    assert abs(per_request) <= accounting.PER_REQUEST_BOUND * CAPACITY


def test_nothing_is_learned_before_two_answers_far_enough_apart() -> None:
    record = accounting.fresh()
    assert accounting.charge(record, 50.0, CAPACITY) == 50.0
    accounting.observe(record, CAPACITY, seq=1, counted=50, now=0.0, deficit=3_000, rate=RATE)
    accounting.observe(record, CAPACITY, seq=2, counted=100, now=1.0, deficit=3_100, rate=RATE)
    assert accounting.charge(record, 50.0, CAPACITY) == 50.0  # closer than SPAN requests
    assert accounting.margin(record, CAPACITY, 3_600, pending=0) == 400


def test_answers_out_of_order_and_a_bucket_refilled_to_full_teach_nothing() -> None:
    record = accounting.fresh()
    accounting.observe(record, CAPACITY, seq=10, counted=500, now=10.0, deficit=3_000, rate=RATE)
    before = list(record)
    # An answer overtaken by a later one.
    accounting.observe(record, CAPACITY, seq=9, counted=450, now=9.5, deficit=2_990, rate=RATE)
    assert record == before
    # 60 s later: the server's bucket was full in between, its deficits do not add up.
    accounting.observe(record, CAPACITY, seq=20, counted=1_000, now=70.0, deficit=600, rate=RATE)
    assert record[accounting.PAIRS] == 0
    assert record[accounting.LAST_SEQ] == 20


def test_the_margin_narrows_once_learned_and_never_exceeds_the_configured_one() -> None:
    record = accounting.fresh()
    configured = CAPACITY - 3_600
    assert accounting.margin(record, CAPACITY, 3_600, pending=8) == configured
    _feed(record, lambda c: 1.5 * c, requests=100)
    narrowed = accounting.margin(record, CAPACITY, 3_600, pending=8)
    assert narrowed < 0.05 * CAPACITY
    assert accounting.margin(record, CAPACITY, 3_600, pending=0) <= narrowed
    assert accounting.margin(record, CAPACITY, 3_990, pending=8) == pytest.approx(10)


_readings = st.lists(
    st.tuples(
        st.floats(allow_nan=True, allow_infinity=True),  # seq step
        st.floats(allow_nan=True, allow_infinity=True),  # our count
        st.floats(allow_nan=True, allow_infinity=True),  # time step
        st.floats(allow_nan=True, allow_infinity=True),  # the server's deficit
        st.floats(allow_nan=True, allow_infinity=True),  # its rate
    ),
    max_size=60,
)


@given(readings=_readings, capacity=st.floats(1, 1e9))
def test_any_sequence_of_headers_gives_a_finite_bounded_relation(
    readings: list[tuple[float, float, float, float, float]], capacity: float
) -> None:
    record = accounting.fresh()
    seq = counted = now = 0.0
    for step, count, dt, deficit, rate in readings:
        seq = seq + step if math.isfinite(step) else step
        counted = counted + count if math.isfinite(count) else count
        now = now + dt if math.isfinite(dt) else dt
        accounting.observe(
            record, capacity, seq=seq, counted=counted, now=now, deficit=deficit, rate=rate
        )
        ratio, per_request = accounting.ratio(record)
        assert accounting.RATIO_BOUNDS[0] <= ratio <= accounting.RATIO_BOUNDS[1]
        assert abs(per_request) <= accounting.PER_REQUEST_BOUND * capacity
        assert all(math.isfinite(x) for x in record[: accounting.LAST_SEQ])
        for cost in (0.0, 1.0, capacity / 3):
            charged = accounting.charge(record, cost, capacity)
            assert math.isfinite(charged)
            assert 0 <= charged <= capacity
        margin = accounting.margin(record, capacity, capacity * 0.9, pending=seq)
        assert 0 < margin <= capacity * 0.1 + 1e-9 * capacity


SPECS = (
    BucketSpec("requests", capacity=10_000, burst=9_000, rate_per_s=10_000 / 60),
    BucketSpec("tokens", capacity=CAPACITY, burst=0.9 * CAPACITY, rate_per_s=RATE),
)


def test_a_key_learns_from_its_answers_and_reserves_the_servers_charge() -> None:
    """Through KeyState: the server charges 1.5x our count; after a few answers, admission
    reserves 1.5x, and a 429's headers teach as well (the refused request uncharged)."""
    state = KeyState(len(SPECS))
    now = admitted_at = server_deficit = 0.0
    for n in range(40):
        ticket = state.admit(SPECS, (1.0, 50.0), now, ticket_id=str(n), ttl_s=60)
        assert isinstance(ticket, Ticket)
        now = max(now, ticket.start)
        refused = n % 10 == 9  # with headers that show the server's state without it
        server_deficit = max(0.0, server_deficit - RATE * (now - admitted_at))
        server_deficit += 0.0 if refused else 75.0
        admitted_at = now
        state.feedback(
            SPECS,
            ticket,
            now,
            deficits=(None, server_deficit),
            server_limits=(None, CAPACITY),
            refused=refused,
        )
        now += 0.75
    ticket = state.admit(SPECS, (1.0, 50.0), now, ticket_id="last", ttl_s=60)
    assert isinstance(ticket, Ticket)
    assert ticket.costs[0] == 1.0
    assert ticket.costs[1] == pytest.approx(75.0, rel=0.02)
    assert ticket.counted[1] == 41 * 50.0
    ratio, per_request = accounting.ratio(state.learned[1])
    assert ratio * 50 + per_request == pytest.approx(75.0, rel=0.02)


def test_a_stored_record_of_another_shape_or_not_finite_starts_afresh() -> None:
    state = KeyState(len(SPECS))
    state.learned[1][accounting.A] = 2.0
    state.learned[1][accounting.PAIRS] = 5.0
    data = state.to_dict()
    assert KeyState.from_dict(data, len(SPECS)).learned[1][accounting.A] == 2.0
    data["learned"][1][accounting.A] = math.inf
    assert KeyState.from_dict(data, len(SPECS)).learned[1] == accounting.fresh()
    data["learned"][1] = [1.0, 2.0]
    assert KeyState.from_dict(data, len(SPECS)).learned[1] == accounting.fresh()
    del data["learned"], data["counted"]  # written by a version that learned nothing
    fresh = KeyState.from_dict(data, len(SPECS))
    assert fresh.learned == [accounting.fresh(), accounting.fresh()]
    assert fresh.counted == [0.0, 0.0]


_answers = st.lists(
    st.tuples(
        st.floats(0, 5),  # seconds to the next admission
        st.floats(allow_nan=True, allow_infinity=True),  # our capacity minus its remaining
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),  # its limit
        st.booleans(),  # a 429
        st.integers(0, 10_000),  # our count of the request
    ),
    max_size=40,
)


@given(answers=_answers)
def test_no_answers_can_make_admission_reserve_an_absurd_charge(
    answers: list[tuple[float, float, float | None, bool, int]],
) -> None:
    """Whatever the headers of the answers say (through KeyState, as every store applies
    them), the key keeps a finite, bounded relation and reserves a bounded charge."""
    state = KeyState(len(SPECS))
    now = 0.0
    for n, (dt, deficit, limit, refused, count) in enumerate(answers):
        now += dt
        ticket = state.admit(
            SPECS, (1.0, float(min(count, 3_000))), now, ticket_id=str(n), ttl_s=60
        )
        assert isinstance(ticket, Ticket)
        assert 0 <= ticket.costs[1] <= CAPACITY
        state.feedback(
            SPECS,
            ticket,
            max(now, ticket.start),
            deficits=(None, deficit),
            server_limits=(None, limit),
            refused=refused,
        )
        for record in state.learned:
            ratio, per_request = accounting.ratio(record)
            assert accounting.RATIO_BOUNDS[0] <= ratio <= accounting.RATIO_BOUNDS[1]
            assert abs(per_request) <= accounting.PER_REQUEST_BOUND * CAPACITY
            assert all(math.isfinite(x) for x in record)
