"""Fixtures of the store, rate-limit and budget suites: a fake clock at 0, a fresh state
registry, isolated settings and events, the library's initial state after each test (each
suite's conftest imports them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from prismq_llmtools.settings import Settings, reset_settings
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.clock import FakeClock


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PRISMQ_LLMTOOLS__"):
            monkeypatch.delenv(name)
    reset_settings(Settings())  # not ./pyproject.toml's
    yield
    reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture
def registry() -> Iterator[StateRegistry]:
    registry = StateRegistry()
    yield registry
    registry.reset()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test, as dicts."""
    with capture_logs() as captured:
        yield captured
