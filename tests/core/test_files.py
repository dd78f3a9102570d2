"""State files are user-only (0600, directories 0700) even under a permissive umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from prismq_llmtools import batched, cached, configure_logging
from prismq_llmtools.batch.api import BatchJob, BatchState
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.stores.ledger import BudgetLine
from prismq_llmtools.testing.clock import FakeClock


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """umask 000: without an explicit mode, files would be 0666 and directories 0777."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(root: Path, *, since: Path) -> None:
    """Every file under ``root`` is 0600, and every directory from ``since`` down is 0700."""
    directory = root if root.is_dir() else root.parent
    while True:
        assert mode_of(directory) == 0o700, directory
        if directory == since:
            break
        directory = directory.parent
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert mode_of(path) == 0o600, path
    for path in root.rglob("*") if root.is_dir() else ():
        if path.is_dir():
            assert mode_of(path) == 0o700, path


def test_the_log_file_and_its_new_directories(tmp_path: Path) -> None:
    """configure_logging creates its file 0600 and the directories it makes 0700."""
    log = tmp_path / "logs" / "app" / "events.jsonl"
    configure_logging(file=log)
    assert_private(log, since=tmp_path / "logs")


def test_the_sqlite_store_and_its_wal_and_shm(tmp_path: Path) -> None:
    """The SQLite database, its -wal and -shm files and its new directory are user-only."""
    path = tmp_path / "state" / "limits.db"
    registry = StateRegistry()
    try:
        store = registry.store(f"sqlite://{path}")
        lines = (BudgetLine(name="daily_tokens", unit="tokens", limit=1000, period="day"),)
        store.reserve("s", lines, {"tokens": 10}, clock=FakeClock(), reservation_id="r", ttl_s=60)
        names = {p.name for p in path.parent.iterdir()}
        assert {"limits.db", "limits.db-wal", "limits.db-shm"} <= names
        assert_private(path.parent, since=path.parent)
    finally:
        registry.reset()


def test_batch_checkpoints(tmp_path: Path) -> None:
    """A batch checkpoint and a Batch API state file are user-only, in user-only directories."""

    @batched(name="files.double")
    def double(x: int) -> int:
        return 2 * x

    checkpoint = tmp_path / "runs" / "a.ckpt"
    assert double.batch([1, 2, 3], checkpoint=checkpoint) == [2, 4, 6]
    assert_private(checkpoint, since=tmp_path / "runs")
    state = BatchState(tmp_path / "api" / "state.json", "fingerprint")
    state.add(BatchJob("batch_1", [0, 1]))
    assert_private(tmp_path / "api" / "state.json", since=tmp_path / "api")


@pytest.mark.parametrize("existing", [False, True])
def test_cache_entries_even_in_a_cache_directory_that_exists(
    tmp_path: Path, existing: bool
) -> None:
    """Every cache entry is written 0600 in 0700 directories, also when the cache directory
    existed before with a wider mode (then the directory itself is left as it was)."""
    root = tmp_path / "cache"
    if existing:
        root.mkdir(mode=0o755)

    @cached(location=root)
    def shout(text: str) -> str:
        return text.upper()

    assert shout("a") == "A"
    assert shout("b") == "B"
    entries = list(root.iterdir())
    assert entries
    for entry in entries:
        assert_private(entry, since=entry)
    assert mode_of(root) == (0o755 if existing else 0o700)
