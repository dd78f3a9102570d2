"""The report's time series, its chart and its HTML page: ranges, gaps, digits, no network."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.cli import main
from prismq_llmtools.report import build_report, series
from prismq_llmtools.report.render import cost_figure, money, render_html
from prismq_llmtools.report.series import TimeSeries

START = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)


def call(at: datetime, operation: str, cost: float, tokens: int = 100) -> dict[str, Any]:
    return {
        "event": "llm.call",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "operation": operation,
        "cost_usd": cost,
        "gen_ai.usage.input_tokens": tokens,
        "gen_ai.usage.output_tokens": 0,
        "outcome": "ok",
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (0.000031, "0.000031"),
        (0.0000314159, "0.000031"),
        (0.00042, "0.00042"),
        (0.0069, "0.0069"),
        (0.51, "0.5100"),
        (12345.678, "12,345.68"),
    ],
)
def test_money_keeps_the_digits_that_matter(value: float, text: str) -> None:
    """Small amounts keep two significant digits instead of rounding to zero."""
    assert money(value) == text


def test_a_short_run_is_binned_by_the_second() -> None:
    """40 seconds of calls keep their seconds, and the chart shows them per second."""
    ts = TimeSeries()
    for second in range(40):
        ts.add("op", START.timestamp() + second + 0.5, 0.001, 10)
    assert ts.step_s == 1
    assert ts.display_step() == 1
    assert ts.span() == (int(START.timestamp()), int(START.timestamp()) + 40)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3e7), st.floats(0, 1), st.integers(0, 10**6)), max_size=300))
def test_coarsening_keeps_every_total(calls: list[tuple[float, float, int]]) -> None:
    """However far the series coarsens, its bins still add up to every call counted."""
    original = series.MAX_BINS
    series.MAX_BINS = 20  # coarsen often
    try:
        ts = TimeSeries()
        for moment, cost, tokens in calls:
            ts.add("a" if tokens % 2 else "b", moment, cost, tokens)
    finally:
        series.MAX_BINS = original
    points = [p for bins in ts.operations.values() for p in bins.values()]
    assert sum(p.calls for p in points) == len(calls)
    assert sum(p.tokens for p in points) == sum(t for _, _, t in calls)
    assert sum(p.cost_usd for p in points) == pytest.approx(sum(c for _, c, _ in calls))
    assert all(start % ts.step_s == 0 for bins in ts.operations.values() for start in bins)
    assert len(points) <= 20 or ts.step_s == series.STEPS_S[-1]


def bars(axes: Any) -> list[tuple[float, float, float]]:
    """(left, width, height) of every bar drawn on ``axes``, in matplotlib's date units."""
    return [(p.get_x(), p.get_width(), p.get_height()) for p in axes.patches]


def test_the_chart_of_seconds_has_a_gap_where_no_call_was_made() -> None:
    """Cost and tokens per second on a real time axis; nothing drawn inside a silent gap."""
    pytest.importorskip("matplotlib")
    import matplotlib.dates as mdates

    events = [call(START + timedelta(seconds=s), "titles", 0.00003) for s in range(10)]
    events += [call(START + timedelta(seconds=30 + s), "summaries", 0.0001) for s in range(10)]
    figure = cost_figure(build_report(events))
    cost_axes, token_axes = figure.axes
    assert "per second" in cost_axes.get_ylabel()
    assert "per second" in token_axes.get_ylabel()
    drawn = bars(cost_axes)
    assert sum(height for _, _, height in drawn) == pytest.approx(10 * 0.00003 + 10 * 0.0001)
    assert sum(height for _, _, height in bars(token_axes)) == 2000
    gap = (
        mdates.date2num(START + timedelta(seconds=10)),
        mdates.date2num(START + timedelta(seconds=30)),
    )
    assert not [b for b in drawn if gap[0] <= b[0] < gap[1]]
    low, high = cost_axes.get_xlim()
    assert mdates.date2num(START) - 2 / 86400 <= low <= mdates.date2num(START)
    end = mdates.date2num(START + timedelta(seconds=40))
    assert end <= high <= end + 2 / 86400
    figure.clf()


def test_the_chart_of_months_is_per_day() -> None:
    """Four months of calls: bars of a day, the axis spanning the months, values kept."""
    pytest.importorskip("matplotlib")
    import matplotlib.dates as mdates

    events = [
        call(START + timedelta(days=d, hours=h), "embed", 0.002)
        for d in range(120)
        for h in (1, 13)
    ]
    figure = cost_figure(build_report(events))
    cost_axes, _ = figure.axes
    assert "per day" in cost_axes.get_ylabel()
    drawn = bars(cost_axes)
    assert {width for _, width, _ in drawn} == {1.0}
    assert sum(height for _, _, height in drawn) == pytest.approx(240 * 0.002)
    low, high = cost_axes.get_xlim()
    assert high - low == pytest.approx(120, abs=6)
    assert low <= mdates.date2num(START)
    figure.clf()


def test_the_html_page_is_self_contained(tmp_path: Path) -> None:
    """One page with the table and the chart inline: no script, nothing fetched."""
    pytest.importorskip("matplotlib")
    events = [call(START + timedelta(minutes=m), "titles <b>", 0.000031) for m in range(30)]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    page_path = tmp_path / "report.html"
    assert main(["report", str(log), "--html", str(page_path)]) == 0
    page = page_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "titles &lt;b&gt;" in page  # escaped
    assert "0.00093" in page  # 30 x $0.000031, with its digits
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_the_html_page_without_matplotlib_still_has_the_table(monkeypatch: Any) -> None:
    """Without the [plot] extra the page says why there is no chart."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = render_html(build_report([call(START, "titles", 0.01)]))
    assert "<table>" in page
    assert "pip install" in page
    assert "<svg" not in page
