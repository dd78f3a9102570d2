"""Building a :class:`SimulatorConfig` from plain data: a JSON or TOML file, or a dict.

The keys are the config's own field names; tables hold the nested value objects::

    seed = 7
    rpm = 500
    tpm = 200_000
    admission = "chars"           # or a table: [admission] prompt = "bytes", factor = 1.2
    [latency]
    base_s = 0.2
    [batch]
    time_scale = 1000
    [faults]
    server_error = 0.01
    [models."gpt-4o-mini"]        # overrides the catalog entry; new names add models
    tpm = 50_000
    [model_faults."gpt-4o"]
    rate_limit = 0.1
    [[script]]
    kind = "service_unavailable"
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.testing.simulator.catalog import DEFAULT_MODELS
from prismq_llmtools.testing.simulator.config import (
    Accounting,
    BatchTiming,
    LatencyModel,
    ModelLimits,
    SimulatorConfig,
)
from prismq_llmtools.testing.simulator.faults import Fault, FaultProfile

__all__ = ["config_from_mapping", "load_config"]

_SCALARS = ("rpm", "tpm", "admission", "seed", "prompt_caching")


def _build(kind: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where} must be a table/object")
    try:
        return kind(**data)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def config_from_mapping(data: Mapping[str, Any]) -> SimulatorConfig:
    """A config from a dict of field names (see the module docstring)."""
    known = {f.name for f in dataclasses.fields(SimulatorConfig)}
    unknown = set(data) - known
    if unknown:
        raise ConfigurationError(f"unknown simulator settings: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {name: data[name] for name in _SCALARS if name in data}
    if isinstance(data.get("admission"), Mapping):
        kwargs["admission"] = _build(Accounting, data["admission"], "admission")
    if "output_tokens" in data:
        low, high = data["output_tokens"]
        kwargs["output_tokens"] = (int(low), int(high))
    if "latency" in data:
        kwargs["latency"] = _build(LatencyModel, data["latency"], "latency")
    if "batch" in data:
        kwargs["batch"] = _build(BatchTiming, data["batch"], "batch")
    if "faults" in data:
        kwargs["faults"] = _build(FaultProfile, data["faults"], "faults")
    if "models" in data:
        models = dict(DEFAULT_MODELS)
        for name, fields in data["models"].items():
            base = models.get(name, ModelLimits())
            if not isinstance(fields, Mapping):
                raise ConfigurationError(f"models.{name} must be a table/object")
            try:
                models[name] = dataclasses.replace(base, **fields)
            except TypeError as exc:
                raise ConfigurationError(f"models.{name}: {exc}") from exc
        kwargs["models"] = models
    if "model_faults" in data:
        kwargs["model_faults"] = {
            name: _build(FaultProfile, fields, f"model_faults.{name}")
            for name, fields in data["model_faults"].items()
        }
    if "script" in data:
        kwargs["script"] = tuple(_build(Fault, item, "script[]") for item in data["script"])
    return SimulatorConfig(**kwargs)


def load_config(path: str | Path) -> SimulatorConfig:
    """A config from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read simulator config {path}: {exc}") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path} must hold an object/table of settings")
    return config_from_mapping(data)
