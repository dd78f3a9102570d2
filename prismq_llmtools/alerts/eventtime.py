"""Event time: the ``timestamp`` field of an event as seconds since the Unix epoch (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prismq_llmtools import _state

_seconds: _state.Memo[str, float] = _state.Memo("event seconds")
"""Epoch seconds of an event time's ``YYYY-MM-DDTHH:MM:SS``."""

__all__ = ["format_event_time", "parse_event_time", "second_of"]

_fromisoformat = datetime.fromisoformat


def parse_event_time(value: Any) -> float | None:
    """Return the epoch seconds of an ISO 8601 timestamp (or an epoch number), or ``None``.

    Text without an offset is taken as UTC, as the event schema writes UTC with a ``Z``.
    """
    if value.__class__ is str:
        try:
            if len(value) > 20 and value[19] == "." and value[-1] == "Z":
                return second_of(value[:19]) + float(value[19:-1])
            moment = _fromisoformat(value)
        except (ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if value.__class__ is float or value.__class__ is int:
        return float(value)
    return None


def second_of(head: str) -> float:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` (UTC), cached: events share their second.

    The schema's timestamps are read as this plus the fraction, by every path alike, so that
    live and replayed events get bit-identical times.
    """
    seconds = _seconds.get(head)
    if seconds is None:
        if len(_seconds) > 4096:
            _seconds.clear()
        seconds = _seconds[head] = _fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return seconds


def format_event_time(seconds: float) -> str:
    """Return ``seconds`` as the schema's timestamp text, e.g. ``2026-11-24T06:40:00.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
