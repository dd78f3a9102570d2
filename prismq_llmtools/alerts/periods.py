"""Calendar periods (UTC) for budget forecasts: the hour, day or month an instant falls in."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["period_of"]


def period_of(seconds: float, period: str) -> tuple[int, float]:
    """Return ``(period id, end of that period in epoch seconds)`` for ``period``.

    ``period`` is ``hour``, ``day`` or ``month``; ids increase with time.
    """
    if period == "hour":
        index = int(seconds // 3600)
        return index, (index + 1) * 3600.0
    if period == "day":
        index = int(seconds // 86400)
        return index, (index + 1) * 86400.0
    if period == "month":
        moment = datetime.fromtimestamp(seconds, UTC)
        year, month = (moment.year, moment.month + 1) if moment.month < 12 else (moment.year + 1, 1)
        return moment.year * 12 + moment.month, datetime(year, month, 1, tzinfo=UTC).timestamp()
    raise ValueError(f"unknown period {period!r}")
