"""OpenAI's rate-limit response headers, parsed into :class:`RateHeaders`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from prismq_llmtools.call import RateHeaders

__all__ = ["parse_duration", "parse_rate_headers", "retry_after_s"]

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
            return float(text)  # a bare number of seconds
        except ValueError:
            return None
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


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait: ``retry-after-ms`` first, then ``Retry-After`` seconds."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            return None  # an HTTP date: too rare from OpenAI to be worth parsing
    return None
