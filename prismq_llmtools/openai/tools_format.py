"""Prompt tokens of ``tools`` / ``functions`` definitions, ``tool_choice`` and tool calls.

OpenAI does not put the JSON schemas of function definitions into the prompt: it rewrites
them as a TypeScript-like namespace, which is what the model reads and what is billed::

    namespace functions {

    // Get the current weather in a given location
    type get_current_weather = (_: {
    // The city and state, e.g. San Francisco, CA
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

:func:`render_namespace` writes that text; the definitions cost its tokens plus
:data:`DEFINITIONS_OVERHEAD`, less one token per parameter block that opens with a
parameter rather than a comment on o200k models. The rules, their public sources and their
confidence are listed in ``docs/counting.md``: they reproduce the API-reported counts
published for gpt-3.5-turbo, gpt-4, gpt-4o, gpt-4o-mini and gpt-4.1-mini.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai.textcount import TextCount

__all__ = [
    "CALL_OVERHEAD",
    "DEFINITIONS_OVERHEAD",
    "FORCED_CHOICE_OVERHEAD",
    "MODE_CHOICE_OVERHEAD",
    "SYSTEM_WITH_DEFINITIONS",
    "bare_blocks",
    "count_call",
    "count_choice",
    "count_definitions",
    "count_parallel_results",
    "count_tool_calls",
    "function_definitions",
    "render_namespace",
]

# The namespace's framing around its text (a message of its own, merged into the system
# message when there is one): 9 tokens, of which 4 are saved when a system message exists.
DEFINITIONS_OVERHEAD = 9
SYSTEM_WITH_DEFINITIONS = -4
# ``function_call``/``tool_choice``: "none" adds 1, "auto" and "required" nothing; a forced
# function adds 4 plus its name.
MODE_CHOICE_OVERHEAD = 1
FORCED_CHOICE_OVERHEAD = 4
# An assistant's function call in history: 3 plus its name and its arguments text.
CALL_OVERHEAD = 3
# Several tool calls in one assistant message are one call of this wrapper.
PARALLEL_RECIPIENT = "multi_tool_use.parallel"

_INDENT = "  "


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
    definitions: Sequence[Mapping[str, Any]], count: TextCount, *, bare_block_saving: int = 0
) -> int:
    """Tokens of the rendered namespace plus its framing (no system-message adjustment).

    ``bare_block_saving`` (the model family's, see ``ChatFormat``) is taken off once per
    parameter block whose first line is a parameter, not a comment.
    """
    text, bare = _render(definitions)
    return count(text) + DEFINITIONS_OVERHEAD - bare_block_saving * bare


def bare_blocks(definitions: Sequence[Mapping[str, Any]]) -> int:
    """How many definitions have a parameter block whose first line is a parameter: their
    first parameter has neither a description nor a title, so no comment line precedes it."""
    return _render(definitions)[1]


def render_namespace(definitions: Sequence[Mapping[str, Any]]) -> str:
    """The TypeScript-like text OpenAI writes into the prompt for these definitions."""
    return _render(definitions)[0]


def _render(definitions: Sequence[Mapping[str, Any]]) -> tuple[str, int]:
    """The namespace text, and how many of its parameter blocks open with a parameter."""
    lines = ["namespace functions {", ""]
    bare = 0
    for function in definitions:
        name = function.get("name")
        if not isinstance(name, str):
            raise RequestFormatError("every function definition needs a string name")
        description = function.get("description")
        if isinstance(description, str) and description.strip():
            lines.append(f"// {description.strip()}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            assert isinstance(parameters, Mapping)  # for mypy: properties came from it
            lines.append(f"type {name} = (_: {{")
            opening = len(lines)
            _render_properties(parameters, 0, lines)
            if not lines[opening].startswith("//"):
                bare += 1
            lines.append("}) => any;")
        else:
            lines.append(f"type {name} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines), bare


def _render_properties(schema: Mapping[str, Any], depth: int, lines: list[str]) -> None:
    """Append one line per property (more for nested objects) at ``depth`` levels of indent.

    Comments (title, description) are written only for the top-level parameters: the
    API-reported counts of nested descriptions match only when they are left out.
    """
    properties = schema.get("properties")
    if not _is_mapping(properties):
        return
    required = schema.get("required")
    if not _is_list(required):
        required = ()
    indent = _INDENT * depth
    for key, prop in properties.items():
        spec: Mapping[str, Any] = prop if _is_mapping(prop) else {}
        if depth == 0:
            lines.extend(_comment_lines(spec))
        marker = "" if key in required else "?"
        lines.append(f"{indent}{key}{marker}: {_render_type(spec, depth)},")


def _comment_lines(spec: Mapping[str, Any]) -> list[str]:
    """The comment lines above a top-level parameter: ``// TITLE`` and ``//`` for its title,
    then ``// DESCRIPTION``, each stripped; none for an empty or missing one."""
    lines: list[str] = []
    title = _text_of(spec, "title")
    if title:
        lines += [f"// {title}", "//"]
    description = _text_of(spec, "description")
    if description:
        lines.append(f"// {description}")
    return lines


def _text_of(spec: Mapping[str, Any], key: str) -> str:
    """``spec[key]`` stripped when it is a string, else the empty string."""
    value = spec.get(key)
    return value.strip() if isinstance(value, str) else ""


_SCALARS = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}


def _render_type(spec: Mapping[str, Any], depth: int) -> str:
    """A schema as a TypeScript type; ``depth`` is the indent of the line it starts on."""
    if "anyOf" in spec or "oneOf" in spec:
        variants = spec.get("anyOf") or spec.get("oneOf")
        if _is_list(variants) and variants:
            return " | ".join(_render_type(v if _is_mapping(v) else {}, depth) for v in variants)
    enum = spec.get("enum")
    if enum and _is_list(enum):
        return " | ".join(_literal(value) for value in enum)
    kind = spec.get("type")
    if type(kind) is str:
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            return scalar
    elif kind and _is_list(kind):
        return " | ".join(_render_type({**spec, "type": k}, depth) for k in kind)
    if kind == "object":
        if not _is_mapping(spec.get("properties")):
            return "object"
        inner: list[str] = ["{"]
        _render_properties(spec, depth + 1, inner)
        inner.append(_INDENT * depth + "}")
        return "\n".join(inner)
    if kind == "array":
        items = spec.get("items")
        if _is_mapping(items):
            return f"{_render_type(items, depth)}[]"
        return "any[]"
    return "any"


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)


def _is_list(value: object) -> TypeGuard[Sequence[Any]]:
    return type(value) is list or (isinstance(value, Sequence) and not isinstance(value, str))


def _literal(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def count_choice(choice: object, count: TextCount) -> int:
    """``tool_choice`` / ``function_call``: ``"none"`` adds 1, ``"auto"`` and ``"required"``
    nothing, a forced function 4 plus its name."""
    if choice is None or isinstance(choice, str):
        return MODE_CHOICE_OVERHEAD if choice == "none" else 0
    if not isinstance(choice, Mapping):
        raise RequestFormatError("tool_choice / function_call must be a string or an object")
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    if not isinstance(name, str):
        return 0  # allowed_tools and built-in tool choices: unpublished, see docs
    return FORCED_CHOICE_OVERHEAD + count(name)


def count_call(call: object, count: TextCount, *, compact: bool = False) -> int:
    """One function call the assistant made: 3, its name and its arguments text (``compact``:
    as JSON without spaces when the text parses)."""
    if not isinstance(call, Mapping):
        raise RequestFormatError("a function call must be an object")
    name = call.get("name") or ""
    arguments = _text(call.get("arguments", call.get("input")) or "", "arguments")
    if compact:
        arguments = _compact(arguments)
    return CALL_OVERHEAD + count(_text(name, "name")) + count(arguments)


def count_tool_calls(calls: object, count: TextCount, *, compact: bool = False) -> int:
    """An assistant's ``tool_calls``: one call as a legacy function call; several as one
    call of the parallel wrapper whose arguments list every call (``compact``: its JSON
    without spaces, non-ASCII escaped)."""
    if not isinstance(calls, Sequence) or isinstance(calls, str):
        raise RequestFormatError("tool_calls must be a list")
    functions: list[Mapping[str, Any]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            raise RequestFormatError("each tool call must be an object")
        function = call.get("function") or call.get("custom") or {}
        if not isinstance(function, Mapping):
            raise RequestFormatError("a tool call's function must be an object")
        functions.append(function)
    if len(functions) == 1:
        return count_call(functions[0], count, compact=compact)
    if not functions:
        return 0
    uses = [
        {
            "recipient_name": f"functions.{_text(f.get('name') or '', 'name')}",
            "parameters": _arguments_value(f.get("arguments", f.get("input"))),
        }
        for f in functions
    ]
    if compact:
        wrapped = json.dumps({"tool_uses": uses}, separators=(",", ":"))
    else:
        wrapped = json.dumps({"tool_uses": uses}, ensure_ascii=False)
    return CALL_OVERHEAD + count(PARALLEL_RECIPIENT) + count(wrapped)


def count_parallel_results(outputs: Sequence[str], count: TextCount, *, framing: int) -> int:
    """The results of several calls made in one message, as one message from the parallel
    wrapper listing their outputs as JSON (non-ASCII escaped); ``framing`` is the
    family's result framing and name overhead."""
    return framing + count(PARALLEL_RECIPIENT) + count(json.dumps(list(outputs)))


def _compact(arguments: str) -> str:
    """Arguments as JSON without spaces when they parse, else as sent.

    A conversation sends its earlier calls again with every request: short arguments are
    remembered (a bounded LRU, at most 4 MB of text) instead of parsed each time.
    """
    if len(arguments) <= _REMEMBERED_ARGUMENTS_CHARS:
        return _remembered_compact(arguments)
    return _compacted(arguments)


_REMEMBERED_ARGUMENTS_CHARS = 1024


@functools.lru_cache(maxsize=4096)
def _remembered_compact(arguments: str) -> str:
    return _compacted(arguments)


def _compacted(arguments: str) -> str:
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return arguments
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _arguments_value(arguments: object) -> object:
    """A call's arguments as JSON data when they parse, else their text."""
    text = _text(arguments or "", "arguments")
    try:
        value: object = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return text
    return value


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RequestFormatError(f"{field} must be a string, got {type(value).__name__}")
    return value
