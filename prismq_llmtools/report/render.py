"""Render a usage :class:`~prismq_llmtools.report.Report`: aligned table, CSV, JSON, a chart
(PNG or SVG), and one self-contained HTML page."""

from __future__ import annotations

import csv
import html
import importlib
import io
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.report import Report, UsageRow

__all__ = [
    "cost_figure",
    "money",
    "plot_costs",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "series_label",
]


def _int(value: int) -> str:
    return f"{value:,}"


def money(value: float) -> str:
    """Dollars with the digits that matter: cents from a dollar up, four decimals from a
    cent up, and two significant digits below (``0.000031``, never ``0.0000``)."""
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1:
        return f"{value:,.2f}"
    if size >= 0.01:
        return f"{value:.4f}"
    decimals = -math.floor(math.log10(size)) + 1
    return f"{value:.{decimals}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_COLUMNS: list[tuple[str, Callable[[UsageRow], str]]] = [
    ("calls", lambda r: _int(r.calls)),
    ("errors", lambda r: _int(r.errors)),
    ("input tok", lambda r: _int(r.input_tokens)),
    ("cached", lambda r: _int(r.cached_input_tokens)),
    ("output tok", lambda r: _int(r.output_tokens)),
    ("reasoning", lambda r: _int(r.reasoning_tokens)),
    ("cost $", lambda r: money(r.cost_usd)),
    ("cache hit", lambda r: _ratio(r.cache_hit_rate)),
    ("saved $", lambda r: money(r.saved_usd)),
    ("retries", lambda r: _int(r.retries)),
    ("429s", lambda r: _int(r.rate_limited)),
    ("p50 s", lambda r: _seconds(r.latency(0.50))),
    ("p95 s", lambda r: _seconds(r.latency(0.95))),
    ("unread", lambda r: _int(r.possibly_billed)),
    ("price", lambda r: "estimated" if r.estimated_price else "-"),
]


def render_table(report: Report) -> str:
    """The report as an aligned text table, with a TOTAL row."""
    header = [report.by, *(name for name, _ in _COLUMNS)]
    body = [[row.group, *(cell(row) for _, cell in _COLUMNS)] for row in report.rows]
    total = [report.total.group, *(cell(report.total) for _, cell in _COLUMNS)]
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return (
        "\n".join([line(header), rule, *(line(cells) for cells in body), rule, line(total)]) + "\n"
    )


def render_csv(report: Report) -> str:
    """The report as CSV, one row per group plus TOTAL."""
    buffer = io.StringIO()
    rows = [row.as_dict() for row in [*report.rows, report.total]]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def render_json(report: Report) -> str:
    """The report as a JSON document: grouping, rows, total and counts."""
    document = {
        "by": report.by,
        "rows": [row.as_dict() for row in report.rows],
        "total": report.total.as_dict(),
        "events": report.events,
        "skipped": report.skipped,
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


_MAX_OPERATIONS = 8  # more operations than colours a reader tells apart: the rest merged


def series_label(report: Report, operation: str) -> str:
    """The chart's label of an operation: marked when part of its cost is estimated."""
    return f"{operation} (estimated)" if operation in report.estimated else operation


def _pyplot() -> Any:
    # imported by name: matplotlib is an optional extra, absent from type-checking installs
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise ConfigurationError(
            "charts need matplotlib: pip install 'prismq_llmtools[plot]'"
        ) from None


def _step_label(step_s: int) -> str:
    for unit, seconds in (("week", 7 * 86400), ("day", 86400), ("h", 3600), ("min", 60)):
        if step_s >= seconds and step_s % seconds == 0:
            count = step_s // seconds
            return f"{count} {unit}" if count > 1 else unit
    return f"{step_s} s" if step_s > 1 else "second"


def cost_figure(report: Report) -> Any:
    """A matplotlib Figure: cost per time step per operation (stacked bars on a real time
    axis, scaled to the data from seconds to months), and tokens per step below it.

    Empty steps are empty: nothing is drawn across a gap. Operations beyond the eight most
    expensive are merged into ``(other)``.

    Raises:
        ConfigurationError: matplotlib is not installed.
    """
    plt = _pyplot()
    dates: Any = importlib.import_module("matplotlib.dates")
    figure, (cost_axes, token_axes) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, height_ratios=(3, 2), layout="constrained"
    )
    series = report.series
    step = series.display_step()
    bins = series.rebinned(step)
    ranked = sorted(bins, key=lambda op: (-sum(p.cost_usd for p in bins[op].values()), op))
    shown = {op: bins[op] for op in ranked[:_MAX_OPERATIONS]}
    if len(ranked) > _MAX_OPERATIONS:
        other: dict[int, Any] = {}
        for op in ranked[_MAX_OPERATIONS:]:
            for start, point in bins[op].items():
                other.setdefault(start, type(point)()).add(point)
        shown["(other)"] = other
    starts = sorted({start for points in shown.values() for start in points})
    width = step / 86400  # matplotlib's date unit is the day
    cost_base = dict.fromkeys(starts, 0.0)
    token_base = dict.fromkeys(starts, 0)
    for operation, points in shown.items():
        xs = sorted(points)
        when = [datetime.fromtimestamp(x, UTC) for x in xs]
        costs = [points[x].cost_usd for x in xs]
        tokens = [points[x].tokens for x in xs]
        label = series_label(report, operation)
        bar = cost_axes.bar(when, costs, width=width, align="edge", label=label,
                            bottom=[cost_base[x] for x in xs])  # fmt: skip
        colour = bar.patches[0].get_facecolor() if bar.patches else None
        token_axes.bar(when, tokens, width=width, align="edge", color=colour,
                       bottom=[token_base[x] for x in xs])  # fmt: skip
        for x, cost, used in zip(xs, costs, tokens, strict=True):
            cost_base[x] += cost
            token_base[x] += used
    span = series.span()
    if span is not None:
        first, last = span
        margin = max(step, (last - first) // 50)
        cost_axes.set_xlim(
            datetime.fromtimestamp(first // step * step - margin, UTC),
            datetime.fromtimestamp(math.ceil(last / step) * step + margin, UTC),
        )
        cost_axes.set_ylim(0, max(cost_base.values(), default=0) * 1.3 or 1)  # room for the legend
        cost_axes.legend(loc="upper left", fontsize="small", ncols=3)
    else:
        cost_axes.text(0.5, 0.5, "no calls in the logs", ha="center", transform=cost_axes.transAxes)
    locator = dates.AutoDateLocator()
    token_axes.xaxis.set_major_locator(locator)
    token_axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    per = _step_label(step)
    cost_axes.set_ylabel(f"cost $ per {per}")
    cost_axes.yaxis.set_major_formatter(lambda value, _: money(value))
    token_axes.set_ylabel(f"tokens per {per}")
    token_axes.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    token_axes.set_xlabel("time (UTC)")
    cost_axes.set_title(
        f"LLM cost over time per operation: {money(report.total.cost_usd)} $ in "
        f"{report.total.calls:,} calls"
    )
    for axes in (cost_axes, token_axes):
        axes.grid(axis="y", alpha=0.3)
    return figure


def plot_costs(report: Report, path: str | Path) -> None:
    """Write :func:`cost_figure` to ``path`` (PNG, or SVG/PDF by the file's extension).

    Raises:
        ConfigurationError: matplotlib is not installed.
    """
    figure = cost_figure(report)
    try:
        figure.savefig(path, dpi=110)
    finally:
        _pyplot().close(figure)


_HTML_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child, th:first-child { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #888; }
.note { color: #666; }
svg { max-width: 100%; height: auto; }
"""


def render_html(report: Report, *, title: str = "LLM usage report") -> str:
    """One self-contained HTML page (no network): the table and, with matplotlib, the chart
    as inline SVG."""
    esc = html.escape
    header = "".join(f"<th>{esc(name)}</th>" for name in [report.by, *(n for n, _ in _COLUMNS)])

    def line(row: UsageRow, css: str = "") -> str:
        cells = "".join(f"<td>{esc(cell(row))}</td>" for _, cell in _COLUMNS)
        return f'<tr class="{css}"><td>{esc(row.group)}</td>{cells}</tr>'

    body = "\n".join(line(row) for row in report.rows)
    try:
        figure = cost_figure(report)
    except ConfigurationError as exc:
        chart = f'<p class="note">No chart: {esc(str(exc))}.</p>'
    else:
        buffer = io.StringIO()
        try:
            figure.savefig(buffer, format="svg")
        finally:
            _pyplot().close(figure)
        svg = buffer.getvalue()
        chart = svg[svg.index("<svg") :]  # inline: without the XML prolog and doctype
    span = report.series.span()
    period = (
        "no calls"
        if span is None
        else f"{datetime.fromtimestamp(span[0], UTC):%Y-%m-%d %H:%M:%S} to "
        f"{datetime.fromtimestamp(span[1], UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_HTML_STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="note">{report.events:,} events, {esc(period)}; grouped by {esc(report.by)}.</p>
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{body}
{line(report.total, "total")}
</tbody>
</table>
{chart}
</body>
</html>
"""
