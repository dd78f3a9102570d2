"""Usage report from event logs: calls, tokens, cost, cache savings, retries, 429s, latency.

Reads ``llm.call`` summary lines (and ``llm.cache.hit`` lines for the dollars a cache hit
saved) and aggregates them per operation, model, site or UTC day, with cost, calls and
tokens over time per operation (:mod:`prismq_llmtools.report.series`). Attempts that a dead
process left in flight (an ``llm.attempt.sent`` line whose call never finished) count at their
worst case, as possibly billed. Rendering (table, CSV, JSON, chart, HTML page) lives in
:mod:`prismq_llmtools.report.render`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prismq_llmtools.events import current_names, has_old_names
from prismq_llmtools.report.series import TimeSeries

if TYPE_CHECKING:
    from prismq_llmtools.alerts.sources import SourceStats

__all__ = ["GROUPINGS", "Report", "UsageRow", "build_report", "read_events"]

GROUPINGS: Mapping[str, str] = {
    "operation": "operation",
    "model": "gen_ai.request.model",
    "site": "site",
    "day": "timestamp",
}
"""``--by`` choices and the event field each groups on (``day``: the date of the timestamp)."""

_NONE = "(none)"


@dataclass(slots=True)
class UsageRow:
    """Totals for one group (or for everything)."""

    group: str
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    cache_lookups: int = 0
    saved_usd: float = 0.0
    retries: int = 0
    rate_limited: int = 0
    possibly_billed: int = 0
    """Calls the server may have billed unread (counted at their worst case), and attempts
    left in flight by a process that died."""
    estimated_price: int = 0
    """Calls of a model with no known price, costed at a stand-in price."""
    durations: list[float] = field(default_factory=list, repr=False)

    @property
    def cache_hit_rate(self) -> float | None:
        """Cache hits per lookup (``None`` when the group is not cached)."""
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None

    def latency(self, q: float) -> float | None:
        """Nearest-rank ``q`` quantile of ``duration_s`` (exact)."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]

    def add(self, other: UsageRow) -> None:
        """Add ``other``'s totals into this row."""
        for name in (
            "calls", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
            "reasoning_tokens", "cost_usd", "cache_hits", "cache_lookups", "saved_usd",
            "retries", "rate_limited", "possibly_billed", "estimated_price",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.durations.extend(other.durations)

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data (for JSON and CSV); a sum too large for a float is ``None``."""
        row = {
            "group": self.group,
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": round(self.cost_usd, 12),
            "cache_hit_rate": self.cache_hit_rate,
            "saved_usd": round(self.saved_usd, 12),
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "possibly_billed": self.possibly_billed,
            "price_estimated": self.estimated_price > 0,
            "p50_latency_s": self.latency(0.50),
            "p95_latency_s": self.latency(0.95),
        }
        return {
            k: None if v.__class__ is float and not math.isfinite(v) else v for k, v in row.items()
        }


@dataclass(slots=True)
class Report:
    """Rows per group (most expensive first), the total, and cost over time per operation."""

    by: str
    rows: list[UsageRow]
    total: UsageRow
    series: TimeSeries = field(default_factory=TimeSeries)
    estimated: set[str] = field(default_factory=set)
    """Operations with a call costed at a stand-in price (marked in the chart)."""
    events: int = 0
    skipped: int = 0  # malformed lines or events without a usable timestamp


def build_report(
    events: Iterable[Mapping[str, Any]],
    *,
    by: str = "operation",
    since: float | None = None,
    until: float | None = None,
) -> Report:
    """Aggregate ``llm.call`` and ``llm.cache.hit`` events per ``by`` group.

    Args:
        by: ``operation``, ``model``, ``site`` or ``day``.
        since: keep events at or after this epoch time; until: before this one.
    """
    from prismq_llmtools.alerts.eventtime import format_event_time, parse_event_time

    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}: choose one of {', '.join(GROUPINGS)}")
    from prismq_llmtools.cost.recovery import InFlightTracker

    key_field = GROUPINGS[by]
    rows: dict[str, UsageRow] = {}
    series = TimeSeries()
    seen = skipped = 0
    in_flight = InFlightTracker()
    estimated: set[str] = set()
    for event in events:
        name = event.get("event")
        if name != "llm.call" and name != "llm.cache.hit":
            if name == "llm.attempt.sent" or name == "llm.attempt":
                in_flight.see(event)
            continue
        if has_old_names(event):  # a log written before a rename
            event = current_names(dict(event))
        in_flight.see(event)
        moment = parse_event_time(event.get("timestamp"))
        if moment is None:
            skipped += 1
            continue
        if (since is not None and moment < since) or (until is not None and moment >= until):
            continue
        seen += 1
        if by == "day":
            group = format_event_time(moment)[:10]
        else:
            group = str(event.get(key_field) or _NONE)
        row = rows.get(group)
        if row is None:
            row = rows[group] = UsageRow(group)
        if name == "llm.cache.hit":
            row.saved_usd += _number(event.get("saved_cost_usd"))
            continue
        _add_call(row, event)
        tokens = _number(event.get("gen_ai.usage.input_tokens")) + _number(
            event.get("gen_ai.usage.output_tokens")
        )
        operation = str(event.get("operation") or _NONE)
        if event.get("price_known") is False:
            estimated.add(operation)
        series.add(operation, moment, _number(event.get("cost_usd")), int(tokens))
    for attempt in in_flight.found():  # sent by a process that died before the answer
        moment = parse_event_time(attempt.timestamp)
        if moment is None or (since is not None and moment < since):
            continue
        if until is not None and moment >= until:
            continue
        fields = {"operation": attempt.operation, "site": attempt.site,
                  "gen_ai.request.model": attempt.model}  # fmt: skip
        group = (
            format_event_time(moment)[:10] if by == "day" else str(fields.get(key_field) or _NONE)
        )
        row = rows.get(group)
        if row is None:
            row = rows[group] = UsageRow(group)
        row.possibly_billed += 1
        row.input_tokens += attempt.usage.input_tokens
        row.output_tokens += attempt.usage.output_tokens
        row.cost_usd += float(attempt.cost_usd)
        series.add(
            attempt.operation or _NONE,
            moment,
            float(attempt.cost_usd),
            attempt.usage.input_tokens + attempt.usage.output_tokens,
        )
    ordered = sorted(rows.values(), key=lambda row: (-row.cost_usd, row.group))
    if by == "day":
        ordered.sort(key=lambda row: row.group)
    total = UsageRow("TOTAL")
    for row in ordered:
        total.add(row)
    return Report(
        by=by,
        rows=ordered,
        total=total,
        series=series,
        estimated=estimated,
        events=seen,
        skipped=skipped,
    )


def _add_call(row: UsageRow, event: Mapping[str, Any]) -> None:
    row.calls += 1
    if event.get("outcome") == "error":
        row.errors += 1
    row.input_tokens += int(_number(event.get("gen_ai.usage.input_tokens")))
    row.cached_input_tokens += int(_number(event.get("gen_ai.usage.cache_read.input_tokens")))
    row.output_tokens += int(_number(event.get("gen_ai.usage.output_tokens")))
    row.reasoning_tokens += int(_number(event.get("gen_ai.usage.reasoning.output_tokens")))
    row.cost_usd += _number(event.get("cost_usd"))
    cache = event.get("cache")
    if cache == "hit" or cache == "miss":
        row.cache_lookups += 1
        row.cache_hits += cache == "hit"
    if event.get("possibly_billed") is True:
        row.possibly_billed += 1
    if event.get("price_known") is False:
        row.estimated_price += 1
    row.retries += int(_number(event.get("retries")))
    row.rate_limited += int(_number(event.get("rate_limited")))
    duration = event.get("duration_s")
    if duration.__class__ is float or duration.__class__ is int:
        row.durations.append(duration)


def _number(value: Any) -> float:
    if value.__class__ is float or value.__class__ is int:
        return value
    return 0.0


def read_events(paths: Sequence[str | Path], stats: SourceStats | None = None) -> Iterator[Any]:
    """Yield the JSON objects of JSON-lines logs; lines and malformed lines go to ``stats``.

    A line is malformed when it is not a JSON object, or when an event the report reads holds
    a non-finite number or a negative cost or token count; it is skipped.
    """
    from prismq_llmtools.alerts.sources import open_log
    from prismq_llmtools.alerts.values import bad_value, checked_fields

    summed = ("retries", "rate_limited", "duration_s")
    checks = {name: checked_fields(name, summed) for name in ("llm.call", "llm.cache.hit")}

    for path in paths:
        with open_log(path) as handle:
            for number, line in enumerate(handle, 1):
                if stats is not None:
                    stats.lines += 1
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    if stats is not None:
                        stats.note(str(path), number, line, f"not JSON: {exc}")
                    continue
                if not isinstance(event, dict):
                    if stats is not None:
                        stats.note(str(path), number, line, "not a JSON object")
                    continue
                name = event.get("event")
                check = checks.get(name) if isinstance(name, str) else None
                bad = None if check is None else bad_value(event, check)
                if bad is None:
                    yield event
                elif stats is not None:
                    stats.note(str(path), number, line, bad)
