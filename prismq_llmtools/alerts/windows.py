"""Sliding windows over event time, kept as per-tick partial aggregates.

The engine evaluates rules at ticks ``k * resolution``; the events of bucket ``k`` are those
with time in ``((k-1) * resolution, k * resolution]``. A window of ``span`` ticks evaluated at
tick ``k`` covers buckets ``k - span + 1 .. k``, which is exactly the events in
``(t - window, t]``. Each bucket enters once and leaves once, so updates are O(1) amortised
and memory is bounded by the window, not by the history.

A window keeps at most :data:`MAX_BUCKETS` buckets, so that its memory does not grow with
its length either: a window longer than that many ticks (an hour at the default 1 s tick)
merges ticks into blocks of ``grain = ceil(span / MAX_BUCKETS)`` ticks, aligned on multiples
of ``grain``, and a block leaves the window only when its last tick does. Such a window covers
at least its length and at most ``grain - 1`` ticks more (24 h + 23 s for a 1-day window).
"""

from __future__ import annotations

from collections import deque

from prismq_llmtools.alerts.sketch import SlidingSketch

__all__ = ["MAX_BUCKETS", "Window"]

_INF = float("inf")
MAX_BUCKETS = 3600
"""Buckets a window keeps at most; longer windows merge ticks (see the module docstring)."""


class Window:
    """One group's sliding window for one numeric field (or for plain counts).

    Keeps a running count of events, count and sum of numeric values, and on request the
    sliding min/max (monotonic deques) and a merged quantile sketch.
    """

    __slots__ = (
        "_buckets",
        "_highs",
        "_lows",
        "count",
        "grain",
        "n",
        "sketch",
        "span",
        "total",
    )

    def __init__(
        self,
        span: int,
        *,
        extremes: bool = False,
        sketch: bool = False,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.span = span
        self.grain = -(-span // max_buckets)  # ticks per bucket: 1 up to max_buckets ticks
        self._buckets: deque[tuple[int, int, int, float, dict[int, int] | None]] = deque()
        self.count = 0
        self.n = 0
        self.total = 0.0
        self._lows: deque[tuple[int, float]] | None = deque() if extremes else None
        self._highs: deque[tuple[int, float]] | None = deque() if extremes else None
        self.sketch: SlidingSketch | None = SlidingSketch() if sketch else None

    def push(
        self,
        tick: int,
        count: int,
        n: int = 0,
        total: float = 0.0,
        low: float = _INF,
        high: float = -_INF,
        bins: dict[int, int] | None = None,
    ) -> None:
        """Add the partial aggregate of bucket ``tick`` (ticks must not decrease)."""
        if self.grain == 1:
            self._buckets.append((tick, count, n, total, bins))
        else:
            tick = self._merge(tick, count, n, total, bins)
        self.count += count
        self.n += n
        self.total += total
        lows = self._lows
        if lows is not None and n:
            highs = self._highs
            assert highs is not None
            while lows and lows[-1][1] >= low:
                lows.pop()
            lows.append((tick, low))
            while highs and highs[-1][1] <= high:
                highs.pop()
            highs.append((tick, high))
        if bins:
            sketch = self.sketch
            if sketch is not None:
                sketch.add(bins)

    def _merge(
        self, tick: int, count: int, n: int, total: float, bins: dict[int, int] | None
    ) -> int:
        """Add to the bucket of ``tick``'s block; return the block's last tick."""
        grain, buckets = self.grain, self._buckets
        block = -(-tick // grain) * grain
        if buckets and buckets[-1][0] == block:
            _, held_count, held_n, held_total, held_bins = buckets.pop()
            count, n, total = held_count + count, held_n + n, held_total + total
            if held_bins and bins:  # a new dict: the partial's bins may be read by other rules
                merged = dict(held_bins)
                for index, hits in bins.items():
                    merged[index] = merged.get(index, 0) + hits
                bins = merged
            else:
                bins = held_bins or bins
        buckets.append((block, count, n, total, bins))
        return block

    def expire(self, tick: int) -> None:
        """Drop the buckets that are outside the window evaluated at ``tick``."""
        oldest_kept = tick - self.span + 1
        buckets = self._buckets
        # min/max entries belong to buckets, so they are no older than the oldest bucket
        if not buckets or buckets[0][0] >= oldest_kept:
            return
        sketch = self.sketch
        while buckets and buckets[0][0] < oldest_kept:
            _, count, n, total, bins = buckets.popleft()
            self.count -= count
            self.n -= n
            self.total -= total
            if bins and sketch is not None:
                sketch.remove(bins)
        if not buckets:  # float sums drift when values are added and removed: reset exactly
            self.count = self.n = 0
            self.total = 0.0
        lows, highs = self._lows, self._highs
        if lows is not None and highs is not None:
            while lows and lows[0][0] < oldest_kept:
                lows.popleft()
            while highs and highs[0][0] < oldest_kept:
                highs.popleft()

    @property
    def empty(self) -> bool:
        """True when no bucket is inside the window."""
        return not self._buckets

    @property
    def leaves_at(self) -> int | None:
        """The tick at which the oldest bucket leaves the window (``None`` when empty)."""
        return self._buckets[0][0] + self.span if self._buckets else None

    @property
    def minimum(self) -> float | None:
        """Smallest numeric value in the window."""
        return self._lows[0][1] if self._lows else None

    @property
    def maximum(self) -> float | None:
        """Largest numeric value in the window."""
        return self._highs[0][1] if self._highs else None

    @property
    def mean(self) -> float | None:
        """Mean of the numeric values in the window."""
        return self.total / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the numeric values (within the sketch's accuracy)."""
        return None if self.sketch is None else self.sketch.quantile(self.n, q)
