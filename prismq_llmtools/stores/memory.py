"""The in-process store: buckets and budgets in dictionaries, behind one lock.

Times on one clock mean nothing on another, so state is kept per clock: every site on the
system clock (all of them, in production) shares one set of buckets and budgets, while a
test's ``FakeClock`` starts from full buckets and empty budgets.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from prismq_llmtools.clock import Clock
from prismq_llmtools.stores.bucket import REORDER_WINDOW_S, BucketSpec, KeyState, Refusal, Ticket
from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial, LedgerState

__all__ = ["MemoryStore"]


def _wall(clock: Clock) -> float:
    return clock.wall().timestamp()


class MemoryStore:
    """State for one process; rate limits on the monotonic clock, budgets on the wall clock."""

    url = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_clock: weakref.WeakKeyDictionary[Any, _Partition] = weakref.WeakKeyDictionary()
        self._by_clock_strong: dict[Any, _Partition] = {}  # clocks without weak references
        self._last_ledger: tuple[Callable[[], Any], str, LedgerState] | None = None
        """The clock (weakly), scope and ledger found last: a site's calls ask for the same one."""

    def _partition(self, clock: Clock) -> _Partition:
        try:
            part = self._by_clock.get(clock)
            if part is None:
                part = self._by_clock[clock] = _Partition()
        except TypeError:
            part = self._by_clock_strong.setdefault(clock, _Partition())
        return part

    def _key(self, key: str, specs: Sequence[BucketSpec], clock: Clock) -> KeyState:
        part = self._partition(clock)
        state = part.keys.get(key)
        signature = tuple(specs)
        if state is None or part.signatures.get(key) != signature:  # declared anew: afresh
            state = part.keys[key] = KeyState(len(specs))
            part.signatures[key] = signature
        return state

    def _ledger(self, scope: str, clock: Clock) -> LedgerState:
        last = self._last_ledger
        if last is not None and last[0]() is clock and last[1] == scope:
            return last[2]
        ledgers = self._partition(clock).ledgers
        ledger = ledgers.get(scope)
        if ledger is None:
            ledger = ledgers[scope] = LedgerState()
        try:
            held: Callable[[], Any] = weakref.ref(clock)
        except TypeError:
            held = lambda: clock  # noqa: E731 - kept like its partition, in _by_clock_strong
        self._last_ledger = (held, scope, ledger)
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
        with self._lock:
            return self._key(key, specs, clock).admit(
                specs,
                costs,
                clock.now(),
                ticket_id=ticket_id,
                ttl_s=ttl_s,
                max_wait_s=max_wait_s,
            )

    def wait_s(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> float:
        with self._lock:
            return self._key(key, specs, clock).wait_s(ticket, clock.now())

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
    ) -> list[float]:
        with self._lock:
            return self._key(key, specs, clock).feedback(
                specs,
                ticket,
                clock.now(),
                deficits=deficits,
                refund=refund,
                pause_s=pause_s,
                follow_down=follow_down,
                reorder_s=reorder_s,
            )

    def levels(self, key: str, specs: Sequence[BucketSpec], *, clock: Clock) -> list[float]:
        with self._lock:
            state = self._key(key, specs, clock)
            now = clock.now()
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
                lines, amounts, _wall(clock), reservation_id=reservation_id, ttl_s=ttl_s
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
            return ledger.settle(lines, reservation_id, actual, _wall(clock))

    def budget_status(
        self, scope: str, lines: Sequence[BudgetLine], *, clock: Clock
    ) -> list[BudgetStatus]:
        with self._lock:
            ledger = self._ledger(scope, clock)
            return ledger.status(lines, _wall(clock))

    def clear(self) -> None:
        with self._lock:
            self._by_clock.clear()
            self._by_clock_strong.clear()
            self._last_ledger = None

    def close(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"MemoryStore(clocks={len(self._by_clock) + len(self._by_clock_strong)})"


class _Partition:
    __slots__ = ("keys", "ledgers", "signatures")

    def __init__(self) -> None:
        self.keys: dict[str, KeyState] = {}
        self.signatures: dict[str, tuple[BucketSpec, ...]] = {}
        self.ledgers: dict[str, LedgerState] = {}
