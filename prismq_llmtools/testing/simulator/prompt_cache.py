"""Prompt caching as OpenAI reports it: ``cached_tokens`` for a repeated prompt prefix.

OpenAI's rule: only prompts of at least 1024 tokens are cached, and a hit covers the
longest previously seen prefix, rounded down to 1024 + a multiple of 128 tokens. The
simulator compares prompts as rendered text (roles, names, contents, tools in order) and
converts the shared prefix to tokens with the model's encoding.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MIN_CACHED_TOKENS", "PromptCache", "cached_tokens_for", "render_prompt"]

MIN_CACHED_TOKENS = 1024
CACHE_INCREMENT = 128


def cached_tokens_for(prefix_tokens: int) -> int:
    """The cached tokens OpenAI reports for a shared prefix of ``prefix_tokens``."""
    if prefix_tokens < MIN_CACHED_TOKENS:
        return 0
    return (
        MIN_CACHED_TOKENS + (prefix_tokens - MIN_CACHED_TOKENS) // CACHE_INCREMENT * CACHE_INCREMENT
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                pieces.append(text if isinstance(text, str) else json.dumps(part, sort_keys=True))
            else:
                pieces.append(str(part))
        return "".join(pieces)
    return json.dumps(content, sort_keys=True, default=str)


def render_prompt(body: Mapping[str, Any]) -> str:
    """The prompt of a chat or Responses request as one text, in the order OpenAI reads it."""
    pieces: list[str] = []
    for key in ("tools", "functions"):
        if body.get(key):
            pieces.append(json.dumps(body[key], sort_keys=True, default=str))
    if isinstance(body.get("instructions"), str):
        pieces.append(f"<|system|>{body['instructions']}")
    items = body.get("messages", body.get("input"))
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        pieces.append(f"<|{item.get('role', item.get('type', ''))}|>")
        if item.get("name"):
            pieces.append(f"{item['name']}:")
        pieces.append(_content_text(item.get("content")))
        for key in ("tool_calls", "function_call"):
            if item.get(key):
                pieces.append(json.dumps(item[key], sort_keys=True, default=str))
    return "\n".join(pieces)


def _shared_prefix_len(a: str, b: str) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search: each comparison runs at C speed
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class PromptCache:
    """Long prompts seen per model, to find the longest prefix a new prompt shares.

    Bounded: at most ``max_prompts`` per model, oldest forgotten first.
    """

    def __init__(self, max_prompts: int = 1024) -> None:
        self._max_prompts = max_prompts
        self._sorted: dict[str, list[str]] = {}
        self._order: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def cached_tokens(
        self, model: str, prompt: str, prompt_tokens: int, count: Callable[[str], int]
    ) -> int:
        """Cached tokens for ``prompt`` (of ``prompt_tokens``), then remember it."""
        if prompt_tokens < MIN_CACHED_TOKENS:
            return 0
        with self._lock:
            seen = self._sorted.setdefault(model, [])
            order = self._order.setdefault(model, deque())
            index = bisect.bisect_left(seen, prompt)
            # In sorted order, the longest shared prefix is with a neighbour.
            shared = max(
                (
                    _shared_prefix_len(prompt, seen[i])
                    for i in (index - 1, index)
                    if 0 <= i < len(seen)
                ),
                default=0,
            )
            if index >= len(seen) or seen[index] != prompt:
                seen.insert(index, prompt)
                order.append(prompt)
                if len(order) > self._max_prompts:
                    oldest = order.popleft()
                    del seen[bisect.bisect_left(seen, oldest)]
        if shared == 0:
            return 0
        prefix_tokens = prompt_tokens if shared == len(prompt) else count(prompt[:shared])
        return cached_tokens_for(min(prefix_tokens, prompt_tokens))

    def clear(self) -> None:
        """Forget every prompt."""
        with self._lock:
            self._sorted.clear()
            self._order.clear()
