"""The settings of ``@cached`` and the per-call modes (bypass, refresh)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.settings import register_keys

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
        if not isinstance(self.cache_enabled, bool):
            raise ConfigurationError(f"cache_enabled must be a bool, got {self.cache_enabled!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise ConfigurationError(f"cache_dir must be a path, got {self.cache_dir!r}")
        if self.cache_ttl_s is not None and (
            not isinstance(self.cache_ttl_s, int | float) or self.cache_ttl_s <= 0
        ):
            raise ConfigurationError(f"cache_ttl_s must be > 0, got {self.cache_ttl_s!r}")
        for name in ("cache_max_bytes", "cache_max_entries"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.cache_memory_entries, int) or self.cache_memory_entries < 0:
            raise ConfigurationError(
                f"cache_memory_entries must be an int >= 0, got {self.cache_memory_entries!r}"
            )
        for name in ("cache_namespace", "cache_version"):
            value = getattr(self, name)
            if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
            object.__setattr__(self, name, str(value))


register_keys("cached", frozenset(CachePolicy.__dataclass_fields__))
