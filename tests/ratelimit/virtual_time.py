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
_NOBODY = -1


class VirtualClock:
    """A clock for ``participants`` threads, in this process or in spawned ones.

    Each participant runs inside ``with clock.participant():``. Pass the clock to a spawned
    process as a ``Process`` argument (its state lives in shared memory).

    ``serial=True`` also fixes the order of participants due at the same instant: they run
    one at a time, by slot, each until it waits again (the others admitted meanwhile stay
    in flight). Time stands still while anyone works, so such ties are the only work that
    could overlap, and the order in which they reach the server would vary from run to run;
    serial, a run is the same every time. Participants then take their slots explicitly
    (``participant(slot)``), so that the same participant always has the same one.
    """

    def __init__(self, participants: int, *, offset_s: float = 0.0, serial: bool = False) -> None:
        context = multiprocessing.get_context("spawn")
        lock = context.RLock()
        self._cond = context.Condition(lock)
        # serial: one condition per slot, so that a turn wakes its participant alone
        self._turns = [context.Condition(lock) for _ in range(participants)] if serial else []
        self._now = context.RawValue("d", 0.0)
        self._joined = context.RawValue("i", 0)
        self._wake = context.RawArray("d", [_RUNNING] * participants)
        self.serial = serial
        self._turn = context.RawValue("i", _NOBODY)  # serial: the slot allowed to run
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
    def participant(self, slot: int | None = None) -> Iterator[None]:
        """Take part in the run for the duration of the block (``slot``: see ``serial``)."""
        with self._cond:
            if slot is None:
                if self.serial:
                    raise RuntimeError("a serial clock's participants name their slots")
                slot = self._joined.value
            if not 0 <= slot < len(self._wake):
                raise RuntimeError("more participants than the clock was made for")
            self._joined.value += 1
            if self.serial:  # due now: runs when its turn comes
                self._wake[slot] = self._now.value
                self._wait_for_turn(slot)
        token = self._slot.set(slot)
        try:
            yield
        finally:
            self._slot.reset(token)
            with self._cond:
                self._wake[slot] = _LEFT
                if self.serial:
                    self._turn.value = _NOBODY
                self._advance()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        slot = self._slot.get()
        with self._cond:
            self._wake[slot] = wake = self._now.value + seconds
            if self.serial:
                self._turn.value = _NOBODY
                self._wait_for_turn(slot)
                return
            self._advance()
            while self._now.value < wake:
                self._cond.wait()
            self._wake[slot] = _RUNNING

    def _wait_for_turn(self, slot: int) -> None:
        # (holding the condition) until time has come to this slot's wake-up and its turn
        self._advance()
        while self._turn.value != slot:
            self._turns[slot].wait()
        self._wake[slot] = _RUNNING

    async def asleep(self, seconds: float) -> None:
        raise TypeError("VirtualClock is for threads: use TaskClock for asyncio tasks")

    def _advance(self) -> None:
        # Time moves only when every participant waits (a working one reads -inf here).
        earliest = min(self._wake)
        if self.serial:
            if self._turn.value == _NOBODY and _RUNNING < earliest < _LEFT:
                self._now.value = max(self._now.value, earliest)
                self._turn.value = turn = list(self._wake).index(earliest)  # the first due
                self._turns[turn].notify()
            return
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
