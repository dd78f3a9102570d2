"""State a store cannot read is a StateStoreError, never an empty state that resets a budget
or a rate limit; the budget's on_store_error policy decides what the call does."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import StateStoreError, token_budgeted
from prismq_llmtools.stores import StateRegistry, StateStore
from prismq_llmtools.stores.bucket import BucketSpec
from prismq_llmtools.stores.ledger import BudgetLine
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode

LINES = (BudgetLine(name="daily_tokens", unit="tokens", period="day", limit=1_000),)
SPECS = (BucketSpec(name="requests", capacity=10, burst=10, rate_per_s=1.0),)


def spend_it_all(store: StateStore, clock: FakeClock) -> None:
    """Reserve and settle the whole budget: the next reservation must be refused."""
    ok = store.reserve("s", LINES, {"tokens": 1_000}, clock=clock, reservation_id="a", ttl_s=60)
    assert ok is None
    store.settle("s", LINES, "a", {"tokens": 1_000}, clock=clock)
    refused = store.reserve("s", LINES, {"tokens": 1}, clock=clock, reservation_id="b", ttl_s=60)
    assert refused is not None


def _sqlite(path: Path, sql: str, *args: Any) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(sql, args)


@pytest.mark.parametrize(
    "state",
    [
        "{not json",
        "[]",
        '{"lines": {"daily_tokens": {"x": 1}}}',
        '{"lines": {"daily_tokens": {"p": 0, "s": "lots", "m": 0}}}',
        '{"lines": {}, "reservations": {"r": {"e": "soon"}}}',
    ],
)
def test_an_unreadable_sqlite_budget_row_is_a_store_error(
    tmp_path: Path, registry: StateRegistry, clock: FakeClock, state: str
) -> None:
    """A budgets row that is not JSON, or not a ledger, raises StateStoreError naming the
    row, and stays as it was (it is never replaced by an empty, reset ledger)."""
    path = tmp_path / "state.db"
    store = registry.store(f"sqlite://{path}")
    spend_it_all(store, clock)
    _sqlite(path, "UPDATE budgets SET state = ? WHERE key = 's'", state)
    with pytest.raises(StateStoreError, match="budgets row 's' cannot be read"):
        store.reserve("s", LINES, {"tokens": 1}, clock=clock, reservation_id="c", ttl_s=60)
    with pytest.raises(StateStoreError):
        store.budget_status("s", LINES, clock=clock)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT state FROM budgets").fetchone() == (state,)


@pytest.mark.parametrize(
    "damage",
    [
        lambda state: "{oops",
        lambda state: state.replace('"tats":[', '"tats":[1.0,'),
        lambda state: state.replace('"shift_s":', '"shift_s":"lots","x":'),
    ],
    ids=["not-json", "other-bucket-count", "text"],
)
def test_an_unreadable_sqlite_rate_limit_row_is_a_store_error(
    tmp_path: Path, registry: StateRegistry, clock: FakeClock, damage: Any
) -> None:
    """A rate_limits row that is not JSON, or whose buckets are not the declared ones' or
    not numbers, raises StateStoreError (not JSONDecodeError, never a refilled bucket).
    (Numbers that are not finite are what an older version stored from an unbounded
    Retry-After: that key starts afresh, see test_bounds.)"""
    path = tmp_path / "state.db"
    store = registry.store(f"sqlite://{path}")
    store.admit("k", SPECS, (1,), clock=clock, ticket_id="t", ttl_s=60, max_wait_s=0)
    with sqlite3.connect(path) as connection:
        (state,) = connection.execute("SELECT state FROM rate_limits").fetchone()
    damaged = damage(state)
    assert damaged != state
    _sqlite(path, "UPDATE rate_limits SET state = ? WHERE key = 'k'", damaged)
    with pytest.raises(StateStoreError, match="rate_limits row 'k' cannot be read"):
        store.admit("k", SPECS, (1,), clock=clock, ticket_id="u", ttl_s=60, max_wait_s=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("daily_tokens:s", "garbage"), ("daily_tokens:p", "nan"), ("daily_tokens:m", "")],
)
def test_garbage_in_the_redis_budget_hash_never_resets_the_budget(
    redis_server: str, registry: StateRegistry, clock: FakeClock, field: str, value: str
) -> None:
    """An exhausted budget whose Redis hash holds garbage fails closed: StateStoreError on
    every operation, never a fresh budget that lets calls through."""
    import redis

    store = registry.store(f"{redis_server}?clock=caller")
    store.clear()
    spend_it_all(store, clock)
    client = redis.Redis.from_url(redis_server)
    client.hset("prismq_llmtools:budget:{s}", field, value)
    for _ in range(3):
        with pytest.raises(StateStoreError, match="corrupt budget state"):
            store.reserve("s", LINES, {"tokens": 1}, clock=clock, reservation_id="c", ttl_s=60)
    client.hset("prismq_llmtools:budget:{s}", field, "0")  # a number again, but
    client.hdel("prismq_llmtools:budget:{s}", "daily_tokens:p")  # spending without a period
    with pytest.raises(StateStoreError, match="daily_tokens:p"):
        store.reserve("s", LINES, {"tokens": 1}, clock=clock, reservation_id="d", ttl_s=60)


def test_garbage_in_a_redis_reservation_is_a_store_error(
    redis_server: str, registry: StateRegistry, clock: FakeClock
) -> None:
    """An open reservation that cannot be parsed is an error, not a reservation dropped."""
    import redis

    store = registry.store(f"{redis_server}?clock=caller")
    store.clear()
    assert (
        store.reserve("s", LINES, {"tokens": 5}, clock=clock, reservation_id="r", ttl_s=60) is None
    )
    redis.Redis.from_url(redis_server).hset("prismq_llmtools:budget:{s}:reservations", "r", "x;y")
    with pytest.raises(StateStoreError, match="corrupt budget state"):
        store.budget_status("s", LINES, clock=clock)


def test_garbage_in_the_redis_bucket_hash_is_a_store_error(
    redis_server: str, registry: StateRegistry, clock: FakeClock
) -> None:
    """A bucket field that is not a number fails closed instead of refilling the bucket."""
    import redis

    store = registry.store(f"{redis_server}?clock=caller")
    store.clear()
    store.admit("k", SPECS, (1,), clock=clock, ticket_id="t", ttl_s=60, max_wait_s=0)
    client = redis.Redis.from_url(redis_server)
    (key,) = [k for k in client.keys("prismq_llmtools:*k*") if b"inflight" not in k]
    client.hset(key, "t1", "garbage")
    with pytest.raises(StateStoreError, match="corrupt rate-limit state"):
        store.admit("k", SPECS, (1,), clock=clock, ticket_id="u", ttl_s=60, max_wait_s=0)


@pytest.mark.parametrize("policy", ["raise", "allow"])
def test_a_corrupt_budget_row_follows_on_store_error(
    mode: Mode,
    tmp_path: Path,
    registry: StateRegistry,
    events: list[dict[str, Any]],
    policy: str,
) -> None:
    """Through the decorator, an unreadable row is a StateStoreError under "raise" and a
    warning event under "allow": never a raw JSONDecodeError."""
    path = tmp_path / "state.db"
    url = f"sqlite://{path}"
    registry.store(url).reserve(
        "corrupt", LINES, {"tokens": 1}, clock=FakeClock(), reservation_id="a", ttl_s=60
    )
    _sqlite(path, "UPDATE budgets SET state = '{oops'")

    @token_budgeted(
        daily_tokens=1_000,
        scope="corrupt",
        store=url,
        on_store_error=policy,  # type: ignore[arg-type]
        registry=registry,
    )
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = "gpt-4o-mini") -> str:
        return "ok"

    messages = [{"role": "user", "content": "hi"}]
    if policy == "raise":
        with pytest.raises(StateStoreError, match="cannot be read"):
            mode.invoke(ask, messages)
    else:
        assert mode.invoke(ask, messages) == "ok"
        errors = [e for e in events if e["event"] == "llm.store.error"]
        assert errors  # the reservation, and the settlement after the call
        assert all("cannot be read" in e["error"] for e in errors)
