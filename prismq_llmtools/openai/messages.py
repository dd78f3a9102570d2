"""Prompt tokens of chat-completions ``messages`` and Responses ``input``, with format overhead.

Published rules (cookbook "How to count tokens with tiktoken"): every message costs
``per_message`` tokens plus the tokens of each of its string fields (role, content, name),
a name adds ``per_name``, and the reply is primed with ``reply_priming`` tokens. The rules
for fields the cookbook does not cover (content parts, tool calls, Responses items) are our
own and are listed in ``docs/counting.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai import images, tools_format
from prismq_llmtools.openai.models import ChatFormat
from prismq_llmtools.openai.textcount import TextCount

__all__ = ["count_chat", "count_content", "count_responses"]

# Per tool call in assistant history: framing around the name and the arguments (estimate).
TOOL_CALL_OVERHEAD = 3
# Message keys that are routing data, not text the model reads.
_UNCOUNTED_KEYS = frozenset({"tool_call_id", "id", "type", "status", "audio", "annotations"})


def count_chat(body: Mapping[str, Any], fmt: ChatFormat, count: TextCount) -> int:
    """Prompt tokens of a chat-completions body: messages, tools, functions and choices."""
    messages = body.get("messages")
    if type(messages) is not list and (  # a list is a Sequence: the usual case, quickly
        not isinstance(messages, Sequence) or isinstance(messages, str)
    ):
        raise RequestFormatError("messages must be a list of message objects")
    total = fmt.reply_priming
    for message in messages:
        total += count_message(message, fmt, count)
    return total + tools_format.count_tool_fields(body, fmt, count)


def count_message(message: object, fmt: ChatFormat, count: TextCount) -> int:
    """One chat message: framing, string fields, content parts, names and tool calls."""
    if type(message) is not dict and not isinstance(message, Mapping):
        raise RequestFormatError("each message must be an object")
    total = fmt.per_message
    for key, value in message.items():
        if value is None or key in _UNCOUNTED_KEYS:
            continue
        if key == "content":
            total += count_content(value, fmt, count)
        elif key == "name":
            total += count(_text(value, key)) + fmt.per_name
        elif key == "tool_calls":
            total += _count_tool_calls(value, count)
        elif key == "function_call":
            total += _count_call(value, count)
        elif isinstance(value, str):
            total += count(value)
    return total


def count_content(content: object, fmt: ChatFormat, count: TextCount) -> int:
    """A message's content: a string, or a list of text, image, refusal and file parts."""
    if isinstance(content, str):
        return count(content)
    if not isinstance(content, Sequence):
        raise RequestFormatError("message content must be a string or a list of parts")
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count(part)
            continue
        if not isinstance(part, Mapping):
            raise RequestFormatError("content parts must be objects")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            total += count(_text(part.get("text"), "text"))
        elif kind == "refusal":
            total += count(_text(part.get("refusal"), "refusal"))
        elif kind in ("image_url", "input_image"):
            total += images.count_image_part(part, fmt.image)
        # input_audio, file and input_file parts are billed as audio or file tokens
        # that tiktoken cannot see; they add nothing here (see docs/counting.md).
    return total


def count_responses(body: Mapping[str, Any], fmt: ChatFormat, count: TextCount) -> int:
    """Prompt tokens of a Responses body: ``instructions`` and ``input`` items, and tools.

    ``instructions`` counts as a leading developer message and a string ``input`` as one
    user message, framed like chat messages.
    """
    total = fmt.reply_priming
    instructions = body.get("instructions")
    if instructions is not None:
        total += fmt.per_message + count("developer") + count(_text(instructions, "instructions"))
    items = body.get("input")
    if isinstance(items, str):
        total += fmt.per_message + count("user") + count(items)
    elif isinstance(items, Sequence):
        for item in items:
            total += _count_response_item(item, fmt, count)
    elif items is not None:
        raise RequestFormatError("input must be a string or a list of items")
    return total + tools_format.count_tool_fields(body, fmt, count)


def _count_response_item(item: object, fmt: ChatFormat, count: TextCount) -> int:
    if not isinstance(item, Mapping):
        raise RequestFormatError("each input item must be an object")
    kind = item.get("type", "message")
    if kind == "message" or (kind is None and "role" in item):
        return (
            fmt.per_message
            + count(_text(item.get("role", "user"), "role"))
            + (count_content(item.get("content") or "", fmt, count))
        )
    if kind in ("function_call", "custom_tool_call"):
        return fmt.per_message + _count_call(item, count)
    if kind in ("function_call_output", "custom_tool_call_output"):
        return fmt.per_message + count_content(item.get("output") or "", fmt, count)
    if kind == "reasoning":
        # Earlier reasoning passed back is not billed as input text beyond its summary.
        summary = item.get("summary") or ()
        if not isinstance(summary, Sequence) or not all(isinstance(p, Mapping) for p in summary):
            raise RequestFormatError("a reasoning item's summary must be a list of objects")
        return sum(count(_text(part.get("text"), "text")) for part in summary)
    # item_reference and other server-side items carry no text we can see.
    return 0


def _count_tool_calls(calls: object, count: TextCount) -> int:
    if not isinstance(calls, Sequence):
        raise RequestFormatError("tool_calls must be a list")
    total = 0
    for call in calls:
        if not isinstance(call, Mapping):
            raise RequestFormatError("each tool call must be an object")
        function = call.get("function") or call.get("custom") or {}
        total += _count_call(function, count)
    return total


def _count_call(call: object, count: TextCount) -> int:
    """A function call the assistant made: its name and its arguments, plus framing."""
    if not isinstance(call, Mapping):
        raise RequestFormatError("a function call must be an object")
    name = call.get("name") or ""
    arguments = call.get("arguments", call.get("input")) or ""
    return TOOL_CALL_OVERHEAD + count(_text(name, "name")) + count(_text(arguments, "arguments"))


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RequestFormatError(f"{field} must be a string, got {type(value).__name__}")
    return value
