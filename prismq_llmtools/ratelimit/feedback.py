"""What the server's answer to one admitted request means for the key's buckets.

- ``x-ratelimit-remaining-*`` (or ``-reset-*``) headers: the bucket follows the server, which
  also sees other clients of the account and counts tokens its own way.
- A 429 ``rate_limit_exceeded``: the key pauses for Retry-After (every caller, at once), and
  the request, which the server refused, is not charged.
- No answer at all (a connection error, or the function failed before any request): the
  request is refunded. A timeout may have been served, so it stays charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prismq_llmtools.call import Call, RateHeaders
from prismq_llmtools.stores.bucket import BucketSpec, Ticket

if TYPE_CHECKING:
    from prismq_llmtools.ratelimit.policy import RateLimit

__all__ = ["Admission", "Plan", "feedback_for"]

_DEFAULT_PAUSE_S = 1.0  # a 429 without Retry-After


@dataclass(slots=True, kw_only=True)
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
    pause_s = _retry_after(error) if refused and not quota and follow else 0.0
    if headers is None or not follow:
        return Plan(refund=costs if refused else (), pause_s=pause_s)
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


def _retry_after(error: BaseException | None) -> float:
    from prismq_llmtools.openai.headers import retry_after_s

    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    wait = retry_after_s(headers) if headers is not None else None
    return _DEFAULT_PAUSE_S if wait is None else wait
