"""The one redaction every error message and every event field passes through.

It replaces, wherever they appear in a text:

- OpenAI API keys, ``sk-...`` and ``sk-proj-...``;
- bearer tokens, ``Bearer ...``, with or without an ``Authorization`` label;
- the value of anything labelled as a key or an authorization (``api_key=...``,
  ``"api-key": "..."``, ``Authorization: Basic ...``);
- organization and project ids, ``org-...`` and ``proj_...``;
- unlabelled 32-hex-digit keys (Azure OpenAI's style).

Servers and proxies echo request headers back in error bodies, so an error text of the
server's is as likely to hold a key as anything of ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from numbers import Number

__all__ = ["REDACTED", "redact", "redact_value"]

REDACTED = "[REDACTED]"

_SECRET = re.compile(
    r"(?P<label>(?:api[_-]?key|authorization)['\"]?\s*[:=]\s*['\"]?"
    r"(?:(?:Bearer|Basic|Token)\s+)?)[^\s'\",}]{4,}"
    r"|\bBearer\s+[A-Za-z0-9._~+/\-]{8,}=*"
    # a key after anything but a letter or digit, and a key-length one glued to anything
    r"|(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{32,}"
    r"|(?<![A-Za-z0-9])org-[A-Za-z0-9]{8,}"
    r"|(?<![A-Za-z0-9])proj_[A-Za-z0-9]{8,}"
    r"|(?<![0-9A-Za-z_\-])[0-9A-Fa-f]{32}(?![0-9A-Za-z_\-])",
    re.IGNORECASE,
)


def _sub(match: re.Match[str]) -> str:
    label = match.group("label")
    return f"{label}{REDACTED}" if label else REDACTED


def redact(text: str) -> str:
    """Return ``text`` with every secret the module lists replaced by ``[REDACTED]``."""
    return _SECRET.sub(_sub, text)


def redact_value(value: object) -> object:
    """``value`` with its texts redacted: strings, and the strings inside mappings, lists and
    tuples; numbers, booleans and ``None`` as they are; any other object as its redacted
    ``repr`` (what a log line would show of it)."""
    if isinstance(value, str):
        return _SECRET.sub(_sub, value) if len(value) >= 11 else value  # shorter than any
    if value is None or isinstance(value, Number):  # Decimal included: rendered as a number
        return value
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return redact(repr(value))
