"""Reading usage from OpenAI response objects (chat, responses, embeddings, completions).

Duck-typed on purpose: it never imports ``openai``, so it works on any object of the same
shape (the official models, their ``with_raw_response`` wrappers, or plain dicts).

Every response is read, so reading is kept cheap without changing an answer: asking a
pydantic model for an attribute it lacks is slow (pydantic's ``__getattr__`` raises an
``AttributeError`` that ``getattr`` then catches), and a response is read field by field.
:func:`_attr` looks a name up the way pydantic would (fields, private attributes, extras)
on a model whose lookup is pydantic's own, and :func:`_reader` reads such a model with no
extras through its field dict; anything else goes through ``getattr``, so the result is
always the same (``tests/core/test_response_usage.py`` compares them on every shape).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from prismq_llmtools.usage import Usage

__all__ = [
    "ResponseFacts",
    "facts_from_response",
    "finish_reasons",
    "parse_usage",
    "service_tier",
]


class ResponseFacts(NamedTuple):
    """What a response says about itself (a tuple: one is made for every response read)."""

    usage: Usage | None
    model: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    service_tier: str | None = None
    headers: Any = None


_CLASS_NAMES: dict[type, frozenset[str] | None] = {}
"""Per class: the names its class attributes answer (along the MRO) when its attribute
lookup is pydantic ``BaseModel``'s, unchanged; ``None`` for any other class."""


_UNSEEN = frozenset({"<not yet seen>"})

_READ_NAMES = frozenset(
    {
        "usage", "model", "id", "service_tier", "http_response", "choices", "status",
        "finish_reason", "prompt_tokens", "completion_tokens", "prompt_tokens_details",
        "completion_tokens_details", "input_tokens", "output_tokens", "input_tokens_details",
        "output_tokens_details", "cached_tokens", "reasoning_tokens",
    }
)  # fmt: skip
"""The public names this module reads from responses (none is a private attribute); a name
read through :func:`_reader` must be one of them."""

_FIELDS_READABLE: dict[type, bool] = {}
"""Per pydantic class: whether every name of ``_READ_NAMES`` that is not a field of an
instance is absent from it (no class attribute answers it), so that, on an instance with
no extra fields, reading one is a lookup in its ``__dict__``."""


def _learn_class(cls: type) -> frozenset[str] | None:
    """Find and keep ``cls``'s entries in ``_CLASS_NAMES`` and ``_FIELDS_READABLE``."""
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
        _FIELDS_READABLE.clear()
    _FIELDS_READABLE[cls] = names is not None and names.isdisjoint(_READ_NAMES)
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
    class_names = _CLASS_NAMES.get(cls, _UNSEEN)
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


def _reader(obj: Any) -> Callable[[str], Any]:
    """``_get`` bound to ``obj``: for a dict or a plain pydantic model, its own ``get``.

    A response is read field by field (usage, model, id, token counts, details); one
    lookup each is what a field read costs.
    """
    if isinstance(obj, dict):
        return obj.get
    cls = type(obj)
    readable = _FIELDS_READABLE.get(cls)
    if readable is None:
        _learn_class(cls)
        readable = _FIELDS_READABLE.get(cls, False)
    if readable:
        try:
            if not obj.__pydantic_extra__:
                fields: dict[str, Any] = obj.__dict__
                return fields.get
        except AttributeError:  # not fully initialised: read attribute by attribute
            pass
    return partial(_attr, obj)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(usage: Any) -> Usage | None:
    """Map any of OpenAI's usage shapes onto :class:`Usage`, or ``None`` if absent."""
    if usage is None:
        return None
    get = _reader(usage)
    prompt_tokens = get("prompt_tokens")
    if prompt_tokens is None and get("input_tokens") is not None:  # Responses API
        input_tokens = _int(get("input_tokens"))
        output_tokens = _int(get("output_tokens"))
        input_details = get("input_tokens_details")
        output_details = get("output_tokens_details")
    else:  # chat, completions, embeddings
        input_tokens = _int(prompt_tokens)
        output_tokens = _int(get("completion_tokens"))
        input_details = get("prompt_tokens_details")
        output_details = get("completion_tokens_details")
    cached = _int(_reader(input_details)("cached_tokens")) if input_details is not None else 0
    reasoning = (
        _int(_reader(output_details)("reasoning_tokens")) if output_details is not None else 0
    )
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
    if isinstance(obj, dict):
        return False
    return _attr(obj, "http_response") is not None and callable(getattr(obj, "parse", None))


def facts_from_response(obj: Any) -> ResponseFacts | None:
    """The usage, model and ids in a response object, or ``None`` if ``obj`` is not one."""
    headers = None
    request_id = None
    get = _reader(obj)
    if get("http_response") is not None and _is_raw_response(obj):  # (one read, usually)
        headers = obj.headers
        request_id = headers.get("x-request-id")
        if getattr(obj, "_is_sse_stream", False) or getattr(obj, "_stream", False):
            return ResponseFacts(usage=None, request_id=request_id, headers=headers)
        obj = obj.parse()
        get = _reader(obj)
    usage_obj = get("usage")
    if usage_obj is None:
        if headers is None:
            return None
        return ResponseFacts(usage=None, request_id=request_id, headers=headers)
    model = get("model")
    response_id = get("id")
    tier = get("service_tier")
    return ResponseFacts(
        usage=parse_usage(usage_obj),
        model=model if isinstance(model, str) else None,
        response_id=response_id if isinstance(response_id, str) else None,
        request_id=request_id or _attr(obj, "_request_id"),
        service_tier=tier if isinstance(tier, str) else None,
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
