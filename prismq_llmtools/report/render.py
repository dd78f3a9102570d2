"""Render a usage :class:`~prismq_llmtools.report.Report`: aligned table, CSV, JSON, chart."""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.report import Report, UsageRow

__all__ = ["plot_costs", "render_csv", "render_json", "render_table", "series_label"]


def _int(value: int) -> str:
    return f"{value:,}"


def _money(value: float) -> str:
    return f"{value:,.4f}"


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
    ("cost $", lambda r: _money(r.cost_usd)),
    ("cache hit", lambda r: _ratio(r.cache_hit_rate)),
    ("saved $", lambda r: _money(r.saved_usd)),
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
    return json.dumps(document, indent=2) + "\n"


def series_label(report: Report, operation: str) -> str:
    """The chart's label of an operation: marked when part of its cost is estimated."""
    return f"{operation} (estimated)" if operation in report.estimated else operation


_STEPS_S = (60, 300, 900, 3600, 6 * 3600, 86400)
_MAX_LINES = 8


def plot_costs(report: Report, path: str | Path) -> None:
    """Draw cost over time per operation to a PNG (needs the ``[plot]`` extra: matplotlib).

    Raises:
        ConfigurationError: matplotlib is not installed.
    """
    # imported by name: matplotlib is an optional extra, absent from type-checking installs
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise ConfigurationError(
            "--plot needs matplotlib: pip install 'prismq_llmtools[plot]'"
        ) from None
    from datetime import UTC, datetime

    starts = [step for costs in report.series.values() for step in costs]
    figure, axes = plt.subplots(figsize=(10, 5))
    if starts:
        span = max(starts) - min(starts) + 60
        step = next((s for s in _STEPS_S if span / s <= 300), _STEPS_S[-1])
        ranked = sorted(report.series, key=lambda op: -sum(report.series[op].values()))
        shown, others = ranked[:_MAX_LINES], ranked[_MAX_LINES:]
        lines = {op: report.series[op] for op in shown}
        if others:
            merged: dict[int, float] = {}
            for op in others:
                for start, cost in report.series[op].items():
                    merged[start] = merged.get(start, 0.0) + cost
            lines["(other)"] = merged
        for operation, costs in lines.items():
            bins: dict[int, float] = {}
            for start, cost in costs.items():
                key = start // step * step
                bins[key] = bins.get(key, 0.0) + cost
            times = sorted(bins)
            axes.plot([datetime.fromtimestamp(t, UTC) for t in times], [bins[t] for t in times],
                      marker=".", label=series_label(report, operation))  # fmt: skip
        axes.set_ylabel(
            f"cost $ per {step // 60} min" if step < 3600 else f"cost $ per {step // 3600} h"
        )
        axes.legend(loc="upper left", fontsize="small")
    axes.set_title("LLM cost over time per operation")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
