"""Helpers shared by the alert tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.alerts.engine import AlertEngine
from prismq_llmtools.alerts.rules import parse_rules


def run_rules(
    text: str,
    events: Iterable[tuple[float, Mapping[str, Any]]],
    *,
    lateness_s: float = 0.0,
    end: float | None = None,
) -> list[Alert]:
    """Feed ``(time, fields)`` pairs (``event`` defaults to ``llm.call``) and flush."""
    alerts: list[Alert] = []
    engine = AlertEngine(parse_rules(text), actions=[alerts.append], lateness_s=lateness_s)
    for moment, fields in events:
        engine.process_at(moment, {"event": "llm.call", **fields})
    if end is not None:
        engine.process_at(end, {"event": "tick"})
    engine.flush()
    return alerts


def brief(alerts: Iterable[Alert]) -> list[tuple[str, float, float | None]]:
    """``(state, time, value)`` of each alert, values rounded for comparison."""
    return [(a.state, a.at, None if a.value is None else round(a.value, 6)) for a in alerts]
