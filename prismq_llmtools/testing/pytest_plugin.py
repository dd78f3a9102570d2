"""Pytest fixtures for the simulator: ``simulator`` and ``simulator_factory``.

Enable them with ``pytest_plugins = ["prismq_llmtools.testing.pytest_plugin"]`` in a
top-level ``conftest.py``. Each simulator listens on a free loopback port and stops when the
test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prismq_llmtools.testing.simulator import Simulator, SimulatorConfig

__all__ = ["SimulatorFactory", "simulator", "simulator_factory"]

SimulatorFactory = Callable[..., Simulator]
"""The type of the ``simulator_factory`` fixture, for annotating tests."""


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """Start simulators: ``factory(config=None, *, clock=None, **config_fields)``.

    ``config_fields`` build a :class:`SimulatorConfig` when no config is given, e.g.
    ``simulator_factory(rpm=3, seed=7)``.
    """
    started: list[Simulator] = []

    def start(
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        **config_fields: Any,
    ) -> Simulator:
        if config is not None and config_fields:
            raise TypeError("pass a config or config fields, not both")
        config = config or SimulatorConfig(**config_fields)
        simulator = Simulator(config, clock=clock).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def simulator(simulator_factory: SimulatorFactory) -> Simulator:
    """A running simulator with the default config (every known model, no limits, no faults)."""
    return simulator_factory()
