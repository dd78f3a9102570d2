"""Reading usage from OpenAI response objects (chat, responses, embeddings, completions).

Duck-typed on purpose: it never imports ``openai``, so it works on any object of the same
shape (the official models, their ``with_raw_response`` wrappers, or plain dicts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prismq_llmtools.usage import Usage

__all__ = ["ResponseFacts", "facts_from_response", "parse_usage", "service_tier"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFacts:
    """What a response says about itself."""

    usage: Usage | None
    model: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    service_tier: str | None = None
    headers: Any = None


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(usage: Any) -> Usage | None:
    """Map any of OpenAI's usage shapes onto :class:`Usage`, or ``None`` if absent."""
    if usage is None:
        return None
    if _get(usage, "input_tokens") is not None:  # Responses API
        input_tokens = _int(_get(usage, "input_tokens"))
        output_tokens = _int(_get(usage, "output_tokens"))
        input_details = _get(usage, "input_tokens_details")
        output_details = _get(usage, "output_tokens_details")
    else:  # chat, completions, embeddings
        input_tokens = _int(_get(usage, "prompt_tokens"))
        output_tokens = _int(_get(usage, "completion_tokens"))
        input_details = _get(usage, "prompt_tokens_details")
        output_details = _get(usage, "completion_tokens_details")
    cached = _int(_get(input_details, "cached_tokens")) if input_details is not None else 0
    reasoning = _int(_get(output_details, "reasoning_tokens")) if output_details is not None else 0
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=min(cached, input_tokens),
        reasoning_tokens=min(reasoning, output_tokens),
    )


def service_tier(obj: Any) -> str | None:
    """The ``service_tier`` a response (or stream chunk) says it was served at, if any."""
    tier = _get(obj, "service_tier")
    return tier if isinstance(tier, str) else None


def _is_raw_response(obj: Any) -> bool:
    return hasattr(obj, "http_response") and callable(getattr(obj, "parse", None))


def facts_from_response(obj: Any) -> ResponseFacts | None:
    """The usage, model and ids in a response object, or ``None`` if ``obj`` is not one."""
    headers = None
    request_id = None
    if _is_raw_response(obj):
        headers = obj.headers
        request_id = headers.get("x-request-id")
        if getattr(obj, "_is_sse_stream", False) or getattr(obj, "_stream", False):
            return ResponseFacts(usage=None, request_id=request_id, headers=headers)
        obj = obj.parse()
    usage_obj = _get(obj, "usage")
    if usage_obj is None:
        if headers is None:
            return None
        return ResponseFacts(usage=None, request_id=request_id, headers=headers)
    model = _get(obj, "model")
    response_id = _get(obj, "id")
    return ResponseFacts(
        usage=parse_usage(usage_obj),
        model=model if isinstance(model, str) else None,
        response_id=response_id if isinstance(response_id, str) else None,
        request_id=request_id or getattr(obj, "_request_id", None),
        service_tier=service_tier(obj),
        headers=headers,
    )
