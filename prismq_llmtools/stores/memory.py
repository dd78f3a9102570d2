"""The in-process store: buckets and budgets in dictionaries, behind one lock.

Times on one clock mean nothing on another, so state is kept per clock: every site on the
system clock (all of them, in production) shares one set of buckets and budgets, while a
test's ``FakeClock`` starts from full buckets and empty budgets.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from prismq_llmtools.clock import Clock, wall_seconds
from prismq_llmtools.stores.bucket import (
    REORDER_WINDOW_S,
    BucketSpec,
    KeyState,
    Refusal,
    Ticket,
    check_admission,
    check_feedback,
)
from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial, LedgerState

__all__ = ["MemoryStore"]


class MemoryStore:
    """State for one process; rate limits on the monotonic clock, budgets on the wall clock."""

    url = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_clock: dict[int, _Partition] = {}
        """Partitions by ``id(clock)``. A clock that takes weak references is forgotten with
        its partition when it dies (before its id can be reused); one that does not (the
        system clock) is kept by its partition, so its id is never reused."""

    def _partition(self, clock: Clock) -> _Partition:
        return self._by_clock.get(id(clock)) or self._new_partition(clock)

    def _new_partition(self, clock: Clock) -> _Partition:
        part = self._by_clock[id(clock)] = _Partition()
        try:
            part.anchor = weakref.finalize(clock, _forget, weakref.ref(self), id(clock))
        except TypeError:
            part.anchor = clock
        return part

    def _key(self, key: str, specs: Sequence[BucketSpec], clock: Clock) -> KeyState:
        # (_partition's own lookup, inline: the store finds a key on every operation)
        keys = (self._by_clock.get(id(clock)) or self._new_partition(clock)).keys
        entry = keys.get(key)
        if entry is not None and (entry[0] is specs or entry[0] == tuple(specs)):
            # No recovery check (KeyState.recover): this state lives and dies with the
            # process, and this version never writes an unsound value.
            return entry[1]
        state = KeyState(len(specs))  # new, or declared anew (other limits): afresh
        keys[key] = (tuple(specs), state)
        return state

    def _ledger(self, scope: str, clock: Clock) -> LedgerState:
        ledgers = self._partition(clock).ledgers
        ledger = ledgers.get(scope)
        if ledger is None:
            ledger = ledgers[scope] = LedgerState()
        return ledger

    def admit(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        costs: Sequence[float],
        *,
        clock: Clock,
        ticket_id: str,
        ttl_s: float,
        max_wait_s: float,
    ) -> Ticket | Refusal:
        check_admission(key, costs, ttl_s)
        with self._lock:
            now = clock.now()
            return self._key(key, specs, clock).admit(
                specs,
                costs,
                now,
                ticket_id=ticket_id,
                ttl_s=ttl_s,
                max_wait_s=max_wait_s,
            )

    def wait_s(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> float:
        with self._lock:
            now = clock.now()
            return self._key(key, specs, clock).wait_s(ticket, now)

    def release(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> None:
        with self._lock:
            self._key(key, specs, clock).release(ticket, clock.now())

    def feedback(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        ticket: Ticket,
        *,
        clock: Clock,
        deficits: Sequence[float | None] = (),
        refund: Sequence[float] = (),
        pause_s: float = 0.0,
        follow_down: bool = True,
        reorder_s: float = REORDER_WINDOW_S,
        server_limits: Sequence[float | None] = (),
        refused: bool = False,
    ) -> list[float]:
        check_feedback(key, deficits, refund, pause_s)
        with self._lock:
            now = clock.now()
            return self._key(key, specs, clock).feedback(
                specs,
                ticket,
                now,
                deficits=deficits,
                refund=refund,
                pause_s=pause_s,
                follow_down=follow_down,
                reorder_s=reorder_s,
                server_limits=server_limits,
                refused=refused,
            )

    def levels(self, key: str, specs: Sequence[BucketSpec], *, clock: Clock) -> list[float]:
        with self._lock:
            now = clock.now()
            state = self._key(key, specs, clock)
            return [state.level(specs, i, now) for i in range(len(specs))]

    def reserve(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        amounts: dict[str, int],
        *,
        clock: Clock,
        reservation_id: str,
        ttl_s: float,
    ) -> Denial | None:
        with self._lock:
            ledger = self._ledger(scope, clock)
            return ledger.reserve(
                lines, amounts, wall_seconds(clock), reservation_id=reservation_id, ttl_s=ttl_s
            )

    def settle(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        reservation_id: str,
        actual: dict[str, int],
        *,
        clock: Clock,
    ) -> list[Crossing]:
        with self._lock:
            ledger = self._ledger(scope, clock)
            return ledger.settle(lines, reservation_id, actual, wall_seconds(clock))

    def budget_status(
        self, scope: str, lines: Sequence[BudgetLine], *, clock: Clock
    ) -> list[BudgetStatus]:
        with self._lock:
            ledger = self._ledger(scope, clock)
            return ledger.status(lines, wall_seconds(clock))

    def clear(self) -> None:
        with self._lock:
            for part in self._by_clock.values():
                if isinstance(part.anchor, weakref.finalize):
                    part.anchor.detach()
            self._by_clock.clear()

    def close(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"MemoryStore(clocks={len(self._by_clock)})"


def _forget(store: weakref.ref[MemoryStore], clock_id: int) -> None:
    """A clock died: its partition goes too (its times mean nothing on any other clock)."""
    # Without the lock: this may run wherever the collector does, the lock held or not; one
    # dict operation is atomic, and no operation can be using the dead clock's partition.
    live = store()
    if live is not None:
        live._by_clock.pop(clock_id, None)


class _Partition:
    __slots__ = ("anchor", "keys", "ledgers")

    def __init__(self) -> None:
        self.keys: dict[str, tuple[tuple[BucketSpec, ...], KeyState]] = {}
        """Each key's buckets as declared, and their state."""
        self.ledgers: dict[str, LedgerState] = {}
        self.anchor: object = None
        """What ties the partition to its clock: a finalizer, or the clock itself."""
