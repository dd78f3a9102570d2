"""Helpers for testing code that calls the OpenAI API, offline.

- :class:`Simulator`: a local OpenAI-compatible server (chat completions and streams,
  embeddings, responses, models, files, batches) with OpenAI's rate limits, usage counting,
  seeded faults and stats; configured by :class:`SimulatorConfig`.
- :class:`FakeClock`: a clock whose sleeps advance time instantly.
- ``prismq_llmtools.testing.pytest_plugin``: ``simulator`` and ``simulator_factory`` fixtures.

Names load on first use, so importing this package imports neither the server nor tiktoken.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prismq_llmtools.testing.clock import FakeClock
    from prismq_llmtools.testing.simulator import (
        AdmissionMode,
        BatchTiming,
        Fault,
        FaultKind,
        FaultProfile,
        LatencyModel,
        ModelLimits,
        ModelStats,
        Simulator,
        SimulatorConfig,
        SimulatorStats,
        format_duration,
    )
    from prismq_llmtools.testing.simulator.client import fetch_stats

__all__ = [
    "AdmissionMode",
    "BatchTiming",
    "FakeClock",
    "Fault",
    "FaultKind",
    "FaultProfile",
    "LatencyModel",
    "ModelLimits",
    "ModelStats",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "fetch_stats",
    "format_duration",
]

_HOMES = {
    "FakeClock": "prismq_llmtools.testing.clock",
    "fetch_stats": "prismq_llmtools.testing.simulator.client",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_HOMES.get(name, "prismq_llmtools.testing.simulator"))
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
