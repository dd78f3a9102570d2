"""Server-side rate limits as OpenAI enforces them: per model, RPM and TPM token buckets.

Each bucket holds up to its per-minute limit and refills continuously at limit / 60 per
second. A request is admitted only when both buckets can pay (1 request; prompt + cap
tokens); then both pay at once. Time comes from an injected clock, so tests need no sleeps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Admission", "BucketState", "ModelRateLimiter", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """A continuous-refill bucket of ``capacity`` that refills fully in 60 seconds."""

    __slots__ = ("_level", "_updated", "capacity", "rate_per_s")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.rate_per_s = capacity / 60.0
        self._level = float(capacity)
        self._updated = now

    def level(self, now: float) -> float:
        """What the bucket holds at ``now``."""
        if now > self._updated:
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate_per_s)
            self._updated = now
        return self._level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until the bucket holds ``amount`` (0 if it does; inf if it never can)."""
        if amount > self.capacity:
            return math.inf
        missing = amount - self.level(now)
        # Refill arithmetic leaves float dust; a bucket within 1e-9 of the amount can pay.
        return 0.0 if missing <= 1e-9 else missing / self.rate_per_s

    def take(self, amount: float, now: float) -> None:
        """Pay ``amount``; callers check :meth:`wait_s` first."""
        self._level = self.level(now) - amount

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.level(now)) / self.rate_per_s

    def refill(self, now: float) -> None:
        """Make the bucket full."""
        self._level = float(self.capacity)
        self._updated = now


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketState:
    """One bucket as the rate-limit headers describe it."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The verdict on one request, with the buckets' state after it."""

    admitted: bool
    charged_tokens: int
    requests: BucketState | None
    tokens: BucketState | None
    limited_by: Literal["requests", "tokens"] | None = None
    """Which bucket refused the request."""
    retry_after_s: float = 0.0
    """Until the refusing bucket(s) could pay; inf when the request exceeds a bucket."""
    used: int = 0
    """What the refusing bucket had already spent (limit minus level), for the message."""

    @property
    def too_large(self) -> bool:
        """Whether the request can never be admitted (more tokens than the bucket holds)."""
        return not self.admitted and math.isinf(self.retry_after_s)


class ModelRateLimiter:
    """The RPM and TPM buckets of one model; ``None`` limits are unlimited."""

    def __init__(self, *, rpm: int | None, tpm: int | None, clock: Clock) -> None:
        self._clock = clock
        now = clock()
        self._requests = TokenBucket(rpm, now) if rpm else None
        self._tokens = TokenBucket(tpm, now) if tpm else None
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> Admission:
        """Charge one request of ``tokens`` if both buckets can pay now, else refuse it."""
        with self._lock:
            now = self._clock()
            request_wait = self._requests.wait_s(1, now) if self._requests else 0.0
            token_wait = self._tokens.wait_s(tokens, now) if self._tokens else 0.0
            if request_wait == 0 and token_wait == 0:
                if self._requests:
                    self._requests.take(1, now)
                if self._tokens:
                    self._tokens.take(tokens, now)
                return self._verdict(now, admitted=True, charged=tokens)
            limited_by: Literal["requests", "tokens"] = (
                "tokens" if token_wait >= request_wait else "requests"
            )
            bucket = self._tokens if limited_by == "tokens" else self._requests
            assert bucket is not None  # a positive wait needs a bucket
            used = bucket.capacity - math.floor(bucket.level(now))
            return self._verdict(
                now,
                admitted=False,
                charged=0,
                limited_by=limited_by,
                retry_after_s=max(request_wait, token_wait),
                used=used,
            )

    def state(self) -> tuple[BucketState | None, BucketState | None]:
        """The requests and tokens buckets as they are now."""
        with self._lock:
            now = self._clock()
            return _state(self._requests, now), _state(self._tokens, now)

    def refill(self) -> None:
        """Make both buckets full."""
        with self._lock:
            now = self._clock()
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.refill(now)

    def _verdict(
        self,
        now: float,
        *,
        admitted: bool,
        charged: int,
        limited_by: Literal["requests", "tokens"] | None = None,
        retry_after_s: float = 0.0,
        used: int = 0,
    ) -> Admission:
        return Admission(
            admitted=admitted,
            charged_tokens=charged,
            requests=_state(self._requests, now),
            tokens=_state(self._tokens, now),
            limited_by=limited_by,
            retry_after_s=retry_after_s,
            used=used,
        )


def _state(bucket: TokenBucket | None, now: float) -> BucketState | None:
    if bucket is None:
        return None
    level = bucket.level(now)
    return BucketState(
        limit=bucket.capacity,
        remaining=max(0, math.floor(level)),
        reset_s=bucket.reset_s(now),
    )
