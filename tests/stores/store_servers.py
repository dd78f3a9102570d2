"""Which stores the parametrised suites run on, their URLs for a test, and the fixtures that
give a test each of them in turn (``url``, and ``store``: the store at that URL, emptied)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prismq_llmtools.stores import StateRegistry, StateStore

STORES = ["memory", "sqlite", "redis"]


def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the store named by ``request.param``, fresh for this test."""
    kind = request.param
    if kind == "memory":
        return "memory"
    if kind == "sqlite":
        return f"sqlite://{tmp_path / 'state.db'}"
    if kind == "redis":  # times from the test's clock, so fake clocks drive it too
        return f"{request.getfixturevalue('redis_server')}?clock=caller"
    raise AssertionError(kind)


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once per store: its URL."""
    return store_url(request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    """The store at ``url``, empty, from a registry of the test's own."""
    registry = StateRegistry()
    store = registry.store(url)
    store.clear()
    yield store
    registry.reset()
