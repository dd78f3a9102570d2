"""A fake clock for tests: sleeping advances time instantly."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~prismq_llmtools.clock.Clock` whose ``sleep`` advances ``now`` without waiting.

    Every sleep is recorded in ``sleeps`` so tests can assert on the waits a policy chose.
    ``asleep`` yields to the event loop once, so other tasks still interleave.
    """

    def __init__(self, start: float = 1_000.0, wall_start: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
