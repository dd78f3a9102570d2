"""Counting the tokens of texts in one encoding, through a bounded, thread-safe LRU memo."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["MemoStats", "TextCount", "TokenMemo"]

_SHORT_ENTRIES = 4096  # short texts remembered per encoding (under 64 chars each by default)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoStats:
    """A snapshot of the memo: hits, misses, entries and characters held."""

    hits: int
    misses: int
    entries: int
    chars: int


class TokenMemo:
    """LRU of token counts keyed by (namespace, text), bounded in entries and in characters.

    The character bound is what bounds memory: the memo keeps its keys alive.
    """

    __slots__ = ("_chars", "_data", "_hits", "_lock", "_max_chars", "_max_entries", "_misses")

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self._data: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._chars = 0
        self._hits = 0
        self._misses = 0

    def get(self, key: tuple[str, str]) -> int | None:
        """The remembered count, or None (and a miss) when absent."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: int) -> None:
        """Remember a count, evicting the least recently used entries beyond the bounds."""
        size = len(key[1])
        if size > self._max_chars:
            return
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._chars += size
            while len(self._data) > self._max_entries or self._chars > self._max_chars:
                (_, old_text), _ = self._data.popitem(last=False)
                self._chars -= len(old_text)

    def stats(self) -> MemoStats:
        """Counters and size, read atomically."""
        with self._lock:
            return MemoStats(
                hits=self._hits, misses=self._misses, entries=len(self._data), chars=self._chars
            )

    def clear(self) -> None:
        """Forget everything and reset the counters."""
        with self._lock:
            self._data.clear()
            self._chars = self._hits = self._misses = 0


class TextCount:
    """Counts texts in one encoding; long texts go through the memo.

    Args:
        encoding: The encoding's name (part of every memo key).
        load: Returns the encode function; called on first use only, so a request made of
            token arrays never loads a vocabulary.
        memo: The shared memo, or None to disable memoisation.
        min_chars: Texts shorter than this are encoded directly (cheaper than a lookup).
    """

    __slots__ = ("_encode", "_encoding", "_load", "_memo", "_min_chars", "_short")

    def __init__(
        self,
        encoding: str,
        load: Callable[[], Callable[[str], list[int]]],
        memo: TokenMemo | None,
        min_chars: int,
    ) -> None:
        self._encoding = encoding
        self._load = load
        self._encode: Callable[[str], list[int]] | None = None
        self._memo = memo
        self._min_chars = min_chars
        # Short texts (roles, names, tool names) recur on every request; a plain dict
        # answers them without the shared memo's lock and LRU order.
        self._short: dict[str, int] = {}

    def _tokens(self, text: str) -> int:
        encode = self._encode
        if encode is None:
            encode = self._encode = self._load()
        return len(encode(text))

    def __call__(self, text: str) -> int:
        """Tokens of ``text``, with no special-token handling (specials count as text)."""
        memo = self._memo
        if memo is None:
            return self._tokens(text)
        if len(text) < self._min_chars:
            short = self._short
            tokens = short.get(text)
            if tokens is None:
                if len(short) >= _SHORT_ENTRIES:
                    short.clear()
                tokens = short[text] = self._tokens(text)
            return tokens
        key = (self._encoding, text)
        cached = memo.get(key)
        if cached is None:
            cached = self._tokens(text)
            memo.put(key, cached)
        return cached

    def sum_of(self, texts: Sequence[str]) -> int:
        """Sum of the tokens of each text, memoised as a whole (e.g. a set of tool definitions)."""
        memo = self._memo
        if memo is None or sum(map(len, texts)) < self._min_chars:
            return sum(self._tokens(text) for text in texts)
        # Length prefixes make the key unambiguous; a separate namespace keeps it apart
        # from plain texts.
        key = (f"{self._encoding}/sum", "".join(f"{len(text)}:{text}" for text in texts))
        cached = memo.get(key)
        if cached is None:
            cached = sum(self._tokens(text) for text in texts)
            memo.put(key, cached)
        return cached
