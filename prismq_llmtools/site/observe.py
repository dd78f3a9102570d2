"""Deciding a Call's usage: observed requests, else the returned response, else an estimate."""

from __future__ import annotations

from typing import Any

from prismq_llmtools.call import Call
from prismq_llmtools.openai.usage import facts_from_response
from prismq_llmtools.usage import Usage

__all__ = ["resolve_usage"]


def _looks_like_openai(result: Any) -> bool:
    module = type(result).__module__
    return module.startswith("openai.") or (isinstance(result, dict) and "usage" in result)


def resolve_usage(call: Call, result: Any) -> None:
    """Fill ``call.usage`` and ``call.usage_source`` from what really happened.

    Requests the server may have billed unread (:attr:`Call.unread_usage`, at their worst
    case) are added to whatever else was used, and make the usage an estimate.
    """
    if call.usage_source is not None:  # already decided (a cache hit)
        return
    for stream in call.streams:
        stream.finalize(complete=False)  # opened inside the call and abandoned unfinished
    _resolve_read(call, result)
    unread = call.unread_usage
    if unread is not None:
        call.usage = unread if call.usage is None else call.usage + unread
        call.usage_source = "estimated"


def _resolve_read(call: Call, result: Any) -> None:
    """The usage read from answers: observed requests, the returned response, or an estimate."""
    if call.observed_usage is not None:
        call.usage = call.observed_usage
        call.usage_source = "estimated" if call.usage_estimated else "observed"
        return
    if call.outcome == "ok" and _looks_like_openai(result):
        facts = facts_from_response(result)
        if facts is not None:
            call.response_model = call.response_model or facts.model
            call.response_id = call.response_id or facts.response_id
            call.request_id = call.request_id or facts.request_id
            call.service_tier = call.service_tier or facts.service_tier
            if facts.usage is not None:
                call.usage = facts.usage
                call.usage_source = "response"
                return
    if call.observed_requests or call.unread_requests:
        return
    request = call.request
    if request is None or request.model is None:
        return
    if call.outcome != "ok":
        return  # a failed request is not billed (one that may have been is charged unread)
    estimate = _estimate(call, result)
    if estimate is not None:
        call.usage = estimate
        call.usage_source = "estimated"


def _estimate(call: Call, result: Any) -> Usage | None:
    """Prompt tokens as counted before the call; output tokens counted from a text result."""
    from prismq_llmtools.site.estimate import count_output_text, ensure_estimate

    estimate = ensure_estimate(call)
    if estimate is None:
        return None
    prompt = estimate.prompt_tokens
    output = count_output_text(call, result) if call.outcome == "ok" else 0
    return Usage(input_tokens=prompt, output_tokens=output)
