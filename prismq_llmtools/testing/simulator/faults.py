"""Faults the simulator can inject: kinds, scripted faults, seeded profiles, and the picker."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from prismq_llmtools.errors import ConfigurationError

__all__ = [
    "PRE_ADMISSION",
    "STREAM_ONLY",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultProfile",
]


class FaultKind(StrEnum):
    """What goes wrong with one response."""

    NONE = "none"
    """Serve normally (a placeholder in a script)."""
    RATE_LIMIT = "rate_limit"
    """429 ``rate_limit_exceeded`` with Retry-After, whatever the buckets say."""
    INSUFFICIENT_QUOTA = "insufficient_quota"
    """429 ``insufficient_quota``: not transient, must not be retried."""
    SERVER_ERROR = "server_error"
    """500."""
    BAD_GATEWAY = "bad_gateway"
    """502."""
    SERVICE_UNAVAILABLE = "service_unavailable"
    """503."""
    TIMEOUT = "timeout"
    """408."""
    SLOW = "slow"
    """Served normally after an extra delay."""
    DROP_CONNECTION = "drop_connection"
    """The socket is closed without any response."""
    MALFORMED_JSON = "malformed_json"
    """200 whose body is not valid JSON."""
    EMPTY_BODY = "empty_body"
    """200 with an empty body."""
    STREAM_CUT = "stream_cut"
    """A stream whose connection is closed half-way (streams only)."""
    STREAM_NO_FINISH = "stream_no_finish"
    """A stream that ends with ``[DONE]`` but no finish_reason and no usage (streams only)."""
    CONTEXT_LENGTH = "context_length_exceeded"
    """400 ``context_length_exceeded``."""


# Faults decided before admission consume no rate limit and bill nothing; the others are
# served (and billed), then spoiled on the way out.
PRE_ADMISSION = frozenset(
    {
        FaultKind.RATE_LIMIT,
        FaultKind.INSUFFICIENT_QUOTA,
        FaultKind.SERVER_ERROR,
        FaultKind.BAD_GATEWAY,
        FaultKind.SERVICE_UNAVAILABLE,
        FaultKind.TIMEOUT,
        FaultKind.DROP_CONNECTION,
        FaultKind.CONTEXT_LENGTH,
    }
)
STREAM_ONLY = frozenset({FaultKind.STREAM_CUT, FaultKind.STREAM_NO_FINISH})


def _check_seconds(owner: str, **durations: float) -> None:
    """Refuse, at configuration, a duration the server could not send or wait: one that is
    not a finite number of seconds >= 0 (``inf``, ``nan``, ``-5``)."""
    for name, value in durations.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < math.inf
        ):
            raise ConfigurationError(
                f"{owner}: {name} must be a finite number of seconds >= 0, got {value!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted fault, consumed by the next matching request.

    Args:
        kind: What goes wrong.
        retry_after_s: Retry-After of an injected 429 ``rate_limit`` (default 1 s).
        delay_s: Extra latency of a ``slow`` fault (default 2 s).
        model: Only a request for this configured model consumes it (a dated snapshot counts
            as its base model; None: any model).
        path: Only a request whose path starts with this consumes it (None: the inference
            endpoints: chat completions, embeddings, responses).
    """

    kind: FaultKind
    retry_after_s: float = 1.0
    delay_s: float = 2.0
    model: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        _check_seconds("Fault", retry_after_s=self.retry_after_s, delay_s=self.delay_s)
        if self.path is not None and not self.path.startswith("/"):
            raise ConfigurationError(f"a fault path must start with '/', got {self.path!r}")

    def matches(self, *, model: str | None, path: str, inference: bool, stream: bool) -> bool:
        """Whether a request with these traits consumes this fault."""
        if self.kind in STREAM_ONLY and not stream:
            return False
        if self.model is not None and self.model != model:
            return False
        if self.path is None:
            return inference
        return path.startswith(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultProfile:
    """Probability of each fault per inference request (their sum is at most 1).

    Stream-only faults drawn for a non-streaming request leave it unharmed.
    """

    rate_limit: float = 0.0
    insufficient_quota: float = 0.0
    server_error: float = 0.0
    bad_gateway: float = 0.0
    service_unavailable: float = 0.0
    timeout: float = 0.0
    slow: float = 0.0
    drop_connection: float = 0.0
    malformed_json: float = 0.0
    empty_body: float = 0.0
    stream_cut: float = 0.0
    stream_no_finish: float = 0.0
    context_length_exceeded: float = 0.0
    slow_s: float = 2.0
    """Extra latency of a ``slow`` fault."""
    retry_after_s: float = 1.0
    """Retry-After of an injected 429 ``rate_limit``."""

    def __post_init__(self) -> None:
        total = 0.0
        for kind, probability in self._pairs():
            if not 0.0 <= probability <= 1.0:
                raise ConfigurationError(f"fault probability {kind} must be in [0, 1]")
            total += probability
        if total > 1.0 + 1e-9:
            raise ConfigurationError(f"fault probabilities sum to {total:.3f} > 1")
        _check_seconds("FaultProfile", slow_s=self.slow_s, retry_after_s=self.retry_after_s)

    @classmethod
    def uniform(cls, rate: float, kinds: Iterable[FaultKind] | None = None) -> FaultProfile:
        """Spread ``rate`` evenly over ``kinds`` (default: 429 and the 5xx statuses)."""
        chosen = tuple(kinds) if kinds is not None else TRANSIENT_DEFAULT
        if not chosen or FaultKind.NONE in chosen:
            raise ConfigurationError("uniform() needs fault kinds other than NONE")
        share = rate / len(chosen)
        return cls(**{FaultKind(kind).value: share for kind in chosen})

    def _pairs(self) -> tuple[tuple[FaultKind, float], ...]:
        return tuple(
            (FaultKind(f.name), getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("slow_s", "retry_after_s")
        )

    @property
    def active(self) -> tuple[tuple[FaultKind, float], ...]:
        """The kinds with a non-zero probability, in declaration order."""
        return tuple(pair for pair in self._pairs() if pair[1] > 0)


TRANSIENT_DEFAULT = (
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.SERVICE_UNAVAILABLE,
)


class FaultInjector:
    """Chooses the fault of each request: the script first, then the seeded profile.

    Thread-safe: tests push scripts from their own thread while the server draws.
    """

    def __init__(
        self,
        *,
        seed: int,
        profile: FaultProfile,
        per_model: Mapping[str, FaultProfile],
        script: Iterable[Fault] = (),
    ) -> None:
        self._rng = random.Random(f"faults:{seed}")  # noqa: S311 - simulation, not security
        self._active = profile.active
        self._active_per_model = {name: p.active for name, p in per_model.items()}
        self._profiles = dict(per_model)
        self._profile = profile
        self._script: deque[Fault] = deque(script)
        self._lock = threading.Lock()

    def push(self, faults: Iterable[Fault]) -> None:
        """Append faults to the script."""
        with self._lock:
            self._script.extend(faults)

    def clear(self) -> None:
        """Drop every scripted fault not consumed yet."""
        with self._lock:
            self._script.clear()

    def pending(self) -> tuple[Fault, ...]:
        """Scripted faults not consumed yet."""
        with self._lock:
            return tuple(self._script)

    def pick(self, *, model: str | None, path: str, inference: bool, stream: bool) -> Fault | None:
        """The fault for one request, or None to serve it normally."""
        with self._lock:
            for index, fault in enumerate(self._script):
                if fault.matches(model=model, path=path, inference=inference, stream=stream):
                    del self._script[index]
                    return None if fault.kind is FaultKind.NONE else fault
            if not inference:
                return None
            active = self._active_per_model.get(model or "", self._active)
            if not active:
                return None
            profile = self._profiles.get(model or "", self._profile)
            draw = self._rng.random()
        for kind, probability in active:
            draw -= probability
            if draw < 0:
                if kind in STREAM_ONLY and not stream:
                    return None
                return Fault(kind=kind, retry_after_s=profile.retry_after_s, delay_s=profile.slow_s)
        return None
