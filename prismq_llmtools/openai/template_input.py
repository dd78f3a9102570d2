"""What a chat template or a plain tokenizer reads from a request body: messages for a
Responses body, and the texts of an embeddings ``input`` or a completions ``prompt``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prismq_llmtools.call import Endpoint
from prismq_llmtools.errors import RequestFormatError

__all__ = ["count_plain_input", "plain_texts", "responses_as_messages"]


def responses_as_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Responses body's ``instructions`` and ``input`` as chat messages, for a chat template.

    Raises:
        RequestFormatError: An input item is not a message (a tool call, a file, ...).
    """
    out: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append({"role": "system", "content": instructions})
    value = body.get("input")
    if isinstance(value, str):
        out.append({"role": "user", "content": value})
        return out
    if not isinstance(value, Sequence):
        raise RequestFormatError("input must be a string or a list of messages")
    for item in value:
        if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
            raise RequestFormatError(
                "a server or hf: tokenizer counts Responses input made of messages only"
            )
        content = item["content"]
        if not isinstance(content, str):
            content = "".join(
                str(part.get("text", "")) for part in content if isinstance(part, Mapping)
            )
        out.append({"role": item["role"], "content": content})
    return out


def plain_texts(value: object, *, field: str) -> tuple[list[str], int]:
    """Embeddings ``input`` / completions ``prompt``: its texts, and its tokens given as ids."""
    if isinstance(value, str):
        return [value], 0
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise RequestFormatError(f"{field} must be a string, a list of strings or token arrays")
    if value and all(_is_token(item) for item in value):
        return [], len(value)
    texts: list[str] = []
    tokens = 0
    for item in value:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Sequence) and all(_is_token(token) for token in item):
            tokens += len(item)
        else:
            raise RequestFormatError(f"{field} items must be strings or token arrays")
    return texts, tokens


def count_plain_input(
    body: Mapping[str, Any], endpoint: Endpoint, count: Callable[[str], int]
) -> int:
    """Prompt tokens of a completions ``prompt`` or an embeddings ``input``: each text by
    ``count``, plus the tokens given as ids."""
    field = "prompt" if endpoint == "completions" else "input"
    if body.get(field) is None:
        raise RequestFormatError(f"the request body has no {field}")
    texts, given = plain_texts(body[field], field=field)
    return given + sum(count(text) for text in texts)


def _is_token(item: object) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)
