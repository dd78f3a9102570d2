"""The alert value object that the engine hands to its actions."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prismq_llmtools.alerts.eventtime import format_event_time

__all__ = ["FIRED", "RESOLVED", "Alert", "render_message"]

FIRED = "alert.fired"
RESOLVED = "alert.resolved"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One firing (or resolution) of a rule for one group, at event time ``at``."""

    rule: str
    state: Literal["fired", "resolved"]
    severity: str
    value: float | None
    threshold: float | None
    group: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    at: float = 0.0
    repeat: bool = False

    @property
    def event(self) -> str:
        """The event name: ``alert.fired`` or ``alert.resolved``."""
        return FIRED if self.state == "fired" else RESOLVED

    def to_event(self) -> dict[str, Any]:
        """The alert as event fields (schema: docs/events.md); unknown values omitted."""
        fields: dict[str, Any] = {
            "event": self.event,
            "rule": self.rule,
            "severity": self.severity,
            "value": _finite(self.value),
            "threshold": _finite(self.threshold),
            "group": {k: _finite(v) for k, v in self.group.items()},
            "labels": dict(self.labels),
            "message": self.message,
            "evaluated_at": format_event_time(self.at),
        }
        if self.repeat:
            fields["repeat"] = True
        return {key: value for key, value in fields.items() if value is not None}


def _finite(value: Any) -> Any:
    """``value``, or ``None`` for a non-finite float: the event is always valid JSON."""
    if value.__class__ is float and not math.isfinite(value):
        return None
    return value


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_message(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template`` from ``values``; unknown names stay as written, bad formats fall back."""
    try:
        return string.Formatter().vformat(template, (), _Lenient(values))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return template
