"""Finding the OpenAI request described by a function's arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prismq_llmtools.call import Endpoint, Request
from prismq_llmtools.errors import RequestFormatError

__all__ = [
    "API_PARAMETERS",
    "as_asked",
    "counted_endpoint",
    "endpoint_of",
    "request_from_arguments",
    "request_from_body",
]

# Parameters of OpenAI's chat, responses, embeddings and completions endpoints that shape the
# answer. Transport settings (api_key, timeout, extra_headers, ...) are deliberately absent.
API_PARAMETERS = frozenset(
    {
        "model",
        "messages",
        "input",
        "prompt",
        "instructions",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "response_format",
        "text",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "service_tier",
        "reasoning_effort",
        "reasoning",
        "verbosity",
        "modalities",
        "audio",
        "prediction",
        "stream",
        "stream_options",
        "dimensions",
        "encoding_format",
        "suffix",
        "best_of",
        "echo",
        "previous_response_id",
        "include",
        "truncation",
        "web_search_options",
    }
)


_PROMPT_FIELDS = frozenset({"messages", "input", "prompt"})


def endpoint_of(body: Mapping[str, Any]) -> Endpoint | None:
    """The endpoint a request body is meant for, inferred from its fields."""
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        model = str(body.get("model") or "")
        return "embeddings" if "embedding" in model else "responses"
    return None


def counted_endpoint(body: Mapping[str, Any], endpoint: Endpoint | None) -> Endpoint:
    """The endpoint a tokenizer counts ``body`` for: ``endpoint``, else inferred from it.

    Raises:
        RequestFormatError: The body names no model, or none of messages, input or prompt.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestFormatError("the request body has no model")
    chosen = endpoint or endpoint_of(body)
    if chosen is None:
        raise RequestFormatError("the request body has none of messages, input or prompt")
    return chosen


def request_from_body(body: Mapping[str, Any], endpoint: Endpoint | None = None) -> Request:
    """A :class:`Request` for a JSON body as sent to the API (a copy of it: see
    :func:`as_asked`)."""
    return _request({k: _owned(v) for k, v in body.items()}, endpoint)


def as_asked(request: Request) -> Request:
    """``request`` with copies of its body's lists and dicts, at any depth.

    A request found in a function's arguments shares them with the caller: a function that
    appends its answer to the messages it was given, or edits them, would change what is
    counted for it afterwards. Kept as asked, it stays what was asked.
    """
    body = {k: v if type(v) in _LEAVES else _owned(v) for k, v in request.body.items()}
    return dataclasses.replace(request, body=body)


_LEAVES = frozenset({str, int, float, bool, type(None)})
_all_leaves = _LEAVES.issuperset


def _owned(value: Any) -> Any:
    """``value`` with its lists and dicts copied, at any depth (the rest is shared)."""
    tp = type(value)
    if tp is list:  # messages: a dict of plain values (most messages) copied at C speed
        return [
            v.copy()
            if type(v) is dict and _all_leaves(map(type, v.values()))
            else v
            if type(v) in _LEAVES
            else _owned(v)
            for v in value
        ]
    if tp is dict:
        return {k: v if type(v) in _LEAVES else _owned(v) for k, v in value.items()}
    if tp is tuple:
        return tuple([_owned(v) for v in value])
    return value


def _request(body: dict[str, Any], endpoint: Endpoint | None) -> Request:
    """A Request owning ``body`` (a dict nothing else holds)."""
    model = body.get("model")
    return Request(
        model=str(model) if model is not None else None,
        endpoint=endpoint or endpoint_of(body),
        body=body,
    )


def request_from_arguments(
    bound: Mapping[str, Any],
    *,
    default_model: str | None = None,
    endpoint: Endpoint | None = None,
) -> Request | None:
    """The request the bound arguments describe, or one carrying only the default model.

    ``endpoint`` is the site's ``endpoint`` setting: the API the function calls, which the
    arguments alone may not tell (an ``input`` is embeddings or Responses input).
    Returns ``None`` when neither the arguments nor the site name a model.
    """
    # The arguments' own values: kept as asked (as_asked) before the function runs, where
    # something will still read them afterwards.
    body = {k: v for k, v in bound.items() if k in API_PARAMETERS and v is not None}
    if "model" not in body:
        if default_model is None and not body:
            return None
        if default_model is not None:
            body["model"] = default_model
    described = endpoint if _PROMPT_FIELDS & body.keys() else None  # else: plain-text args
    return _request(body, described)  # a new dict: no copy
