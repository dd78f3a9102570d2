"""One semantics for every state store: in-process, SQLite and Redis.

Each store is checked against the pure math (``KeyState``, ``LedgerState``) on random
sequences of operations, then for what only shared stores promise: state that survives a
restart, and no overspending by concurrent threads and processes.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import random
import threading
from datetime import UTC, datetime
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prismq_llmtools.clock import system_clock, wall_seconds
from prismq_llmtools.stores import StateRegistry, StateStore, accounting
from prismq_llmtools.stores.bucket import BucketSpec, KeyState, Refusal, Ticket
from prismq_llmtools.stores.ledger import BudgetLine, LedgerState
from prismq_llmtools.stores.memory import MemoryStore
from prismq_llmtools.stores.sqlite import SQLiteStore
from prismq_llmtools.testing.clock import FakeClock

SPECS = (
    BucketSpec("requests", capacity=10, burst=9, rate_per_s=10 / 60),
    BucketSpec("tokens", capacity=1_000, burst=900, rate_per_s=1_000 / 60),
)
LINES = (
    BudgetLine(name="daily_tokens", unit="tokens", period="day", limit=5_000),
    BudgetLine(name="window_usd", unit="usd", period="rolling", limit=2_000_000, window_s=600),
)
_ids = itertools.count()


def wall(clock: FakeClock) -> float:
    return clock.wall().timestamp()


def now_of(store: StateStore, clock: FakeClock) -> float:
    """The time base a store reads from the caller's clock."""
    return clock.now() if store.url == "memory" else wall(clock)


_limit_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["admit", "admit", "wait", "follow", "refund", "pause", "answer", "release", "levels"]
        ),
        st.floats(0, 5, allow_nan=False),
        st.integers(0, 1_000),
        st.floats(0, 1, allow_nan=False),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_limit_ops)
def test_rate_limits_follow_the_pure_math(store: StateStore, ops: list[Any]) -> None:
    """Every store admits, waits, refunds, pauses, corrects and releases exactly as KeyState
    does."""
    store.clear()
    clock = FakeClock(start=100.0)
    key = f"model-{next(_ids)}"
    reference = KeyState(len(SPECS))
    tickets: list[Ticket] = []
    for op, dt, number, fraction in ops:
        clock.advance(dt)
        now = now_of(store, clock)
        if op == "admit":
            costs = (1.0, float(number))
            max_wait = fraction * 60
            expected = reference.admit(
                SPECS, costs, now, ticket_id=str(len(tickets)), ttl_s=60, max_wait_s=max_wait
            )
            got = store.admit(
                key,
                SPECS,
                costs,
                clock=clock,
                ticket_id=str(len(tickets)),
                ttl_s=60,  # some expire: they leave the requests in flight, and take no refunds
                max_wait_s=max_wait,
            )
            assert type(got) is type(expected)
            if isinstance(expected, Ticket):
                assert isinstance(got, Ticket)
                assert got.start == pytest.approx(expected.start, abs=1e-6)
                assert got.charged == pytest.approx(expected.charged)
                assert got.costs == pytest.approx(expected.costs)
                assert got.expires_at == pytest.approx(expected.expires_at, abs=1e-6)
                tickets.append(got)
            else:
                assert isinstance(got, Refusal)
                assert got.wait_s == pytest.approx(expected.wait_s, abs=1e-6)
        elif tickets:
            ticket = tickets[number % len(tickets)]
            kwargs: dict[str, Any] = {}
            if op == "wait":
                expected_wait = reference.wait_s(ticket, now)
                got_wait = store.wait_s(key, SPECS, ticket, clock=clock)
                assert got_wait == pytest.approx(expected_wait, abs=1e-6)
                continue
            if op == "release":  # answered, nothing to correct, said as such
                reference.release(ticket, now)
                store.release(key, SPECS, ticket, clock=clock)
                continue
            if op == "levels":
                levels = [reference.level(SPECS, i, now) for i in range(len(SPECS))]
                assert store.levels(key, SPECS, clock=clock) == pytest.approx(levels, abs=1e-6)
                continue
            if op == "follow":
                kwargs = {
                    "deficits": (None, fraction * 1_200),
                    "follow_down": number % 2 == 0,
                    "server_limits": (None, 1_000.0) if number % 3 else (),
                    "refused": number % 7 == 0,
                }
            elif op == "refund":
                kwargs = {"refund": tuple(c * fraction for c in ticket.costs)}
            elif op == "answer":  # nothing to correct: the ticket is released
                pass
            else:
                kwargs = {"pause_s": fraction * 20}
            expected_drop = reference.feedback(SPECS, ticket, now, **kwargs)
            got_drop = store.feedback(key, SPECS, ticket, clock=clock, **kwargs)
            assert got_drop == pytest.approx(expected_drop, abs=1e-6)


_budget_ops = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "settle", "status"]),
        st.floats(0, 200, allow_nan=False),
        st.integers(0, 3_000),
        st.floats(0, 1, allow_nan=False),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_budget_ops)
def test_budgets_follow_the_pure_math(store: StateStore, ops: list[Any]) -> None:
    """Every store reserves, settles and reports budgets exactly as LedgerState does."""
    clock = FakeClock(start=0.0)
    scope = f"scope-{next(_ids)}"
    reference = LedgerState()
    open_: list[tuple[str, dict[str, int]]] = []
    for i, (op, dt, number, fraction) in enumerate(ops):
        clock.advance(dt)
        now = wall(clock)
        if op == "reserve":
            amounts = {"tokens": number, "usd": number * 700}
            expected = reference.reserve(LINES, amounts, now, reservation_id=str(i), ttl_s=600)
            got = store.reserve(
                scope, LINES, amounts, clock=clock, reservation_id=str(i), ttl_s=600
            )
            assert got == expected
            if expected is None:
                open_.append((str(i), amounts))
        elif op == "settle" and open_:
            rid, amounts = open_.pop(number % len(open_))
            actual = {unit: int(amount * fraction) for unit, amount in amounts.items()}
            assert store.settle(scope, LINES, rid, actual, clock=clock) == reference.settle(
                LINES, rid, actual, now
            )
        else:
            assert store.budget_status(scope, LINES, clock=clock) == reference.status(LINES, now)


def test_settling_a_reservation_again_releases_nothing_more(store: StateStore) -> None:
    """A reservation is released once: settling it a second time (a caller repeating
    itself) frees nothing more, in every store (other reservations stay held)."""
    clock = FakeClock()
    store.reserve("s", LINES, {"tokens": 600}, clock=clock, reservation_id="r", ttl_s=60)
    store.reserve("s", LINES, {"tokens": 300}, clock=clock, reservation_id="o", ttl_s=60)
    store.settle("s", LINES, "r", {"tokens": 250}, clock=clock)
    first = store.budget_status("s", LINES, clock=clock)[0]
    assert (first.spent, first.reserved) == (250, 300)
    store.settle("s", LINES, "r", {"tokens": 250}, clock=clock)
    again = store.budget_status("s", LINES, clock=clock)[0]
    assert again.reserved == 300
    assert again.spent >= first.spent
    assert again.remaining <= first.remaining


def test_every_store_learns_the_servers_accounting_as_the_pure_math_does(url: str) -> None:
    """Answers from a server charging 1.4x our count plus 5 a request (one of them a 429):
    every store learns what KeyState learns, reserves the same charges at the same starts,
    and a shared store hands what it learned to another process's store object."""
    clock = FakeClock(start=100.0)
    registry = StateRegistry()
    store = registry.store(url)
    store.clear()
    reference = KeyState(len(SPECS))
    rng = random.Random(3)
    deficit, admitted_at = 0.0, None
    tickets: list[Ticket] = []
    for n in range(60):
        costs = (1.0, float(rng.randint(20, 60)))
        now = now_of(store, clock)
        expected = reference.admit(SPECS, costs, now, ticket_id=str(n), ttl_s=600)
        got = store.admit(
            "learning", SPECS, costs, clock=clock, ticket_id=str(n), ttl_s=600, max_wait_s=1e9
        )
        assert isinstance(expected, Ticket)
        assert isinstance(got, Ticket)
        assert got.start == pytest.approx(expected.start, abs=1e-6)
        assert got.costs == pytest.approx(expected.costs)
        assert got.counted == pytest.approx(expected.counted)
        tickets.append(got)
        clock.advance(max(0.0, got.start - now))
        now = now_of(store, clock)
        refused = n == 30
        if admitted_at is not None:
            deficit = max(0.0, deficit - 1_000 / 60 * (now - admitted_at))
        deficit += 0.0 if refused else 1.4 * costs[1] + 5
        admitted_at = now
        kwargs: dict[str, Any] = {
            "deficits": (None, min(deficit, 1_000.0)),
            "server_limits": (None, 1_000.0),
            "refused": refused,
        }
        expected_drop = reference.feedback(SPECS, expected, now, **kwargs)
        got_drop = store.feedback("learning", SPECS, got, clock=clock, **kwargs)
        assert got_drop == pytest.approx(expected_drop, abs=1e-6)
        clock.advance(0.5)
    assert reference.learned[1][accounting.PAIRS] >= accounting.MIN_PAIRS
    probe = reference.admit(SPECS, (1.0, 40.0), now_of(store, clock), ticket_id="p", ttl_s=600)
    assert isinstance(probe, Ticket)
    assert probe.costs[1] == pytest.approx(1.4 * 40 + 5, rel=0.05)
    if url != "memory":  # another process: a new store object on the same URL
        other = StateRegistry().store(url)
        shared = other.admit(
            "learning", SPECS, (1.0, 40.0), clock=clock, ticket_id="p", ttl_s=600, max_wait_s=1e9
        )
        assert isinstance(shared, Ticket)
        assert shared.costs[1] == pytest.approx(probe.costs[1])
    registry.reset()


def test_a_reservation_never_settled_is_charged_in_full_when_it_expires(
    store: StateStore,
) -> None:
    """A reservation whose process died mid-call may have been billed: past its TTL it is
    spent at the worst case it held, never forgotten, in every store."""
    clock = FakeClock()
    store.reserve("s", LINES, {"tokens": 600}, clock=clock, reservation_id="dead", ttl_s=60)
    clock.advance(61)
    (status, *_) = store.budget_status("s", LINES, clock=clock)
    assert (status.spent, status.reserved) == (600, 0)


def test_shared_stores_survive_a_restart(url: str) -> None:
    """Budgets and buckets in SQLite or Redis outlive the process's store object."""
    clock = FakeClock()
    first = StateRegistry()
    store = first.store(url)
    store.clear()
    store.reserve("s", LINES, {"tokens": 100, "usd": 5}, clock=clock, reservation_id="r", ttl_s=60)
    store.settle("s", LINES, "r", {"tokens": 60, "usd": 5}, clock=clock)
    store.admit("k", SPECS, (1, 500), clock=clock, ticket_id="t", ttl_s=60, max_wait_s=0)
    first.reset()
    again = StateRegistry().store(url)
    spent = again.budget_status("s", LINES, clock=clock)[0].spent
    levels = again.levels("k", SPECS, clock=clock)
    if url == "memory":
        assert (spent, levels) == (0, [10, 1_000])
    else:
        assert (spent, levels) == (60, pytest.approx([9, 500]))


def test_the_in_process_store_keeps_each_clock_apart() -> None:
    """Times of one clock mean nothing on another: a new FakeClock starts from full buckets."""
    store = StateRegistry().store()
    first, second = FakeClock(), FakeClock()
    store.admit("k", SPECS, (1, 900), clock=first, ticket_id="a", ttl_s=60, max_wait_s=0)
    assert store.levels("k", SPECS, clock=second) == [10, 1_000]
    assert store.levels("k", SPECS, clock=first)[1] == pytest.approx(100)


def test_stores_read_wall_times_in_seconds_since_the_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clock's wall() as seconds; the system clock's straight from time.time()."""
    clock = FakeClock(wall_start=datetime(2026, 5, 1, tzinfo=UTC))
    clock.advance(90.5)
    assert wall_seconds(clock) == datetime(2026, 5, 1, 0, 1, 30, 500_000, tzinfo=UTC).timestamp()
    monkeypatch.setattr("time.time", lambda: 1_777_777_777.25)
    assert wall_seconds(system_clock) == 1_777_777_777.25


def test_concurrent_threads_never_overspend(store: StateStore) -> None:
    """64 threads reserving and settling at once never take a budget past its limit."""
    line = (BudgetLine(name="daily_usd", unit="usd", period="day", limit=1_000_000),)
    granted: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(5):
            rid = f"{n}.{i}"
            if store.reserve(
                "shared", line, {"usd": 9_000}, clock=system_clock, reservation_id=rid, ttl_s=60
            ):
                continue
            store.settle("shared", line, rid, {"usd": 8_000 + n}, clock=system_clock)
            with lock:
                granted.append(8_000 + n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = store.budget_status("shared", line, clock=system_clock)[0].spent
    assert spent == sum(granted) <= 1_000_000
    assert spent > 1_000_000 - 2 * 9_000


def _process_worker(url: str, worker: int, results: Any) -> None:
    registry = StateRegistry()
    store = registry.store(url)
    line = (BudgetLine(name="daily_usd", unit="usd", period="day", limit=1_000_000),)
    granted = 0
    starts = []
    for i in range(40):
        rid = f"{worker}.{i}"
        if not store.reserve(
            "procs", line, {"usd": 9_000}, clock=system_clock, reservation_id=rid, ttl_s=60
        ):
            store.settle("procs", line, rid, {"usd": 8_500}, clock=system_clock)
            granted += 8_500
        ticket = store.admit(
            "procs", SPECS, (1, 40), clock=system_clock, ticket_id=rid, ttl_s=60, max_wait_s=1e9
        )
        assert isinstance(ticket, Ticket)
        starts.append(ticket.start)
    registry.reset()
    results.put((granted, starts))


@pytest.mark.parametrize("count", [4])
def test_concurrent_processes_never_overspend_nor_overrun(
    url: str, count: int, processes: ForkServerContext
) -> None:
    """4 processes sharing a SQLite or Redis store: budgets hold, and admissions never
    exceed rate x elapsed + capacity."""
    if url == "memory":
        pytest.skip("the in-process store is not shared between processes")
    StateRegistry().store(url).clear()
    results = processes.Queue()
    workers = [
        processes.Process(target=_process_worker, args=(url, n, results)) for n in range(count)
    ]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    spent = (
        StateRegistry()
        .store(url)
        .budget_status(
            "procs",
            (BudgetLine(name="daily_usd", unit="usd", period="day", limit=1_000_000),),
            clock=system_clock,
        )[0]
        .spent
    )
    assert spent == sum(g for g, _ in collected) <= 1_000_000
    starts = sorted(s for _, batch in collected for s in batch)
    for spec, cost in zip(SPECS, (1, 40), strict=True):
        for i, first in enumerate(starts):
            admitted = sum(cost for s in starts[i:] if s <= first + 5.0)
            assert admitted <= spec.capacity + spec.rate_per_s * 5.0 + 1e-6


def test_the_store_is_chosen_by_argument_settings_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store= picks the store; the settings file and PRISMQ_LLMTOOLS__<SITE>__STORE override."""
    from prismq_llmtools import rate_limited, token_budgeted
    from prismq_llmtools.budget import budget_status
    from prismq_llmtools.settings import Settings, reset_settings

    clock = FakeClock()
    by_argument = f"sqlite://{tmp_path / 'argument.db'}"
    by_environment = f"sqlite://{tmp_path / 'environment.db'}"
    registry = StateRegistry()

    def make() -> Any:
        @token_budgeted(daily_tokens=100, store=by_argument, registry=registry, clock=clock)
        @rate_limited(rpm=5, store=by_argument, registry=registry, clock=clock, model="gpt-4o")
        def ask(text: str) -> dict[str, Any]:
            return {"model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}

        return ask

    ask = make()
    ask("x")
    assert budget_status(ask)["daily_tokens"]["spent"] == 10
    registry.reset()
    assert budget_status(make())["daily_tokens"]["spent"] == 10  # survived the "restart"

    reset_settings(Settings(sites={ask.llm.name: {"store": by_environment}}))
    assert budget_status(make())["daily_tokens"]["spent"] == 0
    reset_settings(Settings())
    monkeypatch.setenv("PRISMQ_LLMTOOLS__ALL__STORE", by_environment)
    monkeypatch.setenv("PRISMQ_LLMTOOLS__ALL__DAILY_TOKENS", "50")
    fresh = make()
    fresh("y")
    assert budget_status(fresh)["daily_tokens"] == {
        "unit": "tokens",
        "limit": 50,
        "spent": 10,
        "reserved": 0,
        "remaining": 40,
    }
    assert (tmp_path / "environment.db").exists()
    registry.reset()


def test_redis_reads_the_time_of_the_redis_server(redis_server: str) -> None:
    """With server time, clients whose clocks disagree by decades still share one bucket."""
    from datetime import UTC, datetime

    store = StateRegistry().store(redis_server)
    store.clear()
    past = FakeClock(wall_start=datetime(1990, 1, 1, tzinfo=UTC))
    future = FakeClock(wall_start=datetime(2090, 1, 1, tzinfo=UTC))
    first = store.admit("k", SPECS, (9, 0), clock=past, ticket_id="a", ttl_s=60, max_wait_s=0)
    second = store.admit("k", SPECS, (1, 0), clock=future, ticket_id="b", ttl_s=60, max_wait_s=99)
    assert isinstance(first, Ticket)
    assert isinstance(second, Ticket)
    assert second.wait_s == pytest.approx(6.0, abs=0.5)  # one request refills in 6 s
    assert abs(first.start - datetime.now(UTC).timestamp()) < 5


def test_an_unreachable_redis_is_a_state_store_error_without_the_password() -> None:
    """A Redis that does not answer raises StateStoreError; the URL shown hides secrets."""
    from prismq_llmtools.errors import StateStoreError
    from tests.conftest import _free_port

    url = f"redis://:hunter2secret@127.0.0.1:{_free_port()}/0"
    store = StateRegistry().store(url)
    with pytest.raises(StateStoreError) as caught:
        store.admit("k", SPECS, (1, 1), clock=system_clock, ticket_id="a", ttl_s=1, max_wait_s=0)
    assert "hunter2secret" not in str(caught.value)
    assert "***" in caught.value.url
    assert isinstance(caught.value, ConnectionError)


def test_a_ticket_refunded_twice_gets_back_its_cost_once(store: StateStore) -> None:
    """Every store gives a ticket back at most its cost, however often it is refunded."""
    clock = FakeClock()
    store.admit("k", SPECS, (1, 500), clock=clock, ticket_id="a", ttl_s=60, max_wait_s=0)
    ticket = store.admit("k", SPECS, (1, 400), clock=clock, ticket_id="b", ttl_s=60, max_wait_s=0)
    assert isinstance(ticket, Ticket)
    assert store.levels("k", SPECS, clock=clock) == pytest.approx([8, 100])
    store.feedback("k", SPECS, ticket, clock=clock, refund=(0, 150))
    store.feedback("k", SPECS, ticket, clock=clock, refund=ticket.costs)
    assert store.levels("k", SPECS, clock=clock) == pytest.approx([9, 500])
    store.feedback("k", SPECS, ticket, clock=clock, refund=ticket.costs)
    assert store.levels("k", SPECS, clock=clock) == pytest.approx([9, 500])


def test_no_store_refunds_an_expired_ticket(store: StateStore) -> None:
    """Past its expiry a ticket's refunds are forgotten in every store: none is given."""
    clock = FakeClock()
    tickets = [
        store.admit("k", SPECS, (1, 1_000), clock=clock, ticket_id=i, ttl_s=10, max_wait_s=99)
        for i in "ab"
    ]
    last = tickets[-1]
    assert isinstance(last, Ticket)
    assert last.expires_at == pytest.approx(last.start + 10)
    clock.advance(last.expires_at - now_of(store, clock) + 1)  # 1 s past its expiry
    store.feedback("k", SPECS, last, clock=clock, refund=last.costs)
    assert store.levels("k", SPECS, clock=clock) == pytest.approx([10, 1_000 / 60 * 11])


def test_a_key_declared_with_other_limits_starts_afresh(store: StateStore) -> None:
    """Changing a key's limits (a new config) does not inherit buckets kept for the old ones."""
    clock = FakeClock()
    store.admit("k", SPECS, (9, 900), clock=clock, ticket_id="a", ttl_s=60, max_wait_s=0)
    other = (BucketSpec("requests", capacity=20, burst=18, rate_per_s=20 / 60), SPECS[1])
    assert store.levels("k", other, clock=clock) == [20, 1_000]


def test_the_in_process_store_finds_a_key_by_equal_limits_as_by_the_same() -> None:
    """Equal limits given as another sequence reach the same buckets as the declared tuple."""
    clock = FakeClock()
    store, reference = StateRegistry().store(), KeyState(len(SPECS))
    for i, specs in enumerate([SPECS, list(SPECS), (*SPECS,), SPECS]):
        clock.advance(0.5)
        costs = (1.0, 100.0 * i)
        got = store.admit("k", specs, costs, clock=clock, ticket_id=str(i), ttl_s=60, max_wait_s=9)
        want = reference.admit(SPECS, costs, clock.now(), ticket_id=str(i), ttl_s=60, max_wait_s=9)
        assert got == want
        levels = [reference.level(SPECS, j, clock.now()) for j in range(len(SPECS))]
        assert store.levels("k", list(SPECS), clock=clock) == levels


def test_the_in_process_store_forgets_a_clock_when_it_dies() -> None:
    """A dead clock's buckets go with it (no leak); the system clock's stay, and clear() works."""
    store = StateRegistry().store()
    clock = FakeClock()
    store.admit("k", SPECS, (1, 900), clock=clock, ticket_id="a", ttl_s=60, max_wait_s=0)
    store.admit("k", SPECS, (1, 900), clock=system_clock, ticket_id="b", ttl_s=60, max_wait_s=0)
    assert repr(store) == "MemoryStore(clocks=2)"
    del clock
    gc.collect()
    assert repr(store) == "MemoryStore(clocks=1)"
    assert store.levels("k", SPECS, clock=system_clock)[1] < 500  # kept (refilling)
    store.clear()
    assert repr(store) == "MemoryStore(clocks=0)"
    again = FakeClock()
    assert store.levels("k", SPECS, clock=again) == [10, 1_000]
    del again
    gc.collect()
    assert repr(store) == "MemoryStore(clocks=0)"


_BEFORE_MIDNIGHT = datetime(2026, 3, 31, 23, 50, tzinfo=UTC)

_memory_ops = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "settle", "status", "clear"]),
        st.integers(0, 1),  # which clock
        st.integers(0, 1),  # which scope
        st.floats(0, 120, allow_nan=False),
        st.integers(0, 3_000),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=_memory_ops)
def test_the_in_process_store_finds_each_clock_and_scope_its_own_ledger(ops: list[Any]) -> None:
    """Calls alternating between clocks and scopes across midnight, and clearing, meet the
    ledger each (clock, scope) would have on its own, as the pure math keeps it."""
    store = MemoryStore()
    clocks = [FakeClock(wall_start=_BEFORE_MIDNIGHT), FakeClock(wall_start=_BEFORE_MIDNIGHT)]
    references: dict[tuple[int, int], LedgerState] = {}
    open_: list[tuple[int, int, str]] = []
    for i, (op, c, s, dt, number) in enumerate(ops):
        clock, scope = clocks[c], f"scope-{s}"
        clock.advance(dt)
        now = wall(clock)
        reference = references.setdefault((c, s), LedgerState())
        if op == "clear":
            store.clear()
            references.clear()
            open_.clear()
            reference = references.setdefault((c, s), LedgerState())
        elif op == "reserve":
            amounts = {"tokens": number, "usd": number * 700}
            expected = reference.reserve(LINES, amounts, now, reservation_id=str(i), ttl_s=600)
            got = store.reserve(
                scope, LINES, amounts, clock=clock, reservation_id=str(i), ttl_s=600
            )
            assert got == expected
            if expected is None:
                open_.append((c, s, str(i)))
        elif op == "settle" and open_:
            c, s, rid = open_.pop(number % len(open_))
            clock, scope, reference = clocks[c], f"scope-{s}", references[(c, s)]
            actual = {"tokens": number // 2, "usd": number * 300}
            expected_crossings = reference.settle(LINES, rid, actual, wall(clock))
            assert store.settle(scope, LINES, rid, actual, clock=clock) == expected_crossings
        assert store.budget_status(scope, LINES, clock=clock) == reference.status(
            LINES, wall(clock)
        )


def _open_new_file(url: str, results: Any) -> None:
    try:
        SQLiteStore(url)._connection()
        results.put(None)
    except Exception as exc:  # reported to the test
        results.put(repr(exc))


def test_processes_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Several processes setting up the same new file race to switch it to WAL; none fails
    ("database is locked" came at once, without waiting on the busy timeout)."""
    context = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(15):
        url = f"sqlite://{tmp_path / f'new-{attempt}.db'}"
        results = context.Queue()
        workers = [context.Process(target=_open_new_file, args=(url, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        failures += [r for r in (results.get(timeout=60) for _ in workers) if r is not None]
        for worker in workers:
            worker.join(timeout=30)
    assert failures == []
