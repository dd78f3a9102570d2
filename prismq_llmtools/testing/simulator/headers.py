"""Response headers as OpenAI writes them: rate-limit state, Retry-After, request ids."""

from __future__ import annotations

import math
import uuid

from prismq_llmtools.testing.simulator.ratelimit import Admission, BucketState

__all__ = [
    "format_duration",
    "new_request_id",
    "rate_limit_headers",
    "retry_after_headers",
    "retry_after_seconds_headers",
]

Headers = list[tuple[str, str]]


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's headers write it (Go style, millisecond precision).

    ``0s``, ``20ms``, ``1s``, ``8.64s``, ``1m30.5s``, ``6m0s``, ``1h0m0s``.
    """
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"a duration must be a non-negative number, got {seconds!r}")
    millis = math.ceil(seconds * 1000 - 1e-6)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def new_request_id() -> str:
    """A fresh ``x-request-id`` value shaped like OpenAI's."""
    return f"req_{uuid.uuid4().hex}"


def rate_limit_headers(requests: BucketState | None, tokens: BucketState | None) -> Headers:
    """The six ``x-ratelimit-*`` headers for the limited buckets (none for unlimited ones)."""
    headers: Headers = []
    for suffix, state in (("requests", requests), ("tokens", tokens)):
        if state is None:
            continue
        headers.append((f"x-ratelimit-limit-{suffix}", str(state.limit)))
        headers.append((f"x-ratelimit-remaining-{suffix}", str(state.remaining)))
        headers.append((f"x-ratelimit-reset-{suffix}", format_duration(state.reset_s)))
    return headers


def retry_after_headers(admission: Admission) -> Headers:
    """``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` of a refusal."""
    return retry_after_seconds_headers(admission.retry_after_s)


def retry_after_seconds_headers(seconds: float) -> Headers:
    """``Retry-After`` and ``retry-after-ms`` for a wait of ``seconds`` (none if infinite)."""
    if math.isinf(seconds):
        return []
    millis = max(1, math.ceil(seconds * 1000 - 1e-6))
    return [("retry-after", str(math.ceil(millis / 1000))), ("retry-after-ms", str(millis))]
