"""What the simulator saw: requests, rejections by reason, faults, tokens billed, per model."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ModelStats", "SimulatorStats", "StatsRecorder"]

_TOKEN_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "charged_tokens",
)


def _frozen(mapping: Mapping[Any, int]) -> Mapping[Any, int]:
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStats:
    """Counters of one model.

    ``charged_tokens`` is what admission took from the TPM bucket (prompt estimate plus cap);
    the other token counts are what responses billed (``usage``), batch lines included.
    """

    received: int = 0
    served: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    charged_tokens: int = 0

    @property
    def rate_limited(self) -> int:
        """429s sent because a bucket was empty (injected 429s not included)."""
        return self.rejected.get("rate_limit_requests", 0) + self.rejected.get(
            "rate_limit_tokens", 0
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {"received": self.received, "served": self.served}
        out["rejected"] = dict(self.rejected)
        out.update({name: getattr(self, name) for name in _TOKEN_FIELDS})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelStats:
        """The inverse of :meth:`to_dict`."""
        return cls(
            received=int(data["received"]),
            served=int(data["served"]),
            rejected=_frozen({str(k): int(v) for k, v in data["rejected"].items()}),
            **{name: int(data[name]) for name in _TOKEN_FIELDS},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorStats:
    """A snapshot of everything the simulator counted since it started or was reset.

    ``received`` counts API requests (not ``/_simulator/*``); ``served`` those answered 2xx;
    ``rejected`` the others by reason (``rate_limit_requests``, ``rate_limit_tokens``,
    ``request_too_large``, ``model_not_found``, ``context_length_exceeded``,
    ``invalid_request``, ``not_found``, and each injected fault that is not a 2xx);
    ``faults`` every injected fault by kind; ``statuses`` responses by HTTP status (a dropped
    connection has none). Batch input lines count in ``batch_requests`` and in the token
    totals only. Token counts are billed usage summed over all models.
    """

    received: int = 0
    served: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)
    faults: Mapping[str, int] = field(default_factory=dict)
    statuses: Mapping[int, int] = field(default_factory=dict)
    batch_requests: int = 0
    models: Mapping[str, ModelStats] = field(default_factory=dict)

    @property
    def rate_limited(self) -> int:
        """429s sent because a bucket was empty, over all models."""
        return sum(model.rate_limited for model in self.models.values())

    def _sum(self, name: str) -> int:
        return sum(int(getattr(model, name)) for model in self.models.values())

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens billed."""
        return self._sum("prompt_tokens")

    @property
    def completion_tokens(self) -> int:
        """Completion tokens billed (reasoning included)."""
        return self._sum("completion_tokens")

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from the prompt cache."""
        return self._sum("cached_tokens")

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent on reasoning."""
        return self._sum("reasoning_tokens")

    @property
    def charged_tokens(self) -> int:
        """Tokens admission took from the TPM buckets."""
        return self._sum("charged_tokens")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``GET /_simulator/stats`` returns)."""
        return {
            "received": self.received,
            "served": self.served,
            "rejected": dict(self.rejected),
            "faults": dict(self.faults),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "batch_requests": self.batch_requests,
            "models": {name: model.to_dict() for name, model in self.models.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatorStats:
        """The inverse of :meth:`to_dict`."""
        return cls(
            received=int(data["received"]),
            served=int(data["served"]),
            rejected=_frozen({str(k): int(v) for k, v in data["rejected"].items()}),
            faults=_frozen({str(k): int(v) for k, v in data["faults"].items()}),
            statuses=_frozen({int(k): int(v) for k, v in data["statuses"].items()}),
            batch_requests=int(data["batch_requests"]),
            models=MappingProxyType(
                {name: ModelStats.from_dict(m) for name, m in sorted(data["models"].items())}
            ),
        )


class _ModelCounters:
    __slots__ = ("received", "rejected", "served", "tokens")

    def __init__(self) -> None:
        self.received = 0
        self.served = 0
        self.rejected: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()

    def snapshot(self) -> ModelStats:
        return ModelStats(
            received=self.received,
            served=self.served,
            rejected=_frozen(self.rejected),
            **{name: self.tokens[name] for name in _TOKEN_FIELDS},
        )


class StatsRecorder:
    """Thread-safe counters behind :class:`SimulatorStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._received = 0
            self._served = 0
            self._batch_requests = 0
            self._rejected: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._statuses: Counter[int] = Counter()
            self._models: dict[str, _ModelCounters] = {}

    def _model(self, model: str) -> _ModelCounters:
        counters = self._models.get(model)
        if counters is None:
            counters = self._models[model] = _ModelCounters()
        return counters

    def received(self, model: str | None) -> None:
        """One API request arrived."""
        with self._lock:
            self._received += 1
            if model is not None:
                self._model(model).received += 1

    def batch_line(self) -> None:
        """One batch input line was processed (its usage is recorded by :meth:`billed`)."""
        with self._lock:
            self._batch_requests += 1

    def fault(self, kind: str) -> None:
        """A fault was injected."""
        with self._lock:
            self._faults[kind] += 1

    def charged(self, model: str, tokens: int) -> None:
        """Admission took ``tokens`` from the model's TPM bucket."""
        with self._lock:
            self._model(model).tokens["charged_tokens"] += tokens

    def responded(self, model: str | None, status: int | None, reason: str | None) -> None:
        """A response was sent (``status`` None: the connection was dropped).

        ``reason`` names why a non-2xx response (or a drop) was sent.
        """
        with self._lock:
            ok = status is not None and 200 <= status < 300
            if status is not None:
                self._statuses[status] += 1
            if ok:
                self._served += 1
            else:
                reason = reason or f"status_{status}"
                self._rejected[reason] += 1
            if model is not None:
                counters = self._model(model)
                if ok:
                    counters.served += 1
                else:
                    counters.rejected[reason or f"status_{status}"] += 1

    def billed(
        self,
        model: str,
        *,
        prompt: int,
        completion: int,
        cached: int = 0,
        reasoning: int = 0,
    ) -> None:
        """A response billed this usage."""
        with self._lock:
            tokens = self._model(model).tokens
            tokens["prompt_tokens"] += prompt
            tokens["completion_tokens"] += completion
            tokens["cached_tokens"] += cached
            tokens["reasoning_tokens"] += reasoning

    def snapshot(self) -> SimulatorStats:
        """A frozen copy of the counters."""
        with self._lock:
            return SimulatorStats(
                received=self._received,
                served=self._served,
                rejected=_frozen(self._rejected),
                faults=_frozen(self._faults),
                statuses=_frozen(self._statuses),
                batch_requests=self._batch_requests,
                models=MappingProxyType(
                    {name: c.snapshot() for name, c in sorted(self._models.items())}
                ),
            )
