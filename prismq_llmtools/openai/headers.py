"""OpenAI's rate-limit response headers, parsed into :class:`RateHeaders`, and the server's
requested wait (``retry-after-ms``, ``Retry-After``), within bounds."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from prismq_llmtools.call import RateHeaders

__all__ = [
    "RETRY_AFTER_CAP_S",
    "RETRY_AFTER_MAX_S",
    "RetryAfter",
    "parse_duration",
    "parse_rate_headers",
    "read_retry_after",
    "retry_after_s",
]

RETRY_AFTER_CAP_S = 60.0
"""The default ``retry_after_cap_s`` of ``@retried`` and ``@rate_limited``: the longest
server-requested wait honoured. A longer one makes the call fail at once with the server's
error (no retry, no pause of the key)."""

RETRY_AFTER_MAX_S = 86_400.0
"""The longest requested wait that can be meant: OpenAI's longest limit window is a day.
A longer one (``1e300``) is as unusable as ``inf``, ``nan``, ``-5`` or text that is no
number: it is ignored, whatever the cap."""

Problem = Literal["not_a_number", "not_finite", "negative", "absurd", "above_cap"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in an OpenAI duration such as ``6m0s``, ``1.5s``, ``20ms`` or ``1h2m3s``."""
    text = text.strip()
    if not text:
        return None
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position != len(text):
        try:
            seconds = float(text)  # a bare number of seconds
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return total


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _duration(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    return parse_duration(value) if value is not None else None


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """The ``x-ratelimit-*`` headers of a response, or ``None`` when it has none."""
    if headers.get("x-ratelimit-limit-requests") is None and (
        headers.get("x-ratelimit-remaining-tokens") is None
    ):
        return None
    return RateHeaders(
        limit_requests=_int(headers, "x-ratelimit-limit-requests"),
        limit_tokens=_int(headers, "x-ratelimit-limit-tokens"),
        remaining_requests=_int(headers, "x-ratelimit-remaining-requests"),
        remaining_tokens=_int(headers, "x-ratelimit-remaining-tokens"),
        reset_requests_s=_duration(headers, "x-ratelimit-reset-requests"),
        reset_tokens_s=_duration(headers, "x-ratelimit-reset-tokens"),
    )


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """A requested wait as the server sent it, and whether it can be used.

    ``seconds`` is the wait (``None`` when unusable); ``problem`` says why it is not usable:
    ``not_a_number`` (e.g. an HTTP date, or garbage), ``not_finite``, ``negative`` or
    ``absurd`` (beyond :data:`RETRY_AFTER_MAX_S`); a caller may also find it ``above_cap``
    (a usable wait, longer than it honours). ``text`` is the header as sent, with its name
    (the value cut at 40 characters).
    """

    text: str
    seconds: float | None
    problem: Problem | None = None


def _read(name: str, value: str, scale: float) -> RetryAfter:
    text = f"{name}: {value[:40]}"
    try:
        seconds = float(value) * scale
    except ValueError:
        return RetryAfter(text, None, "not_a_number")
    if not math.isfinite(seconds):
        return RetryAfter(text, None, "not_finite")
    if seconds < 0:
        return RetryAfter(text, None, "negative")
    if seconds > RETRY_AFTER_MAX_S:
        return RetryAfter(text, None, "absurd")
    return RetryAfter(text, seconds)


def read_retry_after(headers: Mapping[str, str]) -> RetryAfter | None:
    """The server's requested wait: ``retry-after-ms`` first, then ``Retry-After`` seconds;
    the first usable one, else the first one sent (unusable), else ``None`` (none sent)."""
    found: RetryAfter | None = None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            read = _read(name, value, scale)
            if read.seconds is not None:
                return read
            found = found or read
    return found


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait in seconds, when it sent a usable one (see
    :func:`read_retry_after`)."""
    read = read_retry_after(headers)
    return read.seconds if read is not None else None
