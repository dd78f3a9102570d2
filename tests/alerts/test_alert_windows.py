"""Sliding windows and the quantile sketch against brute force."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools.alerts.sketch import SlidingSketch, bin_of, bin_value, quantile_of
from prismq_llmtools.alerts.windows import Window

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.lists(values, min_size=1, max_size=5)), max_size=60),
    st.integers(1, 8),
)
def test_window_matches_brute_force(steps: list[tuple[int, list[float]]], span: int) -> None:
    """Count, sum, min, max and mean equal a recomputation over the buckets in the window."""
    window = Window(span, extremes=True)
    history: list[tuple[int, list[float]]] = []
    tick = 0
    for gap, bucket in steps:
        tick += gap
        if not history or history[-1][0] != tick:
            window.push(tick, len(bucket), len(bucket), sum(bucket), min(bucket), max(bucket))
            history.append((tick, bucket))
        window.expire(tick)
        inside = [v for k, b in history if k > tick - span for v in b]
        assert window.count == len(inside)
        assert math.isclose(window.total, sum(inside), rel_tol=1e-9, abs_tol=1e-3)
        assert window.minimum == (min(inside) if inside else None)
        assert window.maximum == (max(inside) if inside else None)
        assert window.empty == (not inside)


def test_window_leaves_at_and_reset() -> None:
    """A bucket pushed at tick 3 with span 5 leaves at tick 8; an empty window sums to 0."""
    window = Window(5)
    window.push(3, 1, 1, 0.1)
    window.push(4, 1, 1, 0.2)
    assert window.leaves_at == 8
    window.expire(9)
    assert (window.empty, window.total, window.count, window.leaves_at) == (True, 0.0, 0, None)


@given(
    st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_sketch_quantile_within_relative_accuracy(data: list[float], q: float) -> None:
    """The sketch's quantile is within 1% (relative) of the exact nearest-rank value."""
    counts: dict[int, int] = {}
    for value in data:
        counts[bin_of(value)] = counts.get(bin_of(value), 0) + 1
    exact = sorted(data)[max(1, math.ceil(q * len(data))) - 1]
    approx = quantile_of(counts, len(data), q)
    assert approx is not None
    assert abs(approx - exact) <= 0.0101 * abs(exact) + 1e-12


def test_sketch_bins_sort_like_values() -> None:
    """Bins of negative, zero and positive values sort in value order."""
    ordered = [-1e6, -3.0, -0.001, 0.0, 1e-6, 0.5, 2.0, 1e9]
    assert [bin_of(v) for v in ordered] == sorted(bin_of(v) for v in ordered)
    assert bin_value(bin_of(0.0)) == 0.0
    assert quantile_of({}, 0, 0.5) is None


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), max_size=8),
            st.floats(min_value=0.001, max_value=0.999),
        ),
        max_size=80,
    )
)
def test_sliding_sketch_agrees_with_a_fresh_sort(
    steps: list[tuple[bool, list[float], float]],
) -> None:
    """As buckets enter and leave, the sliding sketch's quantile equals quantile_of's."""
    sketch = SlidingSketch()
    inside: list[dict[int, int]] = []
    total = 0
    for leave, data, q in steps:
        if leave and inside:
            bucket = inside.pop(0)
            sketch.remove(bucket)
            total -= sum(bucket.values())
        else:
            bucket = {}
            for value in data:
                bucket[bin_of(value)] = bucket.get(bin_of(value), 0) + 1
            sketch.add(bucket)
            inside.append(bucket)
            total += len(data)
        merged: dict[int, int] = {}
        for held in inside:
            for index, hits in held.items():
                merged[index] = merged.get(index, 0) + hits
        assert sketch.counts == merged
        assert sketch.quantile(total, q) == quantile_of(merged, total, q)


@given(
    st.lists(st.tuples(st.integers(0, 4), st.lists(values, min_size=1, max_size=3)), max_size=80),
    st.integers(5, 24),
)
def test_long_window_merges_ticks_into_blocks(
    steps: list[tuple[int, list[float]]], span: int
) -> None:
    """Past max_buckets a window holds blocks of ticks, each kept until its last tick leaves."""
    grain = -(-span // 4)
    window = Window(span, extremes=True, sketch=True, max_buckets=4)
    history: list[tuple[int, list[float], dict[int, int]]] = []
    passed: list[dict[int, int]] = []  # partials' bins may be shared by rules: never modified
    tick = 0
    for gap, bucket in steps:
        tick += gap
        if not history or history[-1][0] != tick:
            bins: dict[int, int] = {}
            for value in bucket:
                bins[bin_of(value)] = bins.get(bin_of(value), 0) + 1
            history.append((tick, bucket, dict(bins)))
            passed.append(bins)
            low, high, n = min(bucket), max(bucket), len(bucket)
            window.push(tick, n, n, sum(bucket), low, high, bins)
        window.expire(tick)
        # a tick's values stay while the last tick of its block is inside the window
        kept = [(b, c) for k, b, c in history if -(-k // grain) * grain > tick - span]
        inside = [v for b, _ in kept for v in b]
        assert window.count == len(inside)
        assert math.isclose(window.total, sum(inside), rel_tol=1e-9, abs_tol=1e-3)
        assert window.minimum == (min(inside) if inside else None)
        assert window.maximum == (max(inside) if inside else None)
        merged: dict[int, int] = {}
        for _, counts in kept:
            for index, hits in counts.items():
                merged[index] = merged.get(index, 0) + hits
        assert window.quantile(0.9) == quantile_of(merged, len(inside), 0.9)
        assert len(window._buckets) <= 5
    assert passed == [counts for _, _, counts in history]
