"""How OpenAI charges a request against its token rate limit when admitting it.

OpenAI documents that admission estimates the prompt from its character count rather than
by tokenizing it: about four characters per token, plus the completion cap. That estimate
and tiktoken's exact count differ, in either direction, so a limiter that never wants a
429 charges the larger of the two (see ``@rate_limited``'s ``count`` setting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["character_estimate", "text_characters"]

_CHARS_PER_TOKEN = 4


def text_characters(value: Any) -> int:
    """Characters of a message content, a content-part list, or an input item list."""
    if isinstance(value, str):  # the usual content: before the abstract-base-class checks
        return len(value)
    if value is None:
        return 0
    if isinstance(value, Mapping):
        return text_characters(value.get("text", value.get("content")))
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        total = 0
        for part in value:
            total += _CHARS_PER_TOKEN if isinstance(part, int) else text_characters(part)
        return total
    return 0


def character_estimate(body: Mapping[str, Any], strings: Iterable[str] = ()) -> int:
    """``ceil(characters / 4)`` of a request's prompt: chat messages' contents, Responses
    ``instructions`` and ``input``, embeddings ``input``, completions ``prompt``; for a
    function that builds its request from plain text, that text (``strings``)."""
    chars = 0
    messages = body.get("messages")
    if type(messages) is list or isinstance(messages, Sequence):
        for message in messages:
            if type(message) is dict or isinstance(message, Mapping):
                chars += text_characters(message.get("content"))
    for field in ("instructions", "input", "prompt"):
        value = body.get(field)
        if value is not None:
            chars += text_characters(value)
    if not chars:
        chars = sum(len(s) for s in strings)
    return math.ceil(chars / _CHARS_PER_TOKEN)
