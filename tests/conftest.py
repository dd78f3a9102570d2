"""Shared test set-up: every test starts from the library's initial state (default settings,
empty totals, unconfigured logging, ...: ``prismq_llmtools.testing.reset``), and never reads
the user's settings or writes to the real per-user cache.

The simulator fixtures (``simulator``, ``simulator_factory``) come from the package's pytest
plugin, registered as a ``pytest11`` entry point.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from structlog.testing import capture_logs

from prismq_llmtools.settings import Settings, reset_settings
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Simulator, SimulatorConfig
from tests.drivers import MODES, Mode

# Hypothesis fails an example that takes over 200 ms of wall time: on a busy machine that is
# a timing flake, and the properties tested here are about values, not speed.
settings.register_profile("prismq_llmtools", deadline=None)
settings.load_profile("prismq_llmtools")


_test_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test reads the user's settings or writes to the real per-user cache directory.

    Each test's default cache directory is its own, and made only if the library writes
    there (few tests do: a ``tmp_path`` for every test cost about 0.4 ms a test)."""
    for name in list(os.environ):
        if name.startswith("PRISMQ_LLMTOOLS"):
            monkeypatch.delenv(name)
    cache = tmp_path_factory.getbasetemp() / "default-caches" / str(next(_test_numbers))
    monkeypatch.setenv("PRISMQ_LLMTOOLS_CACHE_DIR", str(cache))
    reset_settings(Settings())  # not ./pyproject.toml's
    yield
    reset()


# What a worker process of a test imports anyway: the fork server imports it once, and each
# process forked from it starts with it loaded (instead of importing it again, about 0.8 s
# of a spawned process on this machine).
PRELOADED = [
    "pytest",
    "hypothesis",
    "openai",
    "redis",
    "prismq_llmtools",
    "prismq_llmtools.cache",
    "prismq_llmtools.ratelimit",
    "prismq_llmtools.stores",
    "prismq_llmtools.stores.sqlite",
    "prismq_llmtools.stores.redis",
    "prismq_llmtools.testing.simulator",
    "tests.drivers",
]


@pytest.fixture(scope="session")
def processes(tmp_path_factory: pytest.TempPathFactory) -> ForkServerContext:
    """The multiprocessing context for tests that run workers in processes of their own.

    Each process is forked from one server process started here, single-threaded, that has
    imported ``PRELOADED`` and nothing else: a new process that shares nothing with this one
    but a store. The server keeps the environment it starts with, which is the one every
    test gets from ``_isolated`` (no ``PRISMQ_LLMTOOLS*`` setting; a cache directory of its
    own), so that no worker reads the user's settings or writes to the real cache.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("PRISMQ_LLMTOOLS"):
                patch.delenv(name)
        cache = tmp_path_factory.mktemp("processes") / "default-cache"
        patch.setenv("PRISMQ_LLMTOOLS_CACHE_DIR", str(cache))
        multiprocessing.forkserver.ensure_running()
    return context


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[Mode]:
    """Runs the test twice: with sync functions, then with async ones (see tests/drivers.py)."""
    mode = Mode(request.param)
    yield mode
    mode.close()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test, as dicts."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def shared_simulator() -> Iterator[Simulator]:
    """One default simulator for the whole run (start-up cost paid once)."""
    with Simulator(SimulatorConfig(seed=7)) as simulator:
        yield simulator


@pytest.fixture
def sim(shared_simulator: Simulator) -> Simulator:
    """The shared simulator with its statistics, buckets and scripted faults reset."""
    shared_simulator.reset(buckets=True, prompt_cache=True, faults=True)
    return shared_simulator


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
        for _ in range(600):  # (up to 30 s on a busy machine; it usually answers at once)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"redis-server exited with {process.returncode}")
                threading.Event().wait(0.05)
        else:
            pytest.fail("redis-server did not answer within 30 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
