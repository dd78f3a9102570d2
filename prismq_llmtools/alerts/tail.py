"""Follow growing log files like ``tail -F``: new lines as they are written, across rotation.

Rotation by rename (the old file is read to its end, then the new file from its start) and
by truncation (``copytruncate``: reading restarts at the beginning) are both handled; a file
that does not exist yet is waited for. Polling, sleeping and the clock are injectable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from prismq_llmtools.alerts.engine import AlertEngine
from prismq_llmtools.alerts.sources import SourceStats

__all__ = ["FollowedFile", "follow"]


class FollowedFile:
    """One followed path: yields complete new lines, keeping a partial last line back."""

    def __init__(self, path: str | Path, *, from_end: bool = False) -> None:
        self.path = str(path)
        self._from_end = from_end
        self._handle: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        self.lines_read = 0
        self.rotations = 0

    def read_lines(self) -> list[str]:
        """Return the complete lines written since the last call (possibly none)."""
        lines: list[str] = []
        if self._handle is None and not self._open(seek_end=self._from_end):
            return lines
        assert self._handle is not None
        if os.fstat(self._handle.fileno()).st_size < self._handle.tell():  # truncated in place
            self._handle.seek(0)
            self._partial = b""
            self.rotations += 1
        lines += self._drain()
        try:
            identity = _identity(os.stat(self.path))
        except FileNotFoundError:  # renamed away, the new file not created yet: wait for it
            return lines
        if identity != self._identity:  # a new file at the path: finish the old one first
            if self._partial:
                lines.append(self._partial.decode("utf-8", "replace"))
                self._partial = b""
            self._handle.close()
            self.rotations += 1
            if self._open(seek_end=False):
                lines += self._drain()
        self.lines_read += len(lines)
        return lines

    def close(self) -> None:
        """Close the file handle."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _open(self, *, seek_end: bool) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (kept open across polls)
        except FileNotFoundError:
            self._handle = None
            return False
        self._handle = handle
        self._identity = _identity(os.fstat(handle.fileno()))
        self._from_end = False  # only the first opening may start at the end
        if seek_end:
            handle.seek(0, os.SEEK_END)
        return True

    def _drain(self) -> list[str]:
        assert self._handle is not None
        data = self._handle.read()
        if not data:
            return []
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        return [chunk.decode("utf-8", "replace") for chunk in chunks]


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def follow(
    paths: Sequence[str | Path],
    engine: AlertEngine,
    *,
    poll_s: float = 1.0,
    from_end: bool = True,
    heartbeat: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    should_stop: Callable[[], bool] = lambda: False,
    loads: Callable[[str], Any] | None = None,
) -> SourceStats:
    """Follow ``paths`` and feed new events to ``engine`` until ``should_stop()`` is true.

    Args:
        poll_s: seconds between polls when nothing new was written.
        from_end: start at the current end of each file (like ``tail -F``); False replays
            the existing content first.
        heartbeat: when a poll finds nothing, advance event time to ``clock()`` so that
            silence fires absence rules; turn off when following logs of another time.
    """
    stats = SourceStats(files=len(paths))
    files = [FollowedFile(path, from_end=from_end) for path in paths]
    try:
        while not should_stop():
            fresh = False
            for followed in files:
                lines = followed.read_lines()
                if lines:
                    fresh = True
                    first = followed.lines_read - len(lines) + 1
                    stats.lines += engine.process_lines(
                        lines, loads=loads, on_malformed=_noter(stats, followed.path, first)
                    )
            if not fresh:
                if heartbeat:
                    engine.advance_to(clock())
                sleep(poll_s)
    finally:
        for followed in files:
            followed.close()
    return stats


def _noter(stats: SourceStats, path: str, first: int) -> Callable[[int, str, str], None]:
    def note(index: int, text: str, reason: str) -> None:
        stats.note(path, first + index, text, reason)

    return note
