"""Response bodies shaped like OpenAI's: chat completions (and their chunks), Responses,
embeddings, with ``usage`` in each API's own terms."""

from __future__ import annotations

import json
import uuid
from typing import Any

from prismq_llmtools.testing.simulator.content import embedding_base64
from prismq_llmtools.testing.simulator.engine import Completion, Prepared

__all__ = [
    "chat_chunks",
    "chat_completion",
    "chat_usage",
    "dumps",
    "embeddings",
    "new_id",
    "response_object",
]

SYSTEM_FINGERPRINT = "fp_simulator"


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def new_id(prefix: str, length: int = 24) -> str:
    """An object id shaped like OpenAI's (``chatcmpl-…``, ``resp_…``)."""
    return prefix + uuid.uuid4().hex[:length]


def chat_usage(completion: Completion) -> dict[str, Any]:
    """Chat Completions ``usage``."""
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": completion.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": completion.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(prepared: Prepared, completion: Completion, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": created,
        "model": prepared.model,
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": reason,
            }
            for index, (text, reason) in enumerate(
                zip(completion.texts, completion.finish_reasons, strict=True)
            )
        ],
        "usage": chat_usage(completion),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _pieces(text: str) -> list[str]:
    """The text in word-sized deltas, each word with its leading space (as tokens stream)."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])] if text else []


def chat_chunks(
    prepared: Prepared,
    completion: Completion,
    created: int,
    *,
    finish: bool = True,
) -> list[tuple[dict[str, Any], int]]:
    """The ``chat.completion.chunk`` objects of a stream, each with its token count.

    The last content chunk of each choice carries its finish_reason (none when ``finish`` is
    False); with ``stream_options.include_usage`` a final chunk with empty choices carries
    the usage, and every other chunk has ``"usage": null``, as OpenAI sends them.
    """
    options = prepared.body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    base = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": prepared.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(index: int, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        out = {**base, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return out

    chunks: list[tuple[dict[str, Any], int]] = []
    for index, (text, reason) in enumerate(
        zip(completion.texts, completion.finish_reasons, strict=True)
    ):
        chunks.append(
            (chunk(index, {"role": "assistant", "content": "", "refusal": None}, None), 0)
        )
        pieces = _pieces(text)
        final = reason if finish else None
        if not pieces:
            chunks.append((chunk(index, {}, final), 0))
        for number, piece in enumerate(pieces, start=1):
            last = number == len(pieces)
            chunks.append((chunk(index, {"content": piece}, final if last else None), 1))
    if include_usage and finish:
        chunks.append(({**base, "choices": [], "usage": chat_usage(completion)}, 0))
    return chunks


def response_object(prepared: Prepared, completion: Completion, created: int) -> dict[str, Any]:
    """A Responses API ``response`` object."""
    text = completion.texts[0]
    incomplete = completion.finish_reasons[0] == "length"
    status = "incomplete" if incomplete else "completed"
    output: list[dict[str, Any]] = []
    if completion.reasoning_tokens:
        output.append({"id": new_id("rs_"), "type": "reasoning", "summary": []})
    output.append(
        {
            "id": new_id("msg_"),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    )
    body = prepared.body
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": prepared.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": completion.prompt_tokens,
            "input_tokens_details": {"cached_tokens": completion.cached_tokens},
            "output_tokens": completion.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": completion.reasoning_tokens},
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
        "metadata": body.get("metadata") or {},
    }


def response_events(
    prepared: Prepared,
    completion: Completion,
    created: int,
    *,
    finish: bool = True,
) -> list[tuple[dict[str, Any], int]]:
    """The server-sent events of a streamed Responses API call, each with its token count.

    ``response.created``, the message item and its text part opened, one
    ``response.output_text.delta`` per word, the part and item closed, then
    ``response.completed`` (``response.incomplete`` when the cap cut the text) carrying the
    whole response with its usage; none of that last event when ``finish`` is False.
    """
    final = response_object(prepared, completion, created)
    message = final["output"][-1]
    item_id, index = message["id"], len(final["output"]) - 1
    text = message["content"][0]["text"]
    opening = {
        **final,
        "status": "in_progress",
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }
    events: list[tuple[dict[str, Any], int]] = []

    def event(kind: str, tokens: int = 0, **fields: Any) -> None:
        events.append(({"type": kind, "sequence_number": len(events), **fields}, tokens))

    event("response.created", response=opening)
    event("response.in_progress", response=opening)
    for number, item in enumerate(final["output"][:-1]):  # reasoning, before the message
        event("response.output_item.added", output_index=number, item=item)
        event("response.output_item.done", output_index=number, item=item)
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    opened = {**message, "status": "in_progress", "content": []}
    event("response.output_item.added", output_index=index, item=opened)
    where = {"item_id": item_id, "output_index": index, "content_index": 0}
    event("response.content_part.added", **where, part=part)
    for piece in _pieces(text):
        event("response.output_text.delta", 1, **where, delta=piece, logprobs=[])
    if not finish:
        return events
    event("response.output_text.done", **where, text=text, logprobs=[])
    event("response.content_part.done", **where, part={**part, "text": text})
    event("response.output_item.done", output_index=index, item=message)
    event(f"response.{final['status']}", response=final)
    return events


def embeddings(prepared: Prepared, completion: Completion) -> dict[str, Any]:
    """A ``list`` of ``embedding`` objects in the requested encoding format."""
    as_base64 = prepared.body.get("encoding_format") == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_base64(vector) if as_base64 else vector,
            }
            for index, vector in enumerate(completion.vectors)
        ],
        "model": prepared.model,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "total_tokens": completion.prompt_tokens,
        },
    }
