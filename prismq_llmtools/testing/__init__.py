"""Helpers for testing code that calls the OpenAI API, offline.

- :class:`Simulator`: a local OpenAI-compatible server (chat completions and streams,
  embeddings, responses, models, files, batches) with OpenAI's rate limits, usage counting,
  seeded faults and stats; configured by :class:`SimulatorConfig`.
- :class:`FakeClock`: a clock whose sleeps advance time instantly.
- ``prismq_llmtools.testing.pytest_plugin``: ``simulator`` and ``simulator_factory`` fixtures.
- :func:`reset`: the library's process-global state back as it was at import, between tests.

Names load on first use, so importing this package imports neither the server nor tiktoken.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from prismq_llmtools import _state

if TYPE_CHECKING:
    from prismq_llmtools.testing.clock import FakeClock
    from prismq_llmtools.testing.simulator import (
        Accounting,
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
    "Accounting",
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
    "reset",
]

_HOMES = {
    "FakeClock": "prismq_llmtools.testing.clock",
    "fetch_stats": "prismq_llmtools.testing.simulator.client",
}


def reset() -> None:
    """Put prismq_llmtools's process-global state back as it was at import.

    Call it between tests (e.g. from an autouse fixture), so that none sees what another
    left behind:

    - settings are read again from the settings file and the environment on next use;
    - the price table is the default again (the maintained snapshot plus ``[prices]``);
    - :func:`~prismq_llmtools.usage_totals` is empty (the same object, emptied);
    - the default state registry forgets every bucket, budget and limit declaration and
      closes its stores (SQLite, Redis connections and stores installed in it);
    - what :func:`~prismq_llmtools.configure_logging` set up is undone: structlog back to its
      defaults, the log file it opened closed;
    - the openai client instrumentation is removed; the next decorated call installs it again;
    - the token counter and its memo are new; a vocabulary loader is kept while the
      environment configures it alike (its vocabularies are verified, immutable data);
    - call ids start from a new random prefix.

    Objects you made yourself (a ``StateRegistry``, ``UsageTotals``, a cache directory) and
    structlog configured by your own code are yours to reset. Not thread-safe against calls
    in flight: call it when no decorated function is running.
    """
    _state.reset()


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_HOMES.get(name, "prismq_llmtools.testing.simulator"))
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
