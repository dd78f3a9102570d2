"""The demo's run, started as soon as the run knows a test needs it.

``prismq-llmtools demo`` spends most of its four seconds waiting, as the simulator's rate
limits and the retries' backoff ask it to, not computing. Started when collection ends, it
waits while the other tests run, and its test reads what it printed and logged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ARGUMENTS = [
    "--articles",
    "16",
    "--fault-rate",
    "0.2",  # six attempts all failing: 0.2**6, once in 15,000 calls
]
_KEY = pytest.StashKey["DemoRun"]()


@dataclass
class DemoRun:
    """``python -m prismq_llmtools demo`` running in ``directory``, logging to ``log``."""

    process: subprocess.Popen[bytes]
    directory: Path
    log: Path

    def finish(self) -> tuple[int, str, str]:
        """Wait for the demo to end: its exit status, what it printed, and its errors."""
        status = self.process.wait(timeout=120)
        out = (self.directory / "stdout.txt").read_text()
        return status, out, (self.directory / "stderr.txt").read_text()


def _start(config: pytest.Config) -> DemoRun:
    directory = Path(tempfile.mkdtemp(prefix="demo-"))
    log = directory / "events.jsonl"
    # The environment every test gets (tests/conftest.py, _isolated): none of the user's
    # PRISMQ_LLMTOOLS* settings, and a cache directory of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_LLMTOOLS")}
    env["PRISMQ_LLMTOOLS_CACHE_DIR"] = str(directory / "default-cache")
    with (directory / "stdout.txt").open("wb") as out, (directory / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "prismq_llmtools", "demo", *ARGUMENTS, "--log", str(log)],
            cwd=directory,  # the example ships with the package: the demo runs from anywhere
            env=env,
            stdout=out,
            stderr=err,
        )

    def stop() -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)

    config.add_cleanup(stop)
    run = DemoRun(process=process, directory=directory, log=log)
    config.stash[_KEY] = run
    return run


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the demo now if a test that will run needs it (it then waits in the background)."""
    if session.config.option.collectonly:
        return
    if any("demo_run" in getattr(item, "fixturenames", ()) for item in session.items):
        _start(session.config)


@pytest.fixture(scope="session")
def demo_run(pytestconfig: pytest.Config) -> DemoRun:
    """The demo's run (started when collection ended)."""
    run = pytestconfig.stash.get(_KEY, None)
    return run if run is not None else _start(pytestconfig)
