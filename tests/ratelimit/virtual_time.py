"""Virtual time for runs against the simulator: it moves only when every client waits.

A run has a fixed number of participants (threads, possibly in several processes, or
asyncio tasks). While any of them is working (building a request, talking to the
simulator), time stands still; once all of them wait on the clock, it jumps to the earliest
wake-up. So client and server see the same instant for every request, a run covers
simulated minutes in a fraction of a real second, and what it measures does not depend
on how busy the machine is. A participant that forgets to join or leave stops time for
everyone: the run hangs instead of measuring something else.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_RUNNING = -math.inf  # a participant's wake-up time while it works
_LEFT = math.inf  # ... and once it has left


class VirtualClock:
    """A clock for ``participants`` threads, in this process or in spawned ones.

    Each participant runs inside ``with clock.participant():``. Pass the clock to a spawned
    process as a ``Process`` argument (its state lives in shared memory).
    """

    def __init__(self, participants: int, *, offset_s: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._cond = context.Condition()
        self._now = context.RawValue("d", 0.0)
        self._joined = context.RawValue("i", 0)
        self._wake = context.RawArray("d", [_RUNNING] * participants)
        self._offset = offset_s
        self._slot: contextvars.ContextVar[int] = contextvars.ContextVar("slot")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_slot"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slot = contextvars.ContextVar("slot")

    def shifted(self, offset_s: float) -> VirtualClock:
        """The same time seen ``offset_s`` seconds ahead (a clock started earlier)."""
        view = VirtualClock.__new__(VirtualClock)
        view.__setstate__(self.__getstate__())
        view._offset = self._offset + offset_s
        return view

    def now(self) -> float:
        return self._now.value + self._offset

    def wall(self) -> datetime:
        return _EPOCH + timedelta(seconds=self.now())

    @contextmanager
    def participant(self) -> Iterator[None]:
        """Take part in the run for the duration of the block."""
        with self._cond:
            slot = self._joined.value
            if slot >= len(self._wake):
                raise RuntimeError("more participants than the clock was made for")
            self._joined.value = slot + 1
        token = self._slot.set(slot)
        try:
            yield
        finally:
            self._slot.reset(token)
            with self._cond:
                self._wake[slot] = _LEFT
                self._advance()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        slot = self._slot.get()
        with self._cond:
            self._wake[slot] = wake = self._now.value + seconds
            self._advance()
            while self._now.value < wake:
                self._cond.wait()
            self._wake[slot] = _RUNNING

    async def asleep(self, seconds: float) -> None:
        raise TypeError("VirtualClock is for threads: use TaskClock for asyncio tasks")

    def _advance(self) -> None:
        # Time moves only when every participant waits (a working one reads -inf here).
        earliest = min(self._wake)
        if self._now.value < earliest < _LEFT:
            self._now.value = earliest
            self._cond.notify_all()


class TaskClock:
    """The same for ``participants`` asyncio tasks of one event loop."""

    def __init__(self, participants: int) -> None:
        self._now = 0.0
        self._working = participants
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return _EPOCH + timedelta(seconds=self._now)

    def sleep(self, seconds: float) -> None:
        raise TypeError("TaskClock is for asyncio tasks: use VirtualClock for threads")

    async def asleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._sleepers, (self._now + seconds, self._order, woken))
        self._working -= 1
        self._advance()
        await woken

    def leave(self) -> None:
        """A participant is done."""
        self._working -= 1
        self._advance()

    def _advance(self) -> None:
        if self._working or not self._sleepers:
            return
        self._now = self._sleepers[0][0]
        while self._sleepers and self._sleepers[0][0] <= self._now:
            self._working += 1
            woken = heapq.heappop(self._sleepers)[2]
            if not woken.done():  # (cancelled when the run ends early)
                woken.set_result(None)
