"""A fast handle on one key of the in-process store, for sites whose every request costs
the same (no token bucket) and waits as long as needed (no timeout).

A :class:`Lane` holds what :meth:`MemoryStore.admit` and :meth:`MemoryStore.feedback` look up
on every request (the lock, the key's state on the clock's partition) and what
:meth:`KeyState.admit` computes from the costs (each bucket's spare and step in seconds),
so admitting costs a fraction of the general way. It gives the same tickets and leaves the
same state, bit for bit; ``tests/limits/test_lane.py`` holds it to that.

A lane serves one state of one key on one clock. Once the store drops that state (cleared,
or the key declared anew) the state is ``retired``, :meth:`Lane.admit` says so, and the
caller goes the general way, which finds the fresh state.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prismq_llmtools.clock import Clock
from prismq_llmtools.ratelimit.feedback import Pending
from prismq_llmtools.stores.bucket import BucketSpec, KeyState

if TYPE_CHECKING:
    from prismq_llmtools.call import RateHeaders

__all__ = ["Lane", "local_ticket_id"]

# Ticket ids unique in this process, all the in-process store needs: "0x1", "0x2"...
# (hex() is the cheapest int-to-str there is; no caller's own ids look like these).
_ticket_ids = map(hex, itertools.count(1))


def local_ticket_id() -> str:
    """A ticket id unique in this process (the in-process store's, and its lanes')."""
    return next(_ticket_ids)


class Lane:
    """Admits requests of fixed ``costs`` on one key of a :class:`MemoryStore`, and releases
    them once answered with nothing to correct.

    Its tickets are the rate limiter's admission records (:class:`Pending`, a
    :class:`~prismq_llmtools.stores.bucket.Ticket` with the limiter's fields): one object per
    admission, not two.
    """

    __slots__ = (
        "_costs",
        "_lock",
        "_now",
        "_one",
        "_plan",
        "_ttl_s",
        "answer",
        "clock",
        "key",
        "state",
    )

    def __init__(
        self,
        lock: threading.Lock,
        state: KeyState,
        *,
        key: str,
        specs: Sequence[BucketSpec],
        costs: Sequence[float],
        clock: Clock,
        ttl_s: float,
    ) -> None:
        if len(costs) != len(specs) or any(
            c > s.capacity for s, c in zip(specs, costs, strict=False)
        ):
            raise ValueError("a lane needs one cost per bucket, each within its capacity")
        self._lock = lock
        self.state = state
        self.key = key
        self.clock = clock
        self._now: Callable[[], float] = clock.now
        self._ttl_s = ttl_s
        self._costs = tuple(costs)
        # What KeyState.admit computes per request, by the same operations: the same floats.
        self._plan = tuple(
            (
                i,
                spec.name,
                (spec.burst - cost if spec.burst - cost > 0.0 else 0.0) / spec.rate_per_s,
                cost / spec.rate_per_s,
                cost,
            )
            for i, (spec, cost) in enumerate(zip(specs, costs, strict=True))
        )
        self._one = len(self._plan) == 1  # most limits: rpm alone
        self.answer: Callable[[str], None] = state.answered.append
        """Releases an answered ticket by id, as :meth:`KeyState.release` (see
        ``KeyState.answered``): no lock, no Python-level call."""

    def admit(self, attempt: int, headers: RateHeaders | None) -> Pending | None:
        """:meth:`KeyState.admit` of the fixed costs, now, for ``attempt`` of a call whose
        latest rate-limit headers are ``headers``; ``None``: the state is retired."""
        lock = self._lock
        lock.acquire()  # not ``with``: cheaper, and the finally clause releases it as well
        try:
            state = self.state
            if state.retired:
                return None
            now = self._now()
            start, bucket = now, "queue"
            if state.last_start > start:
                start = state.last_start
            if state.pause_until > start:
                start, bucket = state.pause_until, "pause"
            tats = state.tats
            charged = state.charged
            if self._one:
                _, name, spare_s, step_s, cost = self._plan[0]
                tat = tats[0]
                if tat - spare_s > start:
                    start, bucket = tat - spare_s, name
                tats[0] = (start if start > tat else tat) + step_s
                charged[0] += cost
            else:
                plan = self._plan
                for i, name, spare_s, _, _ in plan:
                    ready = tats[i] - spare_s
                    if ready > start:
                        start, bucket = ready, name
                for i, _, _, step_s, cost in plan:
                    tat = tats[i]
                    tats[i] = (start if start > tat else tat) + step_s
                    charged[i] += cost
            state.last_start = start
            seq = state.seq = state.seq + 1
            inflight = state.inflight
            answered = state.answered
            while answered:  # KeyState.forget_answered, inline
                inflight.pop(answered.pop(), None)
            if inflight:
                state.expire(now)
            ticket_id = next(_ticket_ids)
            ticket = Pending(
                ticket_id,
                start,
                bucket,
                self._costs,
                state.shift_s,
                (charged[0],) if self._one else tuple(charged),
                start - now,
                seq,
                start + self._ttl_s,
                self.key,
                attempt,
                None,
                headers,
                self,
            )
            inflight[ticket_id] = ticket
            return ticket
        finally:
            lock.release()
