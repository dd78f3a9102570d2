"""Fitting a chat prompt under a token cap by dropping its oldest non-system messages.

System and developer messages are always kept, and so is the newest other message. An
assistant message that called tools goes together with the tool results answering it, and
a tool result never survives without its call, so the truncated conversation stays valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prismq_llmtools.call import Call

__all__ = ["parameter_names", "replace_argument", "truncate_messages"]

_KEPT_ROLES = frozenset({"system", "developer"})


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, Mapping) else None


def truncate_messages(
    messages: Sequence[Any], max_tokens: int, count: Callable[[list[Any]], int]
) -> tuple[list[Any], int] | None:
    """The newest suffix of non-system messages (system ones kept) that fits ``max_tokens``.

    Returns the messages and how many were dropped, or ``None`` when even the system
    messages plus the newest other message do not fit.
    """
    kept = list(messages)
    dropped = 0
    while count(kept) > max_tokens:
        droppable = [i for i, m in enumerate(kept) if _role(m) not in _KEPT_ROLES]
        if len(droppable) <= 1:
            return None
        first = droppable[0]
        removed = [first]
        if _role(kept[first]) == "assistant" and kept[first].get("tool_calls"):
            follow = first + 1
            while follow < len(kept) and _role(kept[follow]) == "tool":
                removed.append(follow)
                follow += 1
        kept = [m for i, m in enumerate(kept) if i not in removed]
        dropped += len(removed)
        while True:  # a tool result whose call was dropped earlier would be invalid alone
            orphans = [i for i, m in enumerate(kept) if _role(m) not in _KEPT_ROLES]
            if len(orphans) > 1 and _role(kept[orphans[0]]) == "tool":
                del kept[orphans[0]]
                dropped += 1
            else:
                break
    return kept, dropped


def parameter_names(func: Callable[..., Any], *, bound: bool) -> tuple[list[str], set[str]]:
    """``func``'s positional parameter names (``self``/``cls`` dropped when ``bound``), and
    the names it also accepts by keyword (``"**"`` when it takes ``**kwargs``)."""
    positional: list[str] = []
    keywords: set[str] = set()
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional.append(parameter.name)
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            keywords.add(parameter.name)
        if parameter.kind is parameter.VAR_KEYWORD:
            keywords.add("**")
    if bound and positional:
        keywords.discard(positional.pop(0))
    return positional, keywords


def replace_argument(
    call: Call, parameters: tuple[list[str], set[str]], name: str, value: Any
) -> bool:
    """Set argument ``name`` of ``call`` (positional or keyword) to ``value``.

    Returns False when the function takes no such argument.
    """
    positional, keywords = parameters
    if name in call.kwargs:
        call.kwargs[name] = value
        return True
    if name in positional and positional.index(name) < len(call.args):
        position = positional.index(name)
        call.args = (*call.args[:position], value, *call.args[position + 1 :])
        return True
    if name in keywords or "**" in keywords:
        call.kwargs[name] = value
        return True
    return False
