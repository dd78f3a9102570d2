"""The Files API: an in-memory store and the multipart/form-data upload it receives."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.testing.simulator.render import new_id

__all__ = ["PURPOSES", "FileStore", "StoredFile", "parse_multipart"]

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_PARAM = re.compile(r';\s*([\w-]+)="?([^";]*)"?')


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """One uploaded or generated file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """The ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class FileStore:
    """Files by id, newest last; thread-safe."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def add(self, *, filename: str, purpose: str, data: bytes, created_at: int) -> StoredFile:
        """Store a new file and return it."""
        stored = StoredFile(
            id=new_id("file-", 22),
            filename=filename,
            purpose=purpose,
            data=data,
            created_at=created_at,
        )
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id, if any."""
        with self._lock:
            return self._files.get(file_id)

    def delete(self, file_id: str) -> bool:
        """Remove a file; False if there was none."""
        with self._lock:
            return self._files.pop(file_id, None) is not None

    def listing(self, purpose: str | None = None) -> list[StoredFile]:
        """Files, newest first, optionally of one purpose."""
        with self._lock:
            files = list(self._files.values())
        return [f for f in reversed(files) if purpose is None or f.purpose == purpose]


def _params(header: str) -> Mapping[str, str]:
    return {key.lower(): value for key, value in _PARAM.findall(header)}


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes).

    Raises:
        ValueError: Not multipart, or no boundary.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("expected a multipart/form-data body")
    boundary = _params(content_type).get("boundary")
    if not boundary:
        raise ValueError("the multipart body has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = _params(headers.get("content-disposition", ""))
        if "name" in disposition:
            fields[disposition["name"]] = (disposition.get("filename"), data.removesuffix(b"\r\n"))
    return fields
