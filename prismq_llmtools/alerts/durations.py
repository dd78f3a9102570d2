"""Human durations (``30s``, ``5m``, ``1h``, ``1d``, ``1h30m``) parsed to seconds."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(value: str | float, *, allow_zero: bool = False) -> float:
    """Return ``value`` in seconds: a number of seconds, or text such as ``"5m"`` or ``"1h30m"``.

    Raises:
        ValueError: the text is not a duration, or it is negative (or zero unless allowed).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not _WHOLE.fullmatch(text):
            raise ValueError(
                f"not a duration: {value!r} (use a number with a unit: ms, s, m, h, d, w; "
                "e.g. '30s', '5m', '1h30m')"
            )
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(text))
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise ValueError(f"duration must be {'>= 0' if allow_zero else '> 0'}: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Return the shortest exact text form of ``seconds`` (``3600 -> '1h'``, ``90 -> '90s'``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
