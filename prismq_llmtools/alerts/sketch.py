"""A bounded quantile sketch: log-spaced bins with a guaranteed relative accuracy.

Values fall into bins whose bounds grow by ``GAMMA``; a quantile is read as the middle of its
bin, within ``RELATIVE_ACCURACY`` of the exact nearest-rank value. A sketch of latencies from
1 ms to 10 min needs about 670 bins however many values it holds, so a p95 over a one-day
window costs no more memory than over one minute.

:class:`SlidingSketch` is the sketch of a sliding window: bins come and go as buckets enter
and leave, and it keeps its bins sorted and remembers where the last quantile was, so that
reading the quantile again one tick later walks a few bins instead of sorting them all.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Mapping

__all__ = [
    "GAMMA",
    "RELATIVE_ACCURACY",
    "SlidingSketch",
    "bin_of",
    "bin_value",
    "quantile_of",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
INV_LOG_GAMMA = 1 / math.log(GAMMA)
TINY = 1e-12  # values at or below (in magnitude) share the zero bin
HUGE = 1e300  # values beyond (infinities) share the largest bin
_ZERO_BIN = -(1 << 30)
_NEGATIVE_BASE = -(1 << 31)  # negative values sort below zero, the largest magnitude lowest


def bin_of(value: float) -> int:
    """Return the bin of ``value``; bins sort in the order of the values they hold."""
    if not -HUGE < value < HUGE:  # infinities join the largest bins; NaN the zero bin
        value = 0.0 if value != value else math.copysign(HUGE, value)
    if value > TINY:
        return math.ceil(math.log(value) * INV_LOG_GAMMA)
    if value < -TINY:
        return _NEGATIVE_BASE - math.ceil(math.log(-value) * INV_LOG_GAMMA)
    return _ZERO_BIN


def bin_value(index: int) -> float:
    """Return the value that represents bin ``index`` (within the relative accuracy)."""
    if index == _ZERO_BIN:
        return 0.0
    if index < _ZERO_BIN:
        return -bin_value(_NEGATIVE_BASE - index)
    return 2 * GAMMA**index / (GAMMA + 1)


def quantile_of(counts: Mapping[int, int], total: int, q: float) -> float | None:
    """Return the nearest-rank ``q`` quantile of the sketch ``counts`` holding ``total`` values."""
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))  # the rank-th smallest value
    if rank * 2 > total:  # walk from the top: fewer bins to visit for high quantiles
        remaining = total - rank + 1
        for index in sorted(counts, reverse=True):
            remaining -= counts[index]
            if remaining <= 0:
                return bin_value(index)
    else:
        for index in sorted(counts):
            rank -= counts[index]
            if rank <= 0:
                return bin_value(index)
    return None


class SlidingSketch:
    """Bin counts of a sliding window; answers the same quantiles as :func:`quantile_of`.

    The bins present are kept sorted (bounded by the number of bins, not of values), and a
    cursor remembers the bin of the last quantile with the number of values below it. Adding
    and removing a bucket's bins keeps that number current, so the next quantile walks from
    the cursor only as far as the distribution moved.
    """

    __slots__ = ("_at", "_below", "_keys", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self._keys: list[int] = []  # the bins with a count, ascending
        self._at = 0  # cursor: a bin index, present or not
        self._below = 0  # values in bins below the cursor

    def add(self, bins: Mapping[int, int]) -> None:
        """Count the values of ``bins`` (a bucket entering the window)."""
        counts, at, below = self.counts, self._at, 0
        for index, hits in bins.items():
            held = counts.get(index)
            if held is None:
                counts[index] = hits
                insort(self._keys, index)
            else:
                counts[index] = held + hits
            if index < at:
                below += hits
        self._below += below

    def remove(self, bins: Mapping[int, int]) -> None:
        """Forget the values of ``bins`` (a bucket leaving the window)."""
        counts, keys, at, below = self.counts, self._keys, self._at, 0
        for index, hits in bins.items():
            left = counts[index] - hits
            if left:
                counts[index] = left
            else:
                del counts[index]
                del keys[bisect_left(keys, index)]
            if index < at:
                below += hits
        self._below -= below

    def quantile(self, total: int, q: float) -> float | None:
        """Return the nearest-rank ``q`` quantile of the ``total`` values held."""
        if total <= 0:
            return None
        rank = max(1, math.ceil(q * total))  # the rank-th smallest value
        keys, counts = self._keys, self.counts
        i, below = bisect_left(keys, self._at), self._below  # below: values in keys[:i]
        while below >= rank:
            i -= 1
            below -= counts[keys[i]]
        end = len(keys)
        while i < end:
            here = counts[keys[i]]
            if below + here >= rank:
                self._at, self._below = keys[i], below
                return bin_value(keys[i])
            below += here
            i += 1
        return None
