"""Prompt tokens of ``tools`` / ``functions`` definitions and of ``tool_choice``.

OpenAI renders function definitions into the prompt in a format it does not publish; the
cookbook "How to count tokens with tiktoken" gives a counting rule that matches the API's
reported usage: per function ``function_start`` plus the tokens of ``"name:description"``
(one trailing period dropped), ``properties_start`` when it has properties, then per property
``per_property`` plus the tokens of ``"key:type:description"``, and for an enum
``enum_start`` plus ``per_enum_item`` and the tokens of each item; ``functions_end`` once.
Nested object properties are counted by the same rule (our extension, see docs/counting.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai.models import ChatFormat
from prismq_llmtools.openai.textcount import TextCount

__all__ = ["count_definitions", "count_tool_fields", "function_definitions"]

# A forced choice ({"type": "function", "function": {"name": ...}}) names the function in
# the prompt; framing tokens around it (estimate, unpublished).
FORCED_CHOICE_OVERHEAD = 3


def count_tool_fields(body: Mapping[str, Any], fmt: ChatFormat, count: TextCount) -> int:
    """Tokens for the definitions and the choice fields of a chat or Responses body."""
    definitions = function_definitions(body)
    total = count_definitions(definitions, fmt, count) if definitions else 0
    return (
        total
        + _count_choice(body.get("tool_choice"), count)
        + (_count_choice(body.get("function_call"), count))
    )


def function_definitions(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Function definitions from ``tools`` (chat or Responses shape) and legacy ``functions``."""
    found: list[Mapping[str, Any]] = []
    for field in ("tools", "functions"):
        entries = body.get(field)
        if entries is None:
            continue
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise RequestFormatError(f"{field} must be a list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise RequestFormatError(f"each item of {field} must be an object")
            if field == "functions":
                found.append(entry)
            elif isinstance(entry.get("function"), Mapping):  # chat: {"type", "function"}
                found.append(entry["function"])
            elif isinstance(entry.get("custom"), Mapping):  # chat custom tool
                found.append(entry["custom"])
            elif entry.get("type") in ("function", "custom") and "name" in entry:  # Responses
                found.append(entry)
            # Built-in tools (web_search, file_search ...) are expanded server-side in a way
            # that is not published; they add nothing here (see docs/counting.md).
    return found


def count_definitions(
    definitions: Sequence[Mapping[str, Any]], fmt: ChatFormat, count: TextCount
) -> int:
    """Tokens for a list of function definitions, by the cookbook's rule."""
    texts: list[str] = []
    fixed = fmt.functions_end
    for function in definitions:
        name = function.get("name")
        if not isinstance(name, str):
            raise RequestFormatError("every function definition needs a string name")
        description = _strip_period(function.get("description"))
        fixed += fmt.function_start
        texts.append(f"{name}:{description}")
        parameters = function.get("parameters")
        if isinstance(parameters, Mapping):
            fixed += _collect_properties(parameters, fmt, texts)
    return fixed + count.sum_of(texts)


def _collect_properties(schema: Mapping[str, Any], fmt: ChatFormat, texts: list[str]) -> int:
    """Append the texts of a schema's properties to ``texts``; return their fixed tokens."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return 0
    fixed = fmt.properties_start
    for key, prop in properties.items():
        fixed += fmt.per_property
        if not isinstance(prop, Mapping):
            texts.append(f"{key}::")
            continue
        enum = prop.get("enum")
        if isinstance(enum, Sequence) and not isinstance(enum, str):
            fixed += fmt.enum_start + fmt.per_enum_item * len(enum)
            texts.extend(str(item) for item in enum)
        texts.append(
            f"{key}:{_type_name(prop.get('type'))}:{_strip_period(prop.get('description'))}"
        )
        fixed += _collect_properties(prop, fmt, texts)
        items = prop.get("items")
        if isinstance(items, Mapping):
            fixed += _collect_properties(items, fmt, texts)
    return fixed


def _type_name(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "|".join(str(item) for item in value)
    return ""


def _strip_period(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text.removesuffix(".")


def _count_choice(choice: object, count: TextCount) -> int:
    """``"auto"``, ``"none"`` and ``"required"`` add nothing; a forced function its name."""
    if choice is None or isinstance(choice, str):
        return 0
    if not isinstance(choice, Mapping):
        raise RequestFormatError("tool_choice / function_call must be a string or an object")
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    if not isinstance(name, str):
        return 0
    return FORCED_CHOICE_OVERHEAD + count(name)
