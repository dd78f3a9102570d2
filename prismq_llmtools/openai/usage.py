"""Reading usage from OpenAI response objects (chat, responses, embeddings, completions).

Duck-typed on purpose: it never imports ``openai``, so it works on any object of the same
shape (the official models, their ``with_raw_response`` wrappers, or plain dicts).

Asking a pydantic model for an attribute it lacks is slow (pydantic's ``__getattr__`` raises
an ``AttributeError`` that ``getattr`` then catches), and reading a response asks for
several (``http_response``, ``input_tokens`` on chat usage, ``_request_id``).
:func:`_absent` answers those from the model's own tables first, only where the answer is
certain; otherwise the ordinary ``getattr`` decides, so the result is always the same.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.usage import Usage

__all__ = [
    "ResponseFacts",
    "facts_from_response",
    "finish_reasons",
    "parse_usage",
    "service_tier",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFacts:
    """What a response says about itself."""

    usage: Usage | None
    model: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    service_tier: str | None = None
    headers: Any = None


_CLASS_NAMES: dict[type, frozenset[str] | None] = {}
"""Per class: the names its class attributes answer (along the MRO) when its attribute
lookup is pydantic ``BaseModel``'s, unchanged; ``None`` for any other class."""


def _pydantic_class_names(cls: type) -> frozenset[str] | None:
    names = _CLASS_NAMES.get(cls, _UNSEEN)
    return _learn_class(cls) if names is _UNSEEN else names


_UNSEEN = frozenset({"<not yet seen>"})


def _learn_class(cls: type) -> frozenset[str] | None:
    base: Any = getattr(sys.modules.get("pydantic"), "BaseModel", None)  # the model's
    names = None
    if (
        isinstance(base, type)
        and issubclass(cls, base)
        and getattr(cls, "__getattr__", None) is getattr(base, "__getattr__", None)
        and getattr(cls, "__getattribute__", None) is getattr(base, "__getattribute__", None)
    ):
        names = frozenset(name for klass in cls.__mro__ for name in klass.__dict__)
    if len(_CLASS_NAMES) >= 1024:  # classes are few; bound it anyway
        _CLASS_NAMES.clear()
    _CLASS_NAMES[cls] = names
    return names


def _attr(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)``, without pydantic's slow way of failing.

    On a pydantic model, a name that is not a class attribute is looked up as pydantic's
    ``__getattr__`` would: an instance field, then a private attribute, then an extra field.
    Anything unusual (a private attribute with a descriptor default, a model not fully
    initialised, any other class) goes through ``getattr`` itself, so the answer is the same.
    """
    cls = type(obj)
    class_names = _CLASS_NAMES.get(cls, _UNSEEN)  # _pydantic_class_names, on every read
    if class_names is _UNSEEN:
        class_names = _learn_class(cls)
    if class_names is None or name in class_names:
        return getattr(obj, name, None)
    try:
        fields = obj.__dict__
        if name in fields:
            return fields[name]
        private = cls.__private_attributes__
        if name in private:
            if hasattr(private[name], "__get__"):
                return getattr(obj, name, None)
            values = obj.__pydantic_private__
            return values.get(name) if values is not None else getattr(obj, name, None)
        extra = obj.__pydantic_extra__
    except AttributeError:  # not fully initialised: let getattr decide
        return getattr(obj, name, None)
    return extra.get(name) if extra else None


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return _attr(obj, name)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(usage: Any) -> Usage | None:
    """Map any of OpenAI's usage shapes onto :class:`Usage`, or ``None`` if absent."""
    if usage is None:
        return None
    prompt_tokens = _get(usage, "prompt_tokens")
    if prompt_tokens is None and _get(usage, "input_tokens") is not None:  # Responses API
        input_tokens = _int(_get(usage, "input_tokens"))
        output_tokens = _int(_get(usage, "output_tokens"))
        input_details = _get(usage, "input_tokens_details")
        output_details = _get(usage, "output_tokens_details")
    else:  # chat, completions, embeddings
        input_tokens = _int(prompt_tokens)
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
    return _attr(obj, "http_response") is not None and callable(getattr(obj, "parse", None))


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
        request_id=request_id or _attr(obj, "_request_id"),
        service_tier=service_tier(obj),
        headers=headers,
    )


def finish_reasons(obj: Any) -> tuple[str, ...]:
    """Why each choice of a response ended (``stop``, ``length``...), or the final status
    of a Responses API answer; empty when the object says nothing."""
    if _is_raw_response(obj):
        if getattr(obj, "_is_sse_stream", False) or getattr(obj, "_stream", False):
            return ()
        obj = obj.parse()
    choices = _get(obj, "choices")
    if isinstance(choices, list):
        found = (_get(choice, "finish_reason") for choice in choices)
        return tuple(reason for reason in found if isinstance(reason, str))
    status = _get(obj, "status")
    return (status,) if isinstance(status, str) else ()
