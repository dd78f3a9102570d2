"""The servers a benchmark starts for itself, each in a process of its own on a free loopback
port, and stops when it is done: ``redis-server`` and the simulator (``prismq-llmtools
simulate``).

    with redis_server() as url:                 # None where redis-server is not installed
        ...
    with simulator_process("--rpm", "600") as base:
        ...  # base + "/v1" for an OpenAI client; stats(base) for what it served
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["free_port", "redis_server", "running", "simulator_process", "stats"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _answers(check: Callable[[], object]) -> bool:
    try:
        check()
    except OSError:
        return False
    return True


def _listening(port: int) -> bool:
    return _answers(lambda: socket.create_connection((HOST, port), timeout=5).close())


@contextmanager
def running(
    command: list[str], ready: Callable[[], bool], within_s: float = 30.0
) -> Iterator[None]:
    """Run ``command`` for the duration of the block, entered once ``ready()`` is true."""
    process = subprocess.Popen(  # noqa: S603 - our own CLI or redis-server, fixed arguments
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + within_s
        while not ready():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def redis_server() -> Iterator[str | None]:
    """The URL of a private ``redis-server`` (no persistence); None, said so, where none is
    installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server not installed (Debian: apt-get install redis-server): Redis skipped")
        yield None
        return
    port = free_port()
    command = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    with running(command, lambda: _listening(port)):
        yield f"redis://{HOST}:{port}/0"


@contextmanager
def simulator_process(*options: str) -> Iterator[str]:
    """The simulator with ``options`` (``simulate``'s) in a process of its own; yields its base
    URL (``/v1`` is the API's)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "prismq_llmtools.testing.simulator", "--port", str(port)]
    with running([*command, *options], lambda: _answers(lambda: stats(base))):
        yield base


def stats(base: str) -> dict[str, Any]:
    """What the simulator at ``base`` has served (its ``/_simulator/stats``)."""
    with urllib.request.urlopen(f"{base}/_simulator/stats", timeout=5) as reply:  # noqa: S310
        data: dict[str, Any] = json.load(reply)
    return data
