"""How a server's token charge relates to ours, learned per key from its rate-limit headers.

A server admits a request by its own count: another tokenizer, a character or byte
estimate, a template it adds. Each answer's ``x-ratelimit-remaining-tokens`` states the
server's deficit ``D`` (limit minus remaining) just after it admitted that request. While the
server's bucket is not full, its deficit grows by what it charges and shrinks by its refill,
so between two answers ``i`` and ``j``::

    charged by the server = (D_j - D_i) + rate * (t_j - t_i)

and over the same admissions we counted ``counted_j - counted_i`` tokens in
``seq_j - seq_i`` requests (the key's cumulative counters at admission). A small regression
over recent pairs fits ``server charge = ratio * our count + per_request * requests``:
sums decayed by :data:`DECAY` a pair, ridge-pulled toward ``ratio=1, per_request=0`` so that
requests of one size (the two columns nearly proportional) stay well posed, and each pair's
residual clipped to a few times the running residual scale, so one odd answer cannot swing
the fit. The result is clamped to :data:`RATIO_BOUNDS` and :data:`PER_REQUEST_BOUND`:
nothing a server writes in a header can set an absurd charge.

The running residual scale (per request) is also the limiter's uncertainty about the
server's state: the bucket follows the state each answer reports, plus the learned charges
of the requests still unanswered, each uncertain by about that scale. So once
:data:`MIN_PAIRS` pairs have been seen, the margin kept below the burst shrinks from
``capacity - burst`` to a floor plus :data:`MARGIN_RESIDUALS` residual scales times the
square root of the requests in flight (independent errors), and the key spends the burst
the server grants.

Every function works on one bucket's record, a flat list of floats (the SQLite store keeps
it as JSON, the Redis store's Lua script applies the same arithmetic to the same fields).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "DECAY",
    "FIELDS",
    "MIN_PAIRS",
    "PER_REQUEST_BOUND",
    "RATIO_BOUNDS",
    "charge",
    "fresh",
    "margin",
    "observe",
    "ratio",
    "valid",
]

RATIO_BOUNDS = (0.25, 4.0)
"""The learned ratio of the server's charge to ours stays within these."""

PER_REQUEST_BOUND = 0.05
"""The learned per-request constant stays within this fraction of the capacity, either sign."""

DECAY = 0.95
"""Weight kept by the sums at each new pair (about the last 20 pairs count)."""

MIN_PAIRS = 4
"""Pairs needed before the learned relation narrows the margin."""

SPAN = 4
"""Requests a pair spans at least: the server's admission times are known only to within
the send delay, whose error (times the refill rate) is spread over the span's requests."""

RIDGE = 0.02
"""Pull toward ``ratio=1, per_request=0``, relative to the sums it regularises."""

CLIP = 4.0
"""A pair's residual is clipped to this many residual scales per request."""

MARGIN_FLOOR = 0.005
"""The smallest margin, as a fraction of the capacity (plus one token of rounding)."""

MARGIN_RESIDUALS = 3.0
"""Residual scales of margin, times the square root of (requests in flight + 1)."""

MAX_PENDING = 64
"""Requests in flight counted in the margin, at most."""

# The fields of a record.
A, B, SOO, SON, SNN, SOS, SNS, SCALE, PAIRS, LAST_SEQ, LAST_COUNTED, LAST_T, LAST_D = range(13)
FIELDS = 13


def fresh() -> list[float]:
    """A record that has learned nothing: the server charges what we count."""
    return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]


def valid(record: Sequence[float]) -> bool:
    """Whether ``record`` is a record (a stored one of another shape, or with a non-finite
    field, is replaced by :func:`fresh`)."""
    return len(record) == FIELDS and all(math.isfinite(x) for x in record)


def ratio(record: Sequence[float]) -> tuple[float, float]:
    """The learned ``(ratio, per_request)``."""
    return record[A], record[B]


def charge(record: Sequence[float], cost: float, capacity: float) -> float:
    """What the server will charge for a request we count ``cost``, as learned."""
    if record[PAIRS] <= 0:
        return cost
    charged = record[A] * cost + record[B]
    return min(capacity, max(charged, cost * RATIO_BOUNDS[0]))


def margin(
    record: Sequence[float], capacity: float, burst: float, pending: float, charge: float = 0.0
) -> float:
    """The part of the bucket kept unspent, for an admission of a request charged ``charge``
    while ``pending`` requests are in flight: ``capacity - burst`` until the relation is
    learned, then the floor, one more such request (one that reaches the server out of
    order) and a few residuals (never more than ``capacity - burst``)."""
    configured = capacity - burst
    if record[PAIRS] < MIN_PAIRS:
        return configured
    spread = math.sqrt(1.0 + min(MAX_PENDING, max(0.0, pending)))
    learned = 1.0 + MARGIN_FLOOR * capacity + charge + MARGIN_RESIDUALS * record[SCALE] * spread
    return min(configured, learned)


def observe(
    record: list[float],
    capacity: float,
    *,
    seq: float,
    counted: float,
    now: float,
    deficit: float,
    rate: float,
    refused: bool = False,
) -> None:
    """Learn from one answer: after ``seq`` admissions counting ``counted`` tokens in all,
    the server reported ``deficit`` (its limit minus its remaining) when it admitted the
    request started at ``now``, refilling at ``rate`` per second. Non-finite or negative
    readings are ignored.

    ``refused``: the server refused that request (a 429) and charged nothing for it. Its
    reading starts the next pair (counts after it are compared with the server's charges
    after it), but makes no pair with the one before, which would count it as charged.
    """
    if not (
        math.isfinite(seq)
        and math.isfinite(counted)
        and math.isfinite(now)
        and math.isfinite(deficit)
        and math.isfinite(rate)
        and rate > 0
        and deficit >= 0
    ):
        return
    last_seq = record[LAST_SEQ]
    if seq <= last_seq:
        return  # an answer overtaken by a later one: its pair would run backwards
    if last_seq >= 0 and seq - last_seq < SPAN and not refused:
        return  # too close to the last one to tell its charge from the timing noise
    elapsed = now - record[LAST_T]
    # Only while the server's bucket stayed below full do its deficits add up.
    if not refused and last_seq >= 0 and elapsed >= 0 and record[LAST_D] > rate * elapsed:
        _pair(
            record,
            capacity,
            requests=seq - last_seq,
            ours=counted - record[LAST_COUNTED],
            theirs=deficit - record[LAST_D] + rate * elapsed,
        )
    record[LAST_SEQ], record[LAST_COUNTED] = seq, counted
    record[LAST_T], record[LAST_D] = now, deficit


def _pair(
    record: list[float], capacity: float, *, requests: float, ours: float, theirs: float
) -> None:
    a, b = record[A], record[B]
    predicted = a * ours + b * requests
    residual = theirs - predicted
    scale = record[SCALE]
    if record[PAIRS] > 0:
        bound = max(CLIP * scale * requests, 1.0 + MARGIN_FLOOR * capacity)
        residual = min(bound, max(-bound, residual))
        theirs = predicted + residual
    per_request = abs(residual) / requests
    updated = list(record)
    updated[SCALE] = per_request if record[PAIRS] <= 0 else 0.9 * scale + 0.1 * per_request
    for field, value in (
        (SOO, ours * ours),
        (SON, ours * requests),
        (SNN, requests * requests),
        (SOS, ours * theirs),
        (SNS, requests * theirs),
    ):
        updated[field] = DECAY * record[field] + value
    if not all(math.isfinite(x) for x in updated):
        return  # readings too large to square: no pair
    updated[PAIRS] = min(record[PAIRS] + 1, 1e9)
    updated[A], updated[B] = _solve(updated, capacity)
    record[:] = updated


def _solve(record: Sequence[float], capacity: float) -> tuple[float, float]:
    soo, son, snn = record[SOO], record[SON], record[SNN]
    ridge_a, ridge_b = RIDGE * soo + 1e-9, RIDGE * snn + 1e-9
    m00, m11 = soo + ridge_a, snn + ridge_b
    r0, r1 = record[SOS] + ridge_a, record[SNS]
    det = m00 * m11 - son * son
    if det > 1e-12 * m00 * m11:
        a = (r0 * m11 - son * r1) / det
        b = (m00 * r1 - son * r0) / det
    else:
        a, b = r0 / m00, 0.0
    low, high = RATIO_BOUNDS
    bound = PER_REQUEST_BOUND * capacity
    a = min(high, max(low, a)) if math.isfinite(a) else 1.0
    b = min(bound, max(-bound, b)) if math.isfinite(b) else 0.0
    return a, b
