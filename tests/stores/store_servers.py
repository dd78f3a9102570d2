"""Which stores the parametrised suite runs on, and their URLs for a test."""

from __future__ import annotations

from pathlib import Path

import pytest

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
