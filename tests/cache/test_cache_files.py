"""Cache files: damaged entries are misses with a warning; several processes share a directory.

Tests taking ``mode`` run once with a sync function and once with an async one (see
tests/drivers.py).
"""

from __future__ import annotations

from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import joblib
import pytest

from prismq_llmtools.cache import cache_of, cached
from prismq_llmtools.cache.store import decode
from prismq_llmtools.testing.simulator import Simulator
from tests.drivers import Mode

from .conftest import named
from .shared_worker import TOPICS, site, work


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("output.pkl"))


def _value(path: Path) -> Any:
    return decode(joblib.load(path)).value


def _site(mode: Mode, cache_dir: Path, runs: list[str]) -> Any:
    @cached(cache_dir, name="files.shout")
    @mode.make
    def shout(text: str) -> str:
        runs.append(text)
        return text.upper()

    return shout


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"not a pickle at all", id="garbage"),
        pytest.param(lambda b: b[:-3] + bytes(3), id="flipped-bytes"),
    ],
)
def test_a_damaged_entry_is_a_miss_and_a_warning(
    mode: Mode, cache_dir: Path, events: list[dict[str, Any]], damage: Any
) -> None:
    """A corrupt file never crashes a call: a warning event, a fresh answer, a repaired entry."""
    runs: list[str] = []
    assert mode.invoke(_site(mode, cache_dir, runs), "hi") == "HI"
    (entry,) = _entries(cache_dir)
    entry.write_bytes(damage(entry.read_bytes()))

    fresh = _site(mode, cache_dir, runs)  # a new process: nothing in memory
    assert mode.invoke(fresh, "hi") == "HI"
    assert runs == ["hi", "hi"]
    (warning,) = named(events, "llm.cache.corrupt")
    assert warning["log_level"] == "warning"
    assert _value(_entries(cache_dir)[0]) == "HI"  # rewritten
    assert mode.invoke(_site(mode, cache_dir, runs), "hi") == "HI"
    assert runs == ["hi", "hi"]


def test_an_entry_removed_meanwhile_is_a_plain_miss(
    mode: Mode, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """An entry deleted by another process (or the size bound) is a miss without warning."""
    runs: list[str] = []
    mode.invoke(_site(mode, cache_dir, runs), "hi")
    for path in _entries(cache_dir):
        path.unlink()
    assert mode.invoke(_site(mode, cache_dir, runs), "hi") == "HI"
    assert runs == ["hi", "hi"]
    assert not named(events, "llm.cache.corrupt")


def test_clear_removes_memory_and_disk(mode: Mode, cache_dir: Path) -> None:
    """``cache_of(f).clear()`` empties both layers of the site."""
    runs: list[str] = []
    shout = _site(mode, cache_dir, runs)
    mode.invoke(shout, "a")
    mode.invoke(shout, "b")
    assert cache_of(shout).entries_on_disk() == 2
    cache_of(shout).clear()
    assert cache_of(shout).entries_on_disk() == 0
    mode.invoke(shout, "a")
    assert runs == ["a", "b", "a"]


@pytest.mark.slow
def test_several_processes_share_one_directory(
    sim: Simulator, cache_dir: Path, processes: ForkServerContext
) -> None:
    """Three processes writing overlapping entries at once leave 24 sound, readable entries."""
    workers = [  # (daemons: a worker that hangs never outlives the test)
        processes.Process(target=work, args=(str(cache_dir), sim.url, offset), daemon=True)
        for offset in (0, 8, 16)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)
        assert worker.exitcode == 0  # a worker's traceback is in the captured stderr
    assert 24 <= sim.stats().received <= 72
    entries = _entries(cache_dir)
    assert len(entries) == 24
    assert all(_value(p) for p in entries)  # every entry decodes
    leftovers = [p for p in cache_dir.rglob("*") if p.is_file() and ".pkl." in p.name]
    assert not leftovers  # no half-written temporary file remains

    # This process reads every entry written by the others without asking upstream (it has
    # no client to ask with).
    ask = site(str(cache_dir))
    before = sim.stats().received
    for i in range(TOPICS):
        assert ask(f"topic {i}")
    assert sim.stats().received == before
