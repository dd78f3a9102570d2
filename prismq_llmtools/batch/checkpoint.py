"""Batch checkpoints: finished items survive a crash or Ctrl-C, and a rerun skips them.

A checkpoint is an append-only file of records, one per finished item: an 8-byte length
and a pickle of ``(item key, answer)``, flushed as soon as the item finishes. A record
cut short by a crash is ignored when the file is read back (and cut off when the rerun
starts appending), and so is a header cut short by a crash before the first record went
out with it, so a rerun repeats at most the items that were in flight. Items are matched
by the key of their arguments, not their position, so a rerun may reorder or extend the
list. The file is user-only (0o600); like the cache it holds pickles, so only read
checkpoints you wrote.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import threading
from pathlib import Path
from typing import Any

from prismq_llmtools.cache.key import UnkeyableArgument, digest, normalise
from prismq_llmtools.files import private_dir

__all__ = ["Checkpoint", "item_key"]

_HEADER = b"PQCK1\n"
_LENGTH = struct.Struct(">Q")
_SECRET = re.compile(rb"sk-[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9._\-]{8,}")


def item_key(site: str, args: tuple[Any, ...], kwargs: dict[str, Any], index: int) -> str:
    """The identity of one item: its site and normalised arguments (else its position)."""
    try:
        return digest((site, normalise(args), normalise(kwargs)))
    except UnkeyableArgument:
        return f"#{index}"


class Checkpoint:
    """The finished items of one batch, on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.done: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._file: Any = None
        self._good_size = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if _HEADER.startswith(data):
            # Created, but killed before its first record was flushed (the header goes out
            # with it): nothing finished, and the rerun starts the file afresh.
            return
        if not data.startswith(_HEADER):
            raise ValueError(f"{self.path} is not a prismq_llmtools checkpoint")
        position = good = len(_HEADER)
        while position + _LENGTH.size <= len(data):
            (size,) = _LENGTH.unpack_from(data, position)
            end = position + _LENGTH.size + size
            if end > len(data):
                break
            try:
                key, value = pickle.loads(data[position + _LENGTH.size : end])  # noqa: S301
            except Exception:
                break
            self.done[key] = value
            position = good = end
        self._good_size = good

    def _open(self) -> Any:
        if self._file is None:
            private_dir(self.path.parent)
            if self.path.exists() and self.path.stat().st_size > self._good_size:
                # a record (or the header) cut short by a crash: drop it before appending
                with self.path.open("r+b") as handle:
                    handle.truncate(self._good_size)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "ab")
            if self._file.tell() == 0:
                self._file.write(_HEADER)
        return self._file

    def record(self, key: str, value: Any) -> bool:
        """Append one finished item; False when its answer cannot be kept safely."""
        try:
            blob = pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return False
        if _SECRET.search(blob):
            return False
        with self._lock:
            handle = self._open()
            handle.write(_LENGTH.pack(len(blob)) + blob)
            handle.flush()
            self.done[key] = value
        return True

    def close(self) -> None:
        """Close the file (records are flushed as they are written)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
