"""Time as an injectable dependency: the only module that reads the system clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "system_clock", "wall_seconds"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time plus the two ways of waiting on it.

    ``now()`` is monotonic seconds (for intervals); ``wall()`` is the UTC wall clock
    (for event timestamps and period budgets).
    """

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> datetime:
        """Current UTC time."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep``."""

    __slots__ = ()

    # The builtins themselves, not wrappers: the clock is read several times per call.
    now = staticmethod(time.monotonic)

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


system_clock = SystemClock()


def wall_seconds(clock: Clock) -> float:
    """``clock.wall()`` as seconds since the epoch (how the stores keep wall times); the
    system clock's read as such, without building a datetime first."""
    if clock is system_clock:
        return time.time()
    return clock.wall().timestamp()
