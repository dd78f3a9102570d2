from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from prismq_llmtools.testing.simulator import LatencyModel, Simulator, SimulatorConfig


@pytest.fixture(scope="session")
def slow_simulator() -> Iterator[Simulator]:
    """A simulator that answers after 0.3 s: long enough for identical calls to overlap."""
    with Simulator(SimulatorConfig(seed=7, latency=LatencyModel(base_s=0.3))) as sim:
        yield sim


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]
