"""Where events come from: the live structlog chain, or JSON-lines log files (replay).

Replaying a file feeds its lines in order; several files are merged by event time. Both
paths end with :meth:`AlertEngine.flush`, so every tick up to the last event is evaluated.
Malformed lines are counted (with the first few kept as examples), never raised.
"""

from __future__ import annotations

import gzip
import heapq
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prismq_llmtools.alerts.engine import AlertEngine
from prismq_llmtools.alerts.eventtime import parse_event_time

__all__ = ["AlertProcessor", "Malformed", "SourceStats", "open_log", "replay"]

_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Malformed:
    """One malformed line: where it was and why it was skipped."""

    path: str
    line: int
    reason: str
    text: str


@dataclass(slots=True)
class SourceStats:
    """What reading the logs met: lines, malformed lines (with examples) and files."""

    files: int = 0
    lines: int = 0
    malformed: int = 0
    examples: list[Malformed] = field(default_factory=list)

    def note(self, path: str, line: int, text: str, reason: str) -> None:
        """Count one malformed line, keeping the first few as examples."""
        self.malformed += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(Malformed(path, line, reason, text.rstrip("\n")[:200]))

    def summary(self) -> str:
        """One line for people, e.g. ``3 files, 120000 lines, 2 malformed (a.log:17 ...)``."""
        text = f"{self.files} file(s), {self.lines} line(s), {self.malformed} malformed"
        if self.examples:
            first = self.examples[0]
            text += f" (first: {first.path}:{first.line}: {first.reason})"
        return text


def open_log(path: str | Path) -> IO[str]:
    """Open a JSON-lines log for reading as text (``.gz`` files are decompressed)."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def replay(
    paths: Sequence[str | Path],
    engine: AlertEngine,
    *,
    loads: Callable[[str], Any] | None = None,
    flush: bool = True,
) -> SourceStats:
    """Feed log files to ``engine`` in event-time order and return what was read.

    One file is fed line by line (the fast path); several are merged by event time, each
    file's own order kept, so disorder within ``engine.lateness_s`` is harmless.
    """
    stats = SourceStats(files=len(paths))
    if len(paths) == 1:
        name = str(paths[0])
        with open_log(paths[0]) as handle:
            stats.lines = engine.process_lines(
                handle,
                loads=loads,
                on_malformed=lambda index, text, reason: stats.note(name, index + 1, text, reason),
            )
    else:
        streams = [_timed_events(str(path), stats, loads, engine) for path in paths]
        for moment, _, event in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            engine.process_at(moment, event)
    if flush:
        engine.flush()
    return stats


def _timed_events(
    path: str, stats: SourceStats, loads: Callable[[str], Any] | None, engine: AlertEngine
) -> Iterator[tuple[float, int, dict[str, Any]]]:
    import json

    parse = loads or json.loads
    with open_log(path) as handle:
        for number, line in enumerate(handle, 1):
            stats.lines += 1
            if not line.strip():
                continue
            try:
                event = parse(line)
            except ValueError as exc:
                stats.note(path, number, line, f"not JSON: {exc}")
                continue
            if not isinstance(event, dict):
                stats.note(path, number, line, "not a JSON object")
                continue
            moment = parse_event_time(event.get("timestamp"))
            if moment is None:
                stats.note(path, number, line, "no valid timestamp")
                continue
            bad = engine.malformed(event)
            if bad is not None:
                stats.note(path, number, line, bad)
                continue
            yield moment, number, event


class AlertProcessor:
    """A structlog processor that feeds every event to an alert engine, live.

    Add it to the application's processor chain AFTER ``TimeStamper(fmt="iso", utc=True)``
    (events without a timestamp are stamped with ``clock()``), before the renderer::

        structlog.configure(processors=[..., TimeStamper(fmt="iso", utc=True),
                                        AlertProcessor(engine), JSONRenderer()])

    It returns the event unchanged. Thread-safe; alerts emitted through structlog while the
    engine evaluates (``alert.fired``) pass through without being fed back. Call
    :meth:`heartbeat` now and then so that silence (absence rules) is noticed.
    """

    def __init__(self, engine: AlertEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        with self._lock:
            if self._depth:  # an alert emitted by the engine itself
                return event_dict
            self._depth += 1
            try:
                moment = parse_event_time(event_dict.get("timestamp"))
                self.engine.process_at(self._clock() if moment is None else moment, event_dict)
            finally:
                self._depth -= 1
        return event_dict

    def heartbeat(self, now: float | None = None) -> None:
        """Advance event time to ``now`` (default: the clock) when no event came."""
        with self._lock:
            self._depth += 1
            try:
                self.engine.advance_to(self._clock() if now is None else now)
            finally:
                self._depth -= 1

    def flush(self) -> None:
        """Evaluate everything up to the newest event (at shutdown)."""
        with self._lock:
            self._depth += 1
            try:
                self.engine.flush()
            finally:
                self._depth -= 1
