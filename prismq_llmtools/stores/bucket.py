"""Token buckets as pure math: the buckets of one key, first come first served.

Each bucket is kept the GCRA way ("virtual scheduling"): not a level refilled by a timer but
``tat``, the time at which the bucket will be full again. Admission computes the exact time
a request may start, reserves its cost at that time, and later requests queue behind it
(starts never decrease), so a large request cannot be starved by small ones and nobody
polls: a caller sleeps exactly until its start.

The level of a bucket is ``capacity - rate * max(0, tat - max(now, last_start))``: what is
left once every request already admitted has started. Admission, refunds, server
corrections and pauses keep it within ``[0, capacity]``.

Each bucket also learns how the server's charge relates to our count, from the server's
rate-limit headers (:mod:`prismq_llmtools.stores.accounting`): admission then reserves what
the server will charge, and the margin below the burst narrows once that is known. Tickets
carry costs as reserved (the server's units); ``counted`` keeps our own count.

Nothing unbounded is ever stored: the stores refuse costs, refunds, corrections and pauses
that are not finite (a pause is at most :data:`MAX_PAUSE_S`; see :func:`check_admission`,
:func:`check_feedback`), and a state holding a time no sound state can hold (written by an
older version from an unbounded Retry-After) starts afresh (:meth:`KeyState.recover`).

Times are seconds on whatever clock the state store uses; only differences matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.stores import accounting

__all__ = [
    "HORIZON_S",
    "MAX_PAUSE_S",
    "NEVER",
    "REORDER_WINDOW_S",
    "SEND_WINDOW_S",
    "BucketSpec",
    "KeyState",
    "Refusal",
    "Ticket",
    "check_admission",
    "check_feedback",
]

REORDER_WINDOW_S = 0.5
"""Requests started this much before another may still reach the server after it."""

SEND_WINDOW_S = 1.0
"""The server admits a request at most this long after its start, or before its answer."""

NEVER = -1e300
"""A time before any clock's: a bucket full since then is full now, on any clock."""

MAX_PAUSE_S = 86_400.0
"""The longest pause a key takes: a day, the longest Retry-After that can be meant (the
limiter ignores longer ones: ``RETRY_AFTER_MAX_S``, which a test keeps equal)."""

HORIZON_S = 366 * 86_400.0
"""How far ahead of now a key's times may lie: a bucket refills within a day, so only a
queue of hundreds of day-sized requests could reach further. A time beyond it (or a pause
ending more than ``2 * MAX_PAUSE_S`` ahead: one day, and one for other processes' clocks)
is damage, and the key starts afresh."""


def check_admission(key: str, costs: Sequence[float], ttl_s: float) -> None:
    """Refuse (``ValueError``) an admission no key may store: a cost that is not a finite
    number >= 0, or a ticket lifetime that is not a finite number > 0."""
    for cost in costs:
        if not 0 <= cost < math.inf:
            raise ValueError(
                f"rate-limit key {key!r}: a cost must be a finite number >= 0, got {cost!r}"
            )
    if not 0 < ttl_s < math.inf:
        raise ValueError(f"rate-limit key {key!r}: ttl_s must be finite and > 0, got {ttl_s!r}")


def check_feedback(
    key: str, deficits: Sequence[float | None], refund: Sequence[float], pause_s: float
) -> None:
    """Refuse (``ValueError``) feedback no key may store: a deficit that is not finite, a
    refund that is not a finite number >= 0, or a pause outside ``[0, MAX_PAUSE_S]``."""
    for deficit in deficits:
        if deficit is not None and not math.isfinite(deficit):
            raise ValueError(f"rate-limit key {key!r}: a deficit must be finite, got {deficit!r}")
    for amount in refund:
        if not 0 <= amount < math.inf:
            raise ValueError(
                f"rate-limit key {key!r}: a refund must be a finite number >= 0, got {amount!r}"
            )
    if not 0 <= pause_s <= MAX_PAUSE_S:
        raise ValueError(
            f"rate-limit key {key!r}: a pause must be within [0, {MAX_PAUSE_S:g}] s,"
            f" got {pause_s!r}"
        )


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One bucket: it holds ``capacity``, refills at ``rate_per_s``, and admits a request
    only while ``burst`` minus its cost stays available (``capacity - burst`` is a margin
    kept unspent, so a server counting slightly differently still has room)."""

    name: str
    capacity: float
    burst: float
    rate_per_s: float

    def __post_init__(self) -> None:
        if not self.capacity > 0 or not self.rate_per_s > 0:
            raise ValueError(f"bucket {self.name}: capacity and rate must be > 0")
        if not 0 < self.burst <= self.capacity:
            raise ValueError(f"bucket {self.name}: burst must be in (0, capacity]")


def signature(specs: Sequence[BucketSpec]) -> str:
    """Names and limits of a key's buckets: a key declared differently starts afresh."""
    return ",".join(f"{s.name}/{s.capacity!r}/{s.burst!r}/{s.rate_per_s!r}" for s in specs)


@dataclass(slots=True)
class Ticket:
    """An admitted request: its id, start, costs as reserved, and the key's counters when
    admitted.

    The state of its key keeps it while the request is in flight. Nothing changes a ticket
    once made (it is not frozen only because a frozen dataclass is slower to build).

    Fields:
        bucket: what set the start: a bucket's name, ``queue`` (FIFO) or ``pause``.
        shift_s: the key's cumulative pause shift at admission; later pauses move ``start``.
        charged: each bucket's cumulative charges just after this admission.
        counted: each bucket's cumulative count (ours) just after this admission; empty
            when unknown.
        wait_s: how long the holder had to wait when admitted.
        seq: the key's admission number of this ticket.
        expires_at: when its store stops counting it in flight, answered or not.
    """

    id: str
    start: float
    bucket: str
    costs: tuple[float, ...]
    shift_s: float
    charged: tuple[float, ...]
    wait_s: float = 0.0
    seq: int = 0
    expires_at: float = math.inf
    counted: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Admission would have had to wait ``wait_s``, longer than allowed; nothing changed."""

    wait_s: float
    bucket: str


class KeyState:
    """The state of one key's buckets, and the operations on it (all O(buckets))."""

    __slots__ = (
        "charged",
        "counted",
        "inflight",
        "last_start",
        "learned",
        "next_expiry",
        "pause_until",
        "refunded",
        "seq",
        "shift_s",
        "tats",
    )

    def __init__(self, buckets: int) -> None:
        self.tats = [NEVER] * buckets
        self.charged = [0.0] * buckets
        self.counted = [0.0] * buckets
        """Per bucket, the cumulative count of every admission, ours (before learning)."""
        self.learned = [accounting.fresh() for _ in range(buckets)]
        """Per bucket, what its server's answers taught (see :mod:`.accounting`)."""
        self.last_start = NEVER
        self.pause_until = NEVER
        self.shift_s = 0.0
        self.seq = 0
        self.inflight: dict[str, Ticket] = {}
        """Admitted, unanswered requests, by id: their tickets."""
        self.refunded: dict[str, tuple[float, list[float]]] = {}
        """Requests given something back, by id: their ticket's expiry, and per bucket the
        total refunded so far (never more than the request's cost), kept until that expiry."""
        self.next_expiry = math.inf
        """No ticket in flight and no refund kept expires before this: their earliest expiry
        when :meth:`expire` last looked, or the expiry of one kept since, if earlier. (A
        ticket answered leaves it as it is: then it is earlier than any left, still a bound.)"""

    # -- queries ---------------------------------------------------------------------

    def level(self, specs: Sequence[BucketSpec], index: int, now: float) -> float:
        """What bucket ``index`` holds once every admitted request has started."""
        spec = specs[index]
        behind = self.tats[index] - max(now, self.last_start)
        return spec.capacity - spec.rate_per_s * max(0.0, behind)

    def wait_s(self, ticket: Ticket, now: float) -> float:
        """How long the holder of ``ticket`` must still wait (pauses included)."""
        start = ticket.start + (self.shift_s - ticket.shift_s)
        return max(0.0, start - now, self.pause_until - now if start > now else 0.0)

    def is_sound(self, now: float) -> bool:
        """Whether every time lies within reach of ``now`` (see :data:`HORIZON_S`) and every
        number is finite, as every operation leaves them."""
        ahead = now + HORIZON_S
        tats = self.tats
        return (
            NEVER <= self.pause_until <= now + 2 * MAX_PAUSE_S
            and NEVER <= self.last_start <= ahead
            and NEVER <= min(tats) <= max(tats) <= ahead
            # (a sum is NaN or infinite when any term is; min and max may miss a NaN)
            and math.isfinite(sum(tats) + sum(self.charged) + sum(self.counted) + self.shift_s)
        )

    # -- operations ------------------------------------------------------------------

    def recover(self, now: float) -> bool:
        """Start afresh, as a new key, if the state is not sound (an older version stored an
        unbounded Retry-After: kept, it would stall or break the key for good).

        Returns:
            Whether it started afresh.
        """
        if self.is_sound(now):
            return False
        fresh = KeyState(len(self.tats))
        for name in KeyState.__slots__:
            setattr(self, name, getattr(fresh, name))
        return True

    def admit(
        self,
        specs: Sequence[BucketSpec],
        costs: Sequence[float],
        now: float,
        *,
        ticket_id: str,
        ttl_s: float,
        max_wait_s: float = math.inf,
    ) -> Ticket | Refusal:
        """Reserve ``costs`` (our count) at the earliest start every bucket allows, queueing
        FIFO; each bucket reserves what its server is learned to charge for them.

        Costs must not exceed capacities (callers check; see ``RequestTooLarge``).
        """
        counted, learned_costs = costs, None
        start, bucket = now, "queue"
        if self.last_start > start:
            start = self.last_start
        if self.pause_until > start:
            start, bucket = self.pause_until, "pause"
        tats = self.tats
        learned = self.learned
        for i, spec in enumerate(specs):
            burst = spec.burst
            if learned[i][accounting.PAIRS] > 0:  # the server's answers taught something
                if learned_costs is None:
                    costs = learned_costs = list(counted)
                learned_costs[i], burst = self._learned(spec, i, counted[i])
            spare = burst - costs[i]
            ready = tats[i] - (spare if spare > 0.0 else 0.0) / spec.rate_per_s
            if ready > start:
                start, bucket = ready, spec.name
        if start - now > max_wait_s:
            return Refusal(wait_s=start - now, bucket=bucket)
        charged, total = self.charged, self.counted
        for i, spec in enumerate(specs):
            tat = tats[i]
            tats[i] = (start if start > tat else tat) + costs[i] / spec.rate_per_s
            charged[i] += costs[i]
            total[i] += counted[i]
        self.last_start = start
        self.seq += 1
        if now > self.next_expiry:  # (expire's own test, saving a call on every admission)
            self.expire(now)
        # Positional, in the order of the fields: a class called with keywords is slower.
        ticket = Ticket(
            ticket_id,  # id
            start,  # start
            bucket,  # bucket
            tuple(costs),  # costs
            self.shift_s,  # shift_s
            tuple(charged),  # charged
            start - now,  # wait_s
            self.seq,  # seq
            start + ttl_s,  # expires_at
            tuple(total),  # counted
        )
        self.inflight[ticket_id] = ticket
        if ticket.expires_at < self.next_expiry:
            self.next_expiry = ticket.expires_at
        return ticket

    def _learned(self, spec: BucketSpec, i: int, counted: float) -> tuple[float, float]:
        """For bucket ``i``: what the server is learned to charge for ``counted``, and what
        may be spent at once (its burst, or more once the margin follows the uncertainty of
        the server's state)."""
        record = self.learned[i]
        charge = accounting.charge(record, counted, spec.capacity)
        margin = accounting.margin(record, spec.capacity, spec.burst, len(self.inflight), charge)
        return charge, spec.capacity - margin

    def learn(
        self,
        specs: Sequence[BucketSpec],
        ticket: Ticket,
        now: float,
        limits: Sequence[float | None],
        deficits: Sequence[float | None],
        *,
        refused: bool = False,
    ) -> None:
        """Learn how the server charges from its answer to ``ticket``'s request.

        Args:
            limits: per bucket, the server's limit (``None``: nothing to learn).
            deficits: per bucket, as for :meth:`feedback` (our capacity minus the server's
                remaining).
            refused: the server refused the request (a 429): it charged nothing for it.
        """
        if len(ticket.counted) != len(specs):
            return
        for i, spec in enumerate(specs):
            limit = limits[i] if i < len(limits) else None
            deficit = deficits[i] if i < len(deficits) else None
            if limit is None or deficit is None or not limit > 0:
                continue
            period = spec.capacity / spec.rate_per_s
            accounting.observe(
                self.learned[i],
                spec.capacity,
                seq=float(ticket.seq),
                counted=ticket.counted[i],
                now=min(now, ticket.start + (self.shift_s - ticket.shift_s)),
                deficit=deficit + (limit - spec.capacity),
                rate=limit / period,
                refused=refused,
            )

    def feedback(
        self,
        specs: Sequence[BucketSpec],
        ticket: Ticket,
        now: float,
        *,
        deficits: Sequence[float | None] = (),
        refund: Sequence[float] = (),
        pause_s: float = 0.0,
        follow_down: bool = True,
        reorder_s: float = REORDER_WINDOW_S,
        server_limits: Sequence[float | None] = (),
        refused: bool = False,
    ) -> list[float]:
        """What happened to ``ticket``'s request, applied in one step.

        Args:
            deficits: per bucket, what the server had spent and not yet refilled when it
                admitted this request (``None``: it did not say). The bucket then follows
                the server from this request's start, counting on top every request
                admitted after it, and those admitted up to ``reorder_s`` before it and
                still unanswered (they may have reached the server after it).
            follow_down: also follow the server when it reports more room than we count
                (off when running below the limit on purpose, with headroom).
            refund: per bucket, an amount to give back (the request never reached the
                server, or used less); never more than the request's own effect. The
                refunds of one ticket, over every call, add up to at most its cost; once the
                ticket expired nothing more is given back (its refunds are forgotten then).
            pause_s: stop every start for this long (a 429 with Retry-After).
            server_limits, refused: what the server's answer teaches about its accounting
                (see :meth:`learn`); nothing when empty.

        Returns:
            Per bucket, how much the level dropped (negative: it rose).
        """
        if not deficits and not refund and pause_s <= 0:
            self.release(ticket, now)
            return [0.0] * len(specs)
        before = [self.level(specs, i, now) for i in range(len(specs))]
        self.inflight.pop(ticket.id, None)
        self.expire(now)
        if server_limits:
            self.learn(specs, ticket, now, server_limits, deficits, refused=refused)
        for i, deficit in enumerate(deficits):
            if deficit is not None:
                self._follow(specs[i], i, ticket, deficit, now, follow_down, reorder_s)
        # Past its expiry a ticket's refunds are forgotten (see expire): none is given then,
        # or a ticket refunded before could be refunded again.
        if any(amount > 0 for amount in refund) and ticket.expires_at >= now:
            self._refund_once(specs, ticket, refund)
        if pause_s > 0:
            self._pause(now + pause_s, now)
        return [b - self.level(specs, i, now) for i, b in enumerate(before)]

    def release(self, ticket: Ticket, now: float) -> None:
        """``ticket``'s request was answered and nothing needs correcting: forget it."""
        self.inflight.pop(ticket.id, None)
        if now > self.next_expiry:
            self.expire(now)

    def _follow(
        self,
        spec: BucketSpec,
        i: int,
        ticket: Ticket,
        deficit: float,
        now: float,
        down: bool,
        reorder_s: float,
    ) -> None:
        # The server stated its deficit when it admitted this request: after its start,
        # before its answer, and (a slow answer does not make the headers newer) within
        # SEND_WINDOW_S of its start; assume the latest. Since then it has seen, at most,
        # what we admitted after it, plus what we sent just before it that arrived late.
        started = min(now, ticket.start + (self.shift_s - ticket.shift_s) + SEND_WINDOW_S)
        later = self._later(i, ticket)
        late = sum(
            other.costs[i]
            for other in self.inflight.values()
            if other.seq < ticket.seq and other.start >= ticket.start - reorder_s
        )
        deficit = min(max(deficit, 0.0), spec.capacity)
        estimate = started + (deficit + later + late) / spec.rate_per_s
        empty = max(now, self.last_start) + spec.capacity / spec.rate_per_s
        estimate = min(estimate, empty)  # a level never drops below zero
        self.tats[i] = estimate if down else max(self.tats[i], estimate)

    def _later(self, i: int, ticket: Ticket) -> float:
        """What bucket ``i`` was charged for the requests admitted after ``ticket``: as
        reserved, or, once the server's accounting is learned, as it is learned now (those
        reserved while the relation was still being learned may have been reserved short)."""
        record = self.learned[i]
        if record[accounting.PAIRS] <= 0 or len(ticket.counted) <= i:
            return self.charged[i] - ticket.charged[i]
        counted = self.counted[i] - ticket.counted[i]
        requests = self.seq - ticket.seq
        reserved = self.charged[i] - ticket.charged[i]
        ratio, per_request = accounting.ratio(record)
        return max(reserved, ratio * counted + per_request * requests)

    def _refund_once(
        self, specs: Sequence[BucketSpec], ticket: Ticket, refund: Sequence[float]
    ) -> None:
        # One ticket may be refunded more than once (an error, then the unused part of a
        # completion; or a caller repeating itself): what it got back so far is kept, so
        # that in total no bucket ever gets back more than the ticket was charged.
        kept = self.refunded.get(ticket.id)
        given = list(kept[1]) if kept is not None else [0.0] * len(specs)
        for i, wanted in enumerate(refund):
            amount = min(wanted, ticket.costs[i] - given[i])
            if amount > 0:
                self._refund(specs[i], i, ticket, amount)
                given[i] += amount
        self.refunded[ticket.id] = (ticket.expires_at, given)
        self.next_expiry = min(self.next_expiry, ticket.expires_at)

    def _refund(self, spec: BucketSpec, i: int, ticket: Ticket, amount: float) -> None:
        # Without this request the bucket could not be emptier than the requests admitted
        # after it, all started by ``last_start`` (starts are FIFO): never credit beyond that.
        floor = self.last_start + (self.charged[i] - ticket.charged[i]) / spec.rate_per_s
        self.tats[i] = min(self.tats[i], max(self.tats[i] - amount / spec.rate_per_s, floor))

    def _pause(self, until: float, now: float) -> None:
        paused_to = max(now, self.pause_until)
        if until <= paused_to:
            return
        delta = until - paused_to
        self.shift_s += delta
        self.pause_until = until
        if self.last_start > now:  # requests waiting: they all move, keeping their spacing
            self.last_start += delta
            self.tats = [tat + delta if tat > now else tat for tat in self.tats]

    def expire(self, now: float) -> None:
        """Forget the admitted requests whose tickets expired (unanswered too long), and
        the refunds of expired tickets (none is refunded any more).

        Looks only once ``now`` passes :attr:`next_expiry`, then finds the next one: the
        requests in flight are looked at about once per ticket lifetime, not per operation.
        """
        if now <= self.next_expiry:
            return
        for key in [k for k, ticket in self.inflight.items() if ticket.expires_at < now]:
            del self.inflight[key]
        for key in [k for k, (expires_at, _) in self.refunded.items() if expires_at < now]:
            del self.refunded[key]
        self._find_next_expiry()

    def _find_next_expiry(self) -> None:
        self.next_expiry = min(
            min((ticket.expires_at for ticket in self.inflight.values()), default=math.inf),
            min((expires_at for expires_at, _ in self.refunded.values()), default=math.inf),
        )

    # -- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for the SQLite store)."""
        return {
            "tats": self.tats,
            "charged": self.charged,
            "counted": self.counted,
            "learned": self.learned,
            "last_start": self.last_start,
            "pause_until": self.pause_until,
            "shift_s": self.shift_s,
            "seq": self.seq,
            "inflight": {
                k: [t.expires_at, t.start, float(t.seq), *t.costs] for k, t in self.inflight.items()
            },
            "refunded": {
                k: [expires_at, *given] for k, (expires_at, given) in self.refunded.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], buckets: int) -> KeyState:
        """The inverse of :meth:`to_dict`; a state of another shape starts afresh."""
        state = cls(buckets)
        if len(data.get("tats", ())) != buckets:
            return state
        state.tats = [float(x) for x in data["tats"]]
        state.charged = [float(x) for x in data["charged"]]
        # Written by a version that learned nothing: start learning now.
        counted = [float(x) for x in data.get("counted", ())]
        if len(counted) == buckets:
            state.counted = counted
        learned = [[float(x) for x in record] for record in data.get("learned", ())]
        if len(learned) == buckets:
            state.learned = [r if accounting.valid(r) else accounting.fresh() for r in learned]
        state.last_start = float(data["last_start"])
        state.pause_until = float(data["pause_until"])
        state.shift_s = float(data["shift_s"])
        state.seq = int(data.get("seq", 0))
        state.inflight = {str(k): _record(str(k), v) for k, v in data["inflight"].items()}
        # Written by a version that kept no refunds: nothing was refunded yet.
        for k, (expires_at, *given) in data.get("refunded", {}).items():
            state.refunded[str(k)] = (float(expires_at), [float(x) for x in given])
        state._find_next_expiry()
        return state


def _record(ticket_id: str, record: list[Any]) -> Ticket:
    """A ticket in flight as :meth:`KeyState.to_dict` keeps it: only what expiry and the
    corrections of later answers read (its expiry, start, admission number and costs)."""
    expires_at, start, seq, *costs = (float(x) for x in record)
    return Ticket(
        id=ticket_id,
        start=start,
        bucket="",
        costs=tuple(costs),
        shift_s=0.0,
        charged=(),
        seq=int(seq),
        expires_at=expires_at,
    )
