from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from prismq_llmtools.testing.simulator import LatencyModel, Simulator, SimulatorConfig


@pytest.fixture(scope="session")
def jitter_simulator() -> Iterator[Simulator]:
    """Answers after 0 to 60 ms, so concurrent calls finish out of order."""
    with Simulator(SimulatorConfig(seed=9, latency=LatencyModel(jitter_s=0.06))) as sim:
        yield sim


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]
