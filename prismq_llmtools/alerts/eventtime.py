"""Event time: the ``timestamp`` field of an event as seconds since the Unix epoch (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["format_event_time", "parse_event_time"]

_fromisoformat = datetime.fromisoformat


def parse_event_time(value: Any) -> float | None:
    """Return the epoch seconds of an ISO 8601 timestamp (or an epoch number), or ``None``.

    Text without an offset is taken as UTC, as the event schema writes UTC with a ``Z``.
    """
    if value.__class__ is str:
        try:
            moment = _fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if value.__class__ is float or value.__class__ is int:
        return float(value)
    return None


def format_event_time(seconds: float) -> str:
    """Return ``seconds`` as the schema's timestamp text, e.g. ``2026-11-24T06:40:00.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
