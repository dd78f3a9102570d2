"""Talking to a simulator in another process: its stats, reset and fault script over HTTP."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from prismq_llmtools.testing.simulator.faults import Fault
from prismq_llmtools.testing.simulator.stats import SimulatorStats

__all__ = ["fetch_stats", "push_faults", "reset_remote"]


def _control_url(url: str, endpoint: str) -> str:
    base = url.rstrip("/").removesuffix("/v1")
    if not base.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"a simulator listens on loopback only, not {url!r}")
    return f"{base}/_simulator/{endpoint}"


def _call(url: str, endpoint: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - a loopback http URL, checked above
        _control_url(url, endpoint),
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return json.load(response)


def fetch_stats(url: str, *, timeout_s: float = 10.0) -> SimulatorStats:
    """The stats of the simulator at ``url`` (its ``/v1`` URL or its base URL)."""
    return SimulatorStats.from_dict(_call(url, "stats", timeout_s=timeout_s))


def reset_remote(
    url: str, *, buckets: bool = False, prompt_cache: bool = False, faults: bool = False
) -> None:
    """Zero the stats of the simulator at ``url`` (and optionally more, as ``Simulator.reset``)."""
    _call(url, "reset", {"buckets": buckets, "prompt_cache": prompt_cache, "faults": faults})


def push_faults(url: str, faults: Iterable[Fault]) -> None:
    """Append scripted faults to the simulator at ``url``."""
    script = [{f.name: getattr(fault, f.name) for f in fields(fault)} for fault in faults]
    _call(url, "faults", {"script": script})
