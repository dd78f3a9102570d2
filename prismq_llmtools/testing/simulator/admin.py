"""``/_simulator/*``: the control endpoints a separate-process simulator is inspected by.

- ``GET /_simulator/stats``: the stats snapshot as JSON.
- ``POST /_simulator/reset``: zero the stats; ``{"buckets": true, "prompt_cache": true,
  "faults": true}`` also refills the buckets, forgets cached prompts, drops scripted faults.
- ``POST /_simulator/faults``: ``{"script": [{"kind": "service_unavailable"}, ...]}``
  appends scripted faults (fields as :class:`Fault`); ``GET`` lists the pending ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from prismq_llmtools.testing.simulator.faults import Fault, FaultInjector
from prismq_llmtools.testing.simulator.http import Reply, Request
from prismq_llmtools.testing.simulator.stats import StatsRecorder

__all__ = ["AdminRoutes", "ResetFn"]

ResetFn = Callable[[bool, bool, bool], None]
"""reset(buckets, prompt_cache, faults): zero the stats and optionally more."""


def _reply(value: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(value).encode())


def _bad(message: str) -> Reply:
    return _reply({"error": {"message": message, "type": "invalid_request_error"}}, 400)


def _object(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class AdminRoutes:
    """Answers the control endpoints (they are not counted in the stats)."""

    def __init__(self, *, stats: StatsRecorder, faults: FaultInjector, reset: ResetFn) -> None:
        self._stats = stats
        self._faults = faults
        self._reset = reset

    def handle(self, request: Request) -> Reply:
        """The reply to one control request."""
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/_simulator/stats"):
            return _reply(self._stats.snapshot().to_dict())
        if route == ("GET", "/_simulator/health"):
            return _reply({"status": "ok"})
        body = _object(request.body)
        if body is None:
            return _bad("the body must be a JSON object")
        if route == ("POST", "/_simulator/reset"):
            flags = [bool(body.get(name, False)) for name in ("buckets", "prompt_cache", "faults")]
            self._reset(*flags)
            return _reply({"reset": True})
        if route == ("GET", "/_simulator/faults"):
            return _reply({"script": [_fault_dict(f) for f in self._faults.pending()]})
        if route == ("POST", "/_simulator/faults"):
            script = body.get("script")
            if not isinstance(script, list) or not all(isinstance(f, dict) for f in script):
                return _bad("'script' must be a list of fault objects")
            try:
                faults = [Fault(**item) for item in script]
            except (TypeError, ValueError) as exc:
                return _bad(f"invalid fault: {exc}")
            self._faults.push(faults)
            return _reply({"pending": len(self._faults.pending())})
        return _reply({"error": {"message": f"no control endpoint {request.path}"}}, 404)


def _fault_dict(fault: Fault) -> dict[str, Any]:
    return {f.name: getattr(fault, f.name) for f in dataclasses.fields(fault)}
