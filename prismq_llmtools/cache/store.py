"""Where cached answers live: a joblib.Memory store on disk, fronted by an in-memory LRU.

An entry is one pickled tuple (answer, creation time, original cost, models, usage),
prefixed with a checksum so a damaged file is recognised as such. joblib writes each file
to a unique temporary name and renames it into place, so several processes may share one
directory. The directory is created on the first store, never before, user-only (0o700).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from prismq_llmtools.errors import LLMToolsError
from prismq_llmtools.files import DIR_MODE, FILE_MODE, private_dir
from prismq_llmtools.usage import Usage

__all__ = [
    "CACHE_DIR_ENV",
    "CorruptEntry",
    "DiskStore",
    "Entry",
    "MemoryLayer",
    "decode",
    "default_cache_dir",
    "encode",
    "is_immutable",
]

CACHE_DIR_ENV = "PRISMQ_LLMTOOLS_CACHE_DIR"
_MAGIC = b"PQC1"
_CHECK = 16


class CorruptEntry(LLMToolsError):
    """A cache file could not be read back (truncated, damaged, or from another format)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached answer and the facts of the call that produced it."""

    value: Any
    created: float
    cost_usd: Decimal | None = None
    model: str | None = None
    response_model: str | None = None
    usage: Usage | None = None


def encode(entry: Entry) -> bytes:
    """The entry as bytes: magic, checksum, pickle (raises if the answer cannot be pickled)."""
    usage = entry.usage
    payload = pickle.dumps(
        (
            entry.value,
            entry.created,
            str(entry.cost_usd) if entry.cost_usd is not None else None,
            entry.model,
            entry.response_model,
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.reasoning_tokens,
            )
            if usage is not None
            else None,
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    return _MAGIC + hashlib.blake2b(payload, digest_size=_CHECK).digest() + payload


def decode(blob: bytes) -> Entry:
    """The entry stored in ``blob``; :class:`CorruptEntry` when it does not check out."""
    head = len(_MAGIC) + _CHECK
    if not isinstance(blob, bytes) or len(blob) < head or not blob.startswith(_MAGIC):
        raise CorruptEntry("not a cache entry")
    payload = blob[head:]
    if hashlib.blake2b(payload, digest_size=_CHECK).digest() != blob[len(_MAGIC) : head]:
        raise CorruptEntry("checksum mismatch (truncated or damaged)")
    try:
        value, created, cost, model, response_model, usage = pickle.loads(payload)  # noqa: S301
        return Entry(
            value=value,
            created=float(created),
            cost_usd=Decimal(cost) if cost is not None else None,
            model=model,
            response_model=response_model,
            usage=Usage(
                input_tokens=usage[0],
                output_tokens=usage[1],
                cached_input_tokens=usage[2],
                reasoning_tokens=usage[3],
            )
            if usage is not None
            else None,
        )
    except Exception as exc:
        raise CorruptEntry(f"unreadable entry: {type(exc).__name__}: {exc}") from exc


_IMMUTABLE = frozenset({str, bytes, int, float, bool, complex, type(None), Decimal})


def is_immutable(value: Any, _depth: int = 0) -> bool:
    """Whether ``value`` can be handed to several callers without copying."""
    tp = type(value)
    if tp in _IMMUTABLE:
        return True
    if tp in (tuple, frozenset) and _depth < 4:
        return all(is_immutable(v, _depth + 1) for v in value)
    return False


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$PRISMQ_LLMTOOLS_CACHE_DIR``, else the platform's per-user cache directory."""
    env = os.environ if environ is None else environ
    explicit = env.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        local = env.get("LOCALAPPDATA")
        return Path(local or home / "AppData" / "Local") / "prismq_llmtools" / "cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "prismq_llmtools"
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "prismq_llmtools"


def _slug(name: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"{readable}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


class DiskStore:
    """One site's entries in ``root/<namespace>/<site>/joblib/<key>/output.pkl``.

    Nothing touches the disk until the first :meth:`save`; reads of a store that does not
    exist yet are misses.
    """

    def __init__(
        self,
        root: Path,
        *,
        namespace: str,
        site: str,
        backend: str = "local",
        compress: bool | int = False,
    ) -> None:
        self.root = root
        self.location = root / _slug(namespace) / _slug(site)
        self._backend = backend
        self._compress = compress
        self._memory: Any = None
        self._lock = threading.Lock()

    def _store(self, *, create: bool) -> Any:
        memory = self._memory
        if memory is not None:
            return memory.store_backend
        with self._lock:
            if self._memory is None:
                if create:
                    self._make_root()
                elif not self.location.is_dir():
                    return None
                from joblib import Memory

                self._memory = Memory(
                    str(self.location), backend=self._backend, compress=self._compress, verbose=0
                )
                if create:  # the files joblib writes beside the entries (.gitignore)
                    for name in os.scandir(self.location):
                        if name.is_file():
                            os.chmod(name.path, FILE_MODE)
            return self._memory.store_backend

    def _make_root(self) -> None:
        # the root and this site's directories, where missing; a root that exists is the user's
        private_dir(self.location / "joblib")

    def load(self, key: str) -> bytes | None:
        """The stored bytes of ``key``, ``None`` if absent; :class:`CorruptEntry` if unreadable."""
        store = self._store(create=False)
        if store is None:
            return None
        try:
            blob = store.load_item([key], verbose=0)
        except FileNotFoundError:
            return None  # removed by another process (or the size bound) meanwhile
        except Exception as exc:
            # joblib raises KeyError for a missing entry, and so does its unpickler for a
            # damaged one (an unknown opcode): only the second is corruption.
            if isinstance(exc, KeyError) and not store.contains_item([key]):
                return None
            raise CorruptEntry(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(blob, bytes):
            raise CorruptEntry(f"unexpected content of type {type(blob).__name__}")
        return blob

    def save(self, key: str, blob: bytes) -> None:
        """Store ``blob`` under ``key`` (atomically: written aside, then renamed), user-only
        (0o600 files in a 0o700 directory) even in a cache directory that existed before."""
        store = self._store(create=True)
        store.dump_item([key], blob, verbose=0)
        entry = os.path.join(store.location, key)
        try:
            os.chmod(entry, DIR_MODE)
            with os.scandir(entry) as names:
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(name.path, FILE_MODE)
        except FileNotFoundError:
            return  # removed meanwhile by another process (or the size bound)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        store = self._store(create=False)
        if store is not None:
            store.clear_item([key])

    def trim(self, *, max_bytes: int | None, max_entries: int | None) -> None:
        """Remove the least recently used entries beyond the bounds."""
        if self._store(create=False) is not None:
            self._memory.reduce_size(bytes_limit=max_bytes, items_limit=max_entries)

    def clear(self) -> None:
        """Remove every entry of this site."""
        store = self._store(create=False)
        if store is not None:
            store.clear()

    def count(self) -> int:
        """Entries on disk (walks the directory)."""
        store = self._store(create=False)
        return 0 if store is None else len(store.get_items())


class MemoryLayer:
    """A thread-safe LRU of recent entries in front of the disk: the hot path of a hit.

    Immutable answers are shared; other answers are kept pickled and copied per hit, so a
    caller mutating its answer never changes what the next caller gets.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[Entry, bytes | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Entry, bytes | None] | None:
        # Lock-free: each OrderedDict operation is atomic; a concurrent eviction between
        # the two is harmless (the entry was found, and is simply no longer recent).
        item = self._items.get(key)
        if item is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
                self._items.move_to_end(key)
            except KeyError:
                pass
        return item

    def put(self, key: str, entry: Entry, blob: bytes | None) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = (entry, blob)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
