"""Prompt tokens of chat-completions ``messages`` and Responses ``input``, with format overhead.

Published rules (cookbook "How to count tokens with tiktoken"): every message costs
``per_message`` tokens plus the tokens of each of its string fields (role, content, name),
a name adds ``per_name``, and the reply is primed with ``reply_priming`` tokens. Function
definitions, function and tool results, and assistant calls follow the rendering counted in
:mod:`~prismq_llmtools.openai.tools_format`; every rule, its source and its confidence is
listed in ``docs/counting.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai import images, tools_format
from prismq_llmtools.openai.models import ChatFormat
from prismq_llmtools.openai.textcount import TextCount

__all__ = ["count_chat", "count_content", "count_responses"]

# Roles that carry the instructions the function definitions are merged into.
_SYSTEM_ROLES = frozenset({"system", "developer"})
_RESULT_ROLES = frozenset({"function", "tool"})
# Message keys that are routing data, not text the model reads.
_UNCOUNTED_KEYS = frozenset({"tool_call_id", "id", "type", "status", "audio", "annotations"})


class _Conversation:
    """What counting one message needs to know about the request and the messages before it.

    ``has_definitions``: the request has function definitions, which join the first system
    (or developer) message and give it a trailing newline; ``saw_system``: that message has
    been seen. ``call_names``: the function name of each tool call id seen so far, which
    names the tool result answering it. ``parallel_ids``: the ids of calls made several in
    one message, whose results reach the model JSON-escaped. With ``compact_calls``, the
    results of the latest such message are gathered: ``group`` holds its call ids and
    ``outputs`` the outputs received so far, counted as one message when the group ends.
    """

    __slots__ = ("call_names", "group", "has_definitions", "outputs", "parallel_ids", "saw_system")

    def __init__(self, *, has_definitions: bool) -> None:
        self.has_definitions = has_definitions
        self.saw_system = False
        self.call_names: MutableMapping[str, str] = {}
        self.parallel_ids: set[str] = set()
        self.group: frozenset[str] = frozenset()
        self.outputs: list[str] = []


def count_chat(body: Mapping[str, Any], fmt: ChatFormat, count: TextCount) -> int:
    """Prompt tokens of a chat-completions body: messages, tools, functions and choices."""
    messages = body.get("messages")
    if type(messages) is not list and (  # a list is a Sequence: the usual case, quickly
        not isinstance(messages, Sequence) or isinstance(messages, str)
    ):
        raise RequestFormatError("messages must be a list of message objects")
    definitions = tools_format.function_definitions(body)
    state = _Conversation(has_definitions=bool(definitions))
    total = fmt.reply_priming
    for message in messages:
        total += count_message(message, fmt, count, state)
    total += _close_group(state, fmt, count)
    return total + _tool_fields(body, definitions, state, fmt, count)


def _tool_fields(
    body: Mapping[str, Any],
    definitions: Sequence[Mapping[str, Any]],
    state: _Conversation,
    fmt: ChatFormat,
    count: TextCount,
) -> int:
    """Definitions (merged into a system message when there is one) and the choice fields."""
    total = tools_format.count_choice(body.get("tool_choice"), count)
    total += tools_format.count_choice(body.get("function_call"), count)
    if definitions:
        total += tools_format.count_definitions(
            definitions, count, bare_block_saving=fmt.bare_block_saving
        )
        if state.saw_system:
            total += tools_format.SYSTEM_WITH_DEFINITIONS
        total += fmt.function_tools
    return total


def count_message(message: object, fmt: ChatFormat, count: TextCount, state: _Conversation) -> int:
    """One chat message: framing, string fields, content parts, names and calls."""
    if type(message) is not dict and not isinstance(message, Mapping):
        raise RequestFormatError("each message must be an object")
    role = message.get("role")
    if not isinstance(role, str):
        role = None  # a malformed role counts nothing, like any non-text field
    closed = 0
    if state.group:
        if role == "tool" and str(message.get("tool_call_id")) in state.group:
            return _gather_output(message.get("content"), fmt, count, state)
        closed = _close_group(state, fmt, count)
    total = fmt.per_message
    escape = False
    if role in _RESULT_ROLES:
        # Written as a message from the function (named), not from a role: framed by
        # ``result_framing`` (cl100k: 2 fewer than other messages; o200k: 1 more).
        total = fmt.result_framing
        if role == "tool":
            call_id = str(message.get("tool_call_id"))
            escape = call_id in state.parallel_ids
            if message.get("name") is None:
                name = state.call_names.get(call_id)
                if name is not None:
                    total += count(name) + fmt.per_name
    pad = False
    if role in _SYSTEM_ROLES and not state.saw_system:
        state.saw_system = True
        pad = state.has_definitions
    for key, value in message.items():
        if value is None or key in _UNCOUNTED_KEYS:
            continue
        if key == "content":
            if pad:
                value = _padded(value)
            elif escape:
                value = _escaped(value)
            total += count_content(value, fmt, count)
        elif key == "name":
            total += count(_text(value, key)) + fmt.per_name
        elif key == "tool_calls":
            _remember_calls(value, state, gather=fmt.compact_calls)
            total += tools_format.count_tool_calls(value, count, compact=fmt.compact_calls)
        elif key == "function_call":
            total += tools_format.count_call(value, count, compact=fmt.compact_calls)
        elif isinstance(value, str):
            total += count(value)
    if pad and message.get("content") is None:
        total += count("\n")
    return closed + total


def _gather_output(content: object, fmt: ChatFormat, count: TextCount, state: _Conversation) -> int:
    """Keep the text of one result of the current parallel group for its joint message;
    return the tokens of what is not text (images), which the joint message does not hold."""
    if content is None or isinstance(content, str):
        state.outputs.append(content or "")
        return 0
    if not isinstance(content, Sequence):
        raise RequestFormatError("message content must be a string or a list of parts")
    texts: list[str] = []
    others: list[object] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            others.append(part)
    state.outputs.append("".join(texts))
    return count_content(others, fmt, count) if others else 0


def _close_group(state: _Conversation, fmt: ChatFormat, count: TextCount) -> int:
    """The joint message of the current parallel group's results (nothing if none came)."""
    outputs = state.outputs
    state.group = frozenset()
    state.outputs = []
    if not outputs:
        return 0
    framing = fmt.result_framing + fmt.per_name
    return tools_format.count_parallel_results(outputs, count, framing=framing)


def _padded(content: object) -> object:
    """Content with the trailing newline the first system message gets beside definitions."""
    if isinstance(content, str):
        return content + "\n"
    if isinstance(content, Sequence):
        parts = list(content)
        for index in range(len(parts) - 1, -1, -1):
            part = parts[index]
            if isinstance(part, str):
                parts[index] = part + "\n"
                return parts
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts[index] = {**part, "text": part["text"] + "\n"}
                return parts
        return [*parts, "\n"]
    return content


def _escaped(content: object) -> object:
    """A parallel call's result as the model reads it: JSON-escaped, non-ASCII as ``\\uXXXX``."""
    if isinstance(content, str):
        return json.dumps(content)[1:-1]
    if isinstance(content, Sequence):
        return [
            {**part, "text": json.dumps(part["text"])[1:-1]}
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def _remember_calls(calls: object, state: _Conversation, *, gather: bool) -> None:
    """Note each call's name by id; with ``gather``, the ids of several calls in one message
    become the group whose results are counted together."""
    if not isinstance(calls, Sequence):
        return
    parallel = len(calls) > 1
    group: set[str] = set()
    for call in calls:
        if isinstance(call, Mapping) and call.get("id") is not None:
            call_id = str(call["id"])
            if parallel:
                state.parallel_ids.add(call_id)
                group.add(call_id)
            function = call.get("function") or call.get("custom")
            name = function.get("name") if isinstance(function, Mapping) else None
            if isinstance(name, str):
                state.call_names[call_id] = name
    if gather and group:
        state.group = frozenset(group)


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

    Each part counts as its chat equivalent: ``instructions`` as a leading developer
    message, a string ``input`` as one user message, ``function_call`` items as assistant
    function calls and ``function_call_output`` items as tool results.
    """
    definitions = tools_format.function_definitions(body)
    state = _Conversation(has_definitions=bool(definitions))
    total = fmt.reply_priming
    instructions = body.get("instructions")
    if instructions is not None:
        message = {"role": "developer", "content": _text(instructions, "instructions")}
        total += count_message(message, fmt, count, state)
    items = body.get("input")
    if isinstance(items, str):
        total += count_message({"role": "user", "content": items}, fmt, count, state)
    elif isinstance(items, Sequence):
        for item in items:
            total += _count_response_item(item, fmt, count, state)
    elif items is not None:
        raise RequestFormatError("input must be a string or a list of items")
    total += _close_group(state, fmt, count)
    return total + _tool_fields(body, definitions, state, fmt, count)


def _count_response_item(
    item: object, fmt: ChatFormat, count: TextCount, state: _Conversation
) -> int:
    if not isinstance(item, Mapping):
        raise RequestFormatError("each input item must be an object")
    kind = item.get("type", "message")
    if kind == "message" or (kind is None and "role" in item):
        role = _text(item.get("role", "user"), "role")
        message = {"role": role, "content": item.get("content") or ""}
        return count_message(message, fmt, count, state)
    if kind in ("function_call", "custom_tool_call"):
        name = item.get("name")
        if isinstance(name, str) and item.get("call_id") is not None:
            state.call_names[str(item["call_id"])] = name
        call = tools_format.count_call(item, count, compact=fmt.compact_calls)
        return fmt.per_message + count("assistant") + call
    if kind in ("function_call_output", "custom_tool_call_output"):
        message = {
            "role": "tool",
            "tool_call_id": item.get("call_id"),
            "content": item.get("output") or "",
        }
        return count_message(message, fmt, count, state)
    if kind == "reasoning":
        # Earlier reasoning passed back is not billed as input text beyond its summary.
        summary = item.get("summary") or ()
        if not isinstance(summary, Sequence) or not all(isinstance(p, Mapping) for p in summary):
            raise RequestFormatError("a reasoning item's summary must be a list of objects")
        return sum(count(_text(part.get("text"), "text")) for part in summary)
    # item_reference and other server-side items carry no text we can see.
    return 0


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RequestFormatError(f"{field} must be a string, got {type(value).__name__}")
    return value
