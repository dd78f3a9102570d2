"""Cost, calls and tokens over time, per operation, in bounded memory for a log of any length.

Calls are binned by the second; when the bins grow past :data:`MAX_BINS`, they are merged
into the next coarser step of :data:`STEPS_S` (5 s, 15 s, 1 min, ... a week), so a 30-second
run keeps its seconds and a year of logs its days. Charts re-bin to a step that suits
their width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_BINS", "STEPS_S", "Point", "TimeSeries"]

STEPS_S = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
"""Bin widths, finest first; each divides the next, so merging bins is exact."""

MAX_BINS = 50_000
"""Bins kept over every operation before the series moves to a coarser step."""


@dataclass(slots=True)
class Point:
    """What the calls of one bin cost and used."""

    cost_usd: float = 0.0
    calls: int = 0
    tokens: int = 0

    def add(self, other: Point) -> None:
        self.cost_usd += other.cost_usd
        self.calls += other.calls
        self.tokens += other.tokens


@dataclass(slots=True)
class TimeSeries:
    """Per operation: bin start (POSIX seconds, a multiple of ``step_s``) to its :class:`Point`."""

    step_s: int = STEPS_S[0]
    operations: dict[str, dict[int, Point]] = field(default_factory=dict)
    _bins: int = 0

    def add(self, operation: str, moment: float, cost_usd: float, tokens: int) -> None:
        """Count one call of ``operation`` at POSIX time ``moment``."""
        bins = self.operations.setdefault(operation, {})
        start = int(moment // self.step_s) * self.step_s
        point = bins.get(start)
        if point is None:
            point = bins[start] = Point()
            self._bins += 1
        point.cost_usd += cost_usd
        point.calls += 1
        point.tokens += tokens
        while self._bins > MAX_BINS and self.step_s < STEPS_S[-1]:  # one step may not do
            coarser = STEPS_S[STEPS_S.index(self.step_s) + 1]
            self.operations = self.rebinned(coarser)
            self.step_s = coarser
            self._bins = sum(len(bins) for bins in self.operations.values())

    def rebinned(self, step_s: int) -> dict[str, dict[int, Point]]:
        """The series in bins of ``step_s`` (a multiple of the current step)."""
        if step_s % self.step_s:
            raise ValueError(f"cannot re-bin steps of {self.step_s} s into {step_s} s")
        out: dict[str, dict[int, Point]] = {}
        for operation, bins in self.operations.items():
            merged = out.setdefault(operation, {})
            for start, point in bins.items():
                key = start // step_s * step_s
                target = merged.get(key)
                if target is None:
                    target = merged[key] = Point()
                target.add(point)
        return out

    def span(self) -> tuple[int, int] | None:
        """The first bin's start and the last bin's end, or ``None`` when empty."""
        starts = [start for bins in self.operations.values() for start in bins]
        if not starts:
            return None
        return min(starts), max(starts) + self.step_s

    def display_step(self, max_bars: int = 240) -> int:
        """The finest step (at least the series' own) that shows the span in at most
        ``max_bars`` bins."""
        span = self.span()
        if span is None:
            return self.step_s
        width = span[1] - span[0]
        for step in STEPS_S:
            if step >= self.step_s and width / step <= max_bars:
                return step
        return STEPS_S[-1]
