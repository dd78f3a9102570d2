"""Single flight: identical calls in flight at the same time make one upstream call.

The first call (the leader) runs; the others get a :class:`~prismq_llmtools.aspect.InFlight`
for the leader's future, which the site's driver waits on (a thread blocks, a task awaits),
then they take the leader's outcome: its answer, or its exception. A leader that ends
without an answer (cancelled, or its answer cannot be cached) abandons the flight and the
waiters try again, one of them becoming the next leader.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from prismq_llmtools.call import Call

__all__ = ["ABANDONED", "Flight", "SingleFlight", "descends_from"]

FlightResult = tuple[Any, ...]
"""``("ok", entry, blob)``, ``("error", exception)`` or :data:`ABANDONED`."""

ABANDONED: FlightResult = ("abandoned",)


class Flight:
    """One upstream call that identical concurrent calls wait for."""

    __slots__ = ("future", "key", "leader_id")

    def __init__(self, key: str, leader_id: str) -> None:
        self.key = key
        self.leader_id = leader_id
        self.future: Future[FlightResult] = Future()


class SingleFlight:
    """The flights of one site, by cache key. Use :attr:`lock` around get-then-start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._flights: dict[str, Flight] = {}

    def get(self, key: str) -> Flight | None:
        """The flight for ``key``, if one is running (call with :attr:`lock` held)."""
        return self._flights.get(key)

    def start(self, key: str, leader: Call) -> Flight:
        """Make ``leader`` the flight for ``key`` (call with :attr:`lock` held)."""
        flight = self._flights[key] = Flight(key, leader.call_id)
        return flight

    def finish(self, flight: Flight, outcome: FlightResult) -> None:
        """End ``flight`` with ``outcome``; waiters wake up. Idempotent."""
        with self.lock:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
        if not flight.future.done():
            flight.future.set_result(outcome)

    def __len__(self) -> int:
        return len(self._flights)


def descends_from(call: Call, ancestor_id: str) -> bool:
    """Whether ``call`` runs inside the call ``ancestor_id`` (waiting on it would deadlock)."""
    parent = call.parent
    while parent is not None:
        if parent.call_id == ancestor_id:
            return True
        parent = parent.parent
    return False
