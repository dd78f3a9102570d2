"""Shared fixtures: a fake clock, a fresh state registry, isolated settings and events."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from prismq_llmtools.settings import Settings, reset_settings
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PRISMQ_LLMTOOLS__"):
            monkeypatch.delenv(name)
    reset_settings(Settings())
    yield
    reset_settings(None)
    structlog.reset_defaults()


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port, for the whole session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed, so the Redis store is not tested here"
            " (Debian: apt-get install redis-server; `make test` installs it)"
        )
    import redis

    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"redis-server exited with {process.returncode}")
                threading.Event().wait(0.05)
        else:
            pytest.fail("redis-server did not answer within 5 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
