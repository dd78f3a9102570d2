"""An OpenAI-compatible API simulator for tests, demos and benchmarks (loopback only).

See ``docs/simulator.md``. Everything users need is re-exported from
:mod:`prismq_llmtools.testing`.
"""

from __future__ import annotations

from prismq_llmtools.testing.simulator.config import (
    Accounting,
    AdmissionMode,
    BatchTiming,
    LatencyModel,
    ModelLimits,
    SimulatorConfig,
)
from prismq_llmtools.testing.simulator.faults import Fault, FaultKind, FaultProfile
from prismq_llmtools.testing.simulator.headers import format_duration
from prismq_llmtools.testing.simulator.server import HOST, Simulator
from prismq_llmtools.testing.simulator.stats import ModelStats, SimulatorStats

__all__ = [
    "HOST",
    "Accounting",
    "AdmissionMode",
    "BatchTiming",
    "Fault",
    "FaultKind",
    "FaultProfile",
    "LatencyModel",
    "ModelLimits",
    "ModelStats",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "format_duration",
]
