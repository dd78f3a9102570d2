"""A one-line progress bar for batches: done/total, rate, ETA, cost so far, failures.

Drawn on a terminal only (or when asked for), redrawn at most ten times a second, and
finished with a newline; nothing is written when it is off.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    whole = max(int(seconds + 0.5), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of ``total`` items.

    Args:
        total: the number of items.
        enabled: True draws, False never draws, None draws when ``stream`` is a terminal.
        label: shown before the bar (the site name).
        stream: where to draw (default stderr).
        clock: monotonic seconds (rate and ETA).
        width: the bar's width in characters.
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool | None,
        label: str,
        clock: Callable[[], float],
        stream: TextIO | None = None,
        width: int = 24,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total = total
        self.label = label
        self.width = width
        self._clock = clock
        self._started = clock()
        self._drawn_at = float("-inf")
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.cost_usd = Decimal(0)
        self.status = ""

    def update(self, *, done: int, failed: int, cost_usd: Decimal, status: str = "") -> None:
        """Record the current counts; redraw when at least 0.1 s passed since the last time."""
        self.done, self.failed, self.cost_usd = done, failed, cost_usd
        if status:
            self.status = status
        if not self.enabled:
            return
        now = self._clock()
        if now - self._drawn_at < 0.1 and done < self.total:
            return
        self._drawn_at = now
        self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the bar as it would be drawn now."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 0.0)
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total:
            eta = f"in {format_duration(elapsed)}"
        elif rate > 0:
            eta = f"ETA {format_duration((self.total - self.done) / rate)}"
        else:
            eta = "ETA ?"
        parts = [
            f"{self.label} {self.done}/{self.total} {fraction:4.0%} [{bar}]",
            f"{rate:.1f}/s",
            eta,
            f"${self.cost_usd:.4f}",
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.status:
            parts.append(self.status)
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        with self._lock:
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(self._clock())
            with self._lock:
                self.stream.write("\n")
                self.stream.flush()
