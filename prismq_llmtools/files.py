"""State files the library creates are user-only: files 0600, directories 0700.

The ``mode`` argument of ``os.open`` and ``os.mkdir`` is reduced by the umask but never
widened by it, so these modes hold whatever the process's umask is.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents, each user-only; existing ones are left as
    they are (they are the user's)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:  # made by another process meanwhile
            continue


def private_file(path: Path) -> None:
    """Create ``path`` (and its missing directories) user-only if it does not exist yet."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
