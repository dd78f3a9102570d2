"""A real Prometheus for the scrape test, started as soon as the run knows it needs one.

Prometheus hands a new scrape target to its scrape loop only after its target discovery's
first update, which it sends five seconds after start (a fixed period in the Prometheus
shipped by Debian; no flag shortens it). Started when collection ends, in a full run the
server has been scraping our endpoint long before the test runs, and the test waits for one
scrape interval (a second) instead of about six.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_KEY = pytest.StashKey["Scraping"]()


@dataclass
class Scraping:
    """A Prometheus (``url``) scraping every second an endpoint that serves ``registry``."""

    url: str
    registry: CollectorRegistry
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(config: pytest.Config, binary: str) -> Scraping:
    from prometheus_client import CollectorRegistry

    from prismq_llmtools import prometheus

    registry = CollectorRegistry()  # the test registers the exporter in it
    server = prometheus.start_http_server(0, registry=registry)
    directory = Path(tempfile.mkdtemp(prefix="prometheus-"))
    port = _free_port()
    settings = directory / "prometheus.yml"
    settings.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: llm\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.server_port}']\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={settings}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()
        server.server_close()
        shutil.rmtree(directory, ignore_errors=True)

    config.add_cleanup(stop)
    scraping = Scraping(url=f"http://127.0.0.1:{port}", registry=registry, process=process)
    config.stash[_KEY] = scraping
    return scraping


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start Prometheus now if a test that will run needs it (it then works in the background)."""
    binary = shutil.which("prometheus")
    needed = any("prometheus_scraping" in getattr(i, "fixturenames", ()) for i in session.items)
    if binary is not None and needed and not session.config.option.collectonly:
        _start(session.config, binary)


@pytest.fixture(scope="session")
def prometheus_scraping(pytestconfig: pytest.Config) -> Scraping:
    """Debian's prometheus on a free loopback port, scraping our endpoint every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "prometheus is not installed, so no real server scrapes the endpoint here"
            " (Debian: apt-get install prometheus; `make test` installs it)"
        )
    scraping = pytestconfig.stash.get(_KEY, None)
    return scraping if scraping is not None else _start(pytestconfig, binary)
