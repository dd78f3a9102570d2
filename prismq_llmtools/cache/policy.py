"""The settings of ``@cached`` and the per-call modes (bypass, refresh)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.settings.rules import (
    Flag,
    Integer,
    Number,
    PathText,
    Text,
    check_fields,
    register_keys,
)

__all__ = ["CachePolicy", "bypass_cache", "current_mode", "deterministic_only", "refresh_cache"]

_mode: ContextVar[str | None] = ContextVar("prismq_llmtools_cache_mode", default=None)


current_mode = _mode.get
"""``current_mode()``: ``"bypass"``, ``"refresh"`` or ``None`` for this thread or task."""


@contextmanager
def bypass_cache() -> Iterator[None]:
    """Inside this block (this thread or task), cached sites neither read nor write the cache."""
    token = _mode.set("bypass")
    try:
        yield
    finally:
        _mode.reset(token)


@contextmanager
def refresh_cache() -> Iterator[None]:
    """Inside this block, cached sites skip the lookup, call upstream and store the new answer."""
    token = _mode.set("refresh")
    try:
        yield
    finally:
        _mode.reset(token)


def deterministic_only(bound: Mapping[str, Any]) -> bool:
    """A ``when=`` predicate: cache only requests that ask for a repeatable answer.

    True when ``temperature`` is absent or 0, or a ``seed`` is given.
    """
    temperature = bound.get("temperature")
    return not temperature or bound.get("seed") is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """How ``@cached`` caches; every field is also a settings key.

    Args:
        cache_enabled: False makes the decorator fully transparent.
        cache_dir: the cache directory (default ``$PRISMQ_LLMTOOLS_CACHE_DIR``, else the
            per-user cache directory, e.g. ``~/.cache/prismq_llmtools``).
        cache_ttl_s: entries older than this are misses (None: never expire).
        cache_max_bytes: bound of this site's directory, least recently used removed first.
        cache_max_entries: bound on the number of this site's entries.
        cache_namespace: a namespace (its own subdirectory, part of every key).
        cache_version: part of every key: change it to invalidate the site's entries.
        cache_memory_entries: size of the in-memory front layer (0: disk only).
    """

    cache_enabled: bool = True
    cache_dir: str | None = None
    cache_ttl_s: float | None = None
    cache_max_bytes: int | None = None
    cache_max_entries: int | None = None
    cache_namespace: str = "default"
    cache_version: str = "1"
    cache_memory_entries: int = 1024

    def __post_init__(self) -> None:
        check_fields(self, "cached")


register_keys(
    "cached",
    {
        "cache_enabled": Flag(),
        "cache_dir": PathText(optional=True),
        "cache_ttl_s": Number(exclusive=True, optional=True),
        "cache_max_bytes": Integer(minimum=1, optional=True),
        "cache_max_entries": Integer(minimum=1, optional=True),
        "cache_namespace": Text(numbers=True),
        "cache_version": Text(numbers=True),
        "cache_memory_entries": Integer(),
    },
    arguments={
        "cache_enabled": "enabled",
        "cache_dir": "location",
        "cache_ttl_s": "ttl_s",
        "cache_max_bytes": "max_bytes",
        "cache_max_entries": "max_entries",
        "cache_namespace": "namespace",
        "cache_version": "version",
        "cache_memory_entries": "memory_entries",
    },
)
