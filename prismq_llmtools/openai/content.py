"""A request's and an answer's text in the OpenTelemetry GenAI message shape (opt-in content).

``gen_ai.input.messages``, ``gen_ai.output.messages`` and ``gen_ai.system_instructions`` of the
pinned conventions (docs/events.md): a message is ``{"role": ..., "parts": [...]}``, a part
``{"type": "text", "content": ...}``, ``{"type": "tool_call", ...}`` or
``{"type": "tool_call_response", ...}``; anything else keeps its OpenAI form under its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["input_messages", "output_messages", "system_instructions"]

Message = dict[str, Any]


def input_messages(body: Mapping[str, Any]) -> list[Message] | None:
    """The chat history a request sends (chat ``messages``, Responses ``input``, ``prompt``)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return [_message(m) for m in messages if isinstance(m, Mapping)]
    given = body.get("input", body.get("prompt"))
    if isinstance(given, str):
        return [{"role": "user", "parts": [_text(given)]}]
    if isinstance(given, list):
        if all(isinstance(item, str) for item in given):
            return [{"role": "user", "parts": [_text(item) for item in given]}]
        return [_message(item) for item in given if isinstance(item, Mapping)]
    return None


def system_instructions(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The Responses API ``instructions``, given apart from the chat history."""
    instructions = body.get("instructions")
    return [_text(instructions)] if isinstance(instructions, str) and instructions else None


def output_messages(text: str, finish_reason: str | None) -> list[Message]:
    """The answer a function returned as text, as one assistant message."""
    message: Message = {"role": "assistant", "parts": [_text(text)]}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return [message]


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _message(message: Mapping[str, Any]) -> Message:
    role = message.get("role") or message.get("type") or "user"
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "result": content}
        )
    elif isinstance(content, str):
        parts.append(_text(content))
    elif isinstance(content, list):
        parts.extend(_part(part) for part in content)
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {} if isinstance(call, Mapping) else {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id") if isinstance(call, Mapping) else None,
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return {"role": str(role), "parts": parts}


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return _text(part)
    if not isinstance(part, Mapping):
        return {"type": "unknown", "content": str(part)}
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
        return _text(part["text"])
    return {**part, "type": str(kind or "unknown")}
