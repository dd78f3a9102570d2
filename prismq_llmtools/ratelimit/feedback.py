"""What the server's answer to one admitted request means for the key's buckets.

- ``x-ratelimit-remaining-*`` (or ``-reset-*``) headers: the bucket follows the server, which
  also sees other clients of the account and counts tokens its own way; and the store learns
  from them how the server's charge relates to our count (``server_limits``, see
  :mod:`prismq_llmtools.stores.accounting`), also from a 429's headers.
- A 429 ``rate_limit_exceeded``: the key pauses for Retry-After (every caller, at once), and
  the request, which the server refused, is not charged. The pause is bounded: a Retry-After
  above ``retry_after_cap_s`` pauses nothing (the call fails, as ``@retried`` gives up on
  it), one that is not a usable number is ignored, and a 429 whose headers show room for the
  request (a transient refusal, not the limit) pauses only its own caller.
- No answer at all (a connection error, or the function failed before any request): the
  request is refunded. A timeout may have been served, so it stays charged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prismq_llmtools.call import Call, RateHeaders
from prismq_llmtools.stores.bucket import BucketSpec, Ticket

if TYPE_CHECKING:
    from prismq_llmtools.openai.headers import RetryAfter
    from prismq_llmtools.ratelimit.policy import RateLimit

__all__ = ["Admission", "Plan", "feedback_for"]

_DEFAULT_PAUSE_S = 1.0  # a 429 without Retry-After


@dataclass(slots=True)
class Admission:
    """The rate limiter's admission of one attempt: the store's ticket, and what the limiter
    keeps about it while the attempt runs.

    ``headers`` is ``call.rate_headers`` before the attempt ran (new headers are a new
    response); ``deadline`` is when waiting for it must end (``timeout_s``), if ever;
    ``done`` says the store has heard how the attempt ended; ``unread`` is
    ``call.unread_requests`` before the attempt ran (more after it: it may have been billed).
    """

    ticket: Ticket
    key: str
    attempt: int
    deadline: float | None
    headers: RateHeaders | None
    unread: int = 0
    done: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """What to apply to the buckets (see ``KeyState.feedback``)."""

    deficits: tuple[float | None, ...] = ()
    refund: tuple[float, ...] = ()
    pause_s: float = 0.0
    follow_down: bool = False
    remaining: tuple[int | None, ...] = ()
    server_limits: tuple[float | None, ...] = ()
    """Per bucket, the server's limit, where its answer teaches how it charges."""
    refused: bool = False
    """The server refused the request (429): it charged nothing for it."""
    unheeded: RetryAfter | None = None
    """A Retry-After that paused nothing: unusable, or above the cap (its ``problem``)."""


def feedback_for(
    call: Call,
    admission: Admission,
    error: BaseException | None,
    specs: Sequence[BucketSpec],
    limit: RateLimit,
    *,
    follow: bool,
) -> Plan:
    """The feedback for ``admission``'s attempt, which ended with ``error`` (or succeeded)."""
    headers = call.rate_headers if call.rate_headers is not admission.headers else None
    status = getattr(error, "status_code", None) if error is not None else None
    costs = admission.ticket.costs
    if error is not None and headers is None and not isinstance(status, int):
        if call.unread_requests > admission.unread:  # this attempt may have been served
            return Plan()
        return Plan(refund=costs)  # never reached the server
    refused = status == 429
    quota = refused and getattr(error, "code", None) == "insufficient_quota"
    pause_s, unheeded = 0.0, None
    if refused and not quota and follow:
        pause_s, unheeded = _pause(error, headers, admission.ticket, specs, limit)
    if headers is None or not follow:
        return Plan(refund=costs if refused else (), pause_s=pause_s, unheeded=unheeded)
    remaining = tuple(_remaining(spec, headers, limit) for spec in specs)
    deficits = tuple(
        None if left is None else spec.capacity - left
        for spec, left in zip(specs, remaining, strict=True)
    )
    return Plan(
        deficits=deficits,
        refund=costs if quota else (),
        pause_s=pause_s,
        follow_down=_may_lower(specs, headers, limit),
        remaining=tuple(None if left is None else int(left) for left in remaining),
        server_limits=_server_limits(specs, headers, limit, remaining),
        refused=refused,
        unheeded=unheeded,
    )


def _fields(spec: BucketSpec, headers: RateHeaders) -> tuple[Any, Any, Any] | None:
    if spec.name == "requests":
        return headers.limit_requests, headers.remaining_requests, headers.reset_requests_s
    if spec.name == "tokens":
        return headers.limit_tokens, headers.remaining_tokens, headers.reset_tokens_s
    return None  # OpenAI reports no daily buckets


def _remaining(spec: BucketSpec, headers: RateHeaders, limit: RateLimit) -> float | None:
    fields = _fields(spec, headers)
    if fields is None:
        return None
    server_limit, remaining, reset_s = fields
    if remaining is not None:
        return float(remaining)
    if reset_s is None:
        return None
    configured = limit.rpm if spec.name == "requests" else limit.tpm
    total = float(server_limit or configured or 0)
    return max(0.0, total - float(reset_s) * total / 60.0)


def _server_limits(
    specs: Sequence[BucketSpec],
    headers: RateHeaders,
    limit: RateLimit,
    remaining: Sequence[float | None],
) -> tuple[float | None, ...]:
    """Per bucket, the server's limit where the answer states its remaining: the header's
    limit, else the configured one (before headroom). A limit that is not a finite positive
    number teaches nothing."""
    limits: list[float | None] = []
    for spec, left in zip(specs, remaining, strict=True):
        fields = _fields(spec, headers)
        if fields is None or left is None or not math.isfinite(left):
            limits.append(None)
            continue
        configured = limit.rpm if spec.name == "requests" else limit.tpm
        stated = fields[0] if fields[0] is not None else configured
        value = float(stated) if isinstance(stated, int | float) else math.nan
        limits.append(value if math.isfinite(value) and value > 0 else None)
    return tuple(limits)


def _may_lower(specs: Sequence[BucketSpec], headers: RateHeaders, limit: RateLimit) -> bool:
    # Following the server down (it has more room than we count) is right only when our
    # buckets ARE the server's: no headroom, and the limits the headers state.
    if limit.headroom != 1:
        return False
    for spec in specs:
        fields = _fields(spec, headers)
        configured = limit.rpm if spec.name == "requests" else limit.tpm
        if fields is not None and fields[0] is not None and fields[0] != configured:
            return False
    return True


def _pause(
    error: BaseException | None,
    headers: RateHeaders | None,
    ticket: Ticket,
    specs: Sequence[BucketSpec],
    limit: RateLimit,
) -> tuple[float, RetryAfter | None]:
    """How long a 429 pauses the key, and the Retry-After it did not follow, if any.

    Never longer than ``retry_after_cap_s``: a longer Retry-After pauses nothing (the call
    fails with the server's error, and ``@retried``, with the same cap, gives up at once).
    An unusable one (not a number, infinite, negative, beyond a day) is ignored: the pause
    is the one of a 429 without Retry-After.
    """
    asked = _retry_after(error)
    if asked is not None and asked.seconds is not None and asked.seconds > limit.retry_after_cap_s:
        return 0.0, replace(asked, problem="above_cap")
    unusable = asked if asked is not None and asked.seconds is None else None
    if headers is not None and _room_left(headers, ticket, specs):
        return 0.0, unusable  # transient: only this caller waits (its own retry)
    if asked is None or asked.seconds is None:
        return min(_DEFAULT_PAUSE_S, limit.retry_after_cap_s), unusable
    return asked.seconds, None


def _room_left(headers: RateHeaders, ticket: Ticket, specs: Sequence[BucketSpec]) -> bool:
    """Whether the server's headers on its 429 prove room for this very request: then the
    refusal was not the limit (a transient one), and the key has no reason to pause.

    Every server bucket the key limits must be reported with room for the request's charge
    there, and every one reported must have it (a token count is unknown unless the key
    counts tokens: no proof).
    """
    charges = {spec.name: cost for spec, cost in zip(specs, ticket.costs, strict=True)}
    reported = {"requests": headers.remaining_requests, "tokens": headers.remaining_tokens}
    for bucket, remaining in reported.items():
        charge = charges.get(bucket, 1.0 if bucket == "requests" else None)
        if remaining is None:
            if bucket in charges:
                return False
        elif charge is None or remaining < max(charge, 1.0):
            return False
    return any(remaining is not None for remaining in reported.values())


def _retry_after(error: BaseException | None) -> RetryAfter | None:
    from prismq_llmtools.openai.headers import read_retry_after

    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    return read_retry_after(headers) if headers is not None else None
