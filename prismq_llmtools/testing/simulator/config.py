"""The simulator's settings: frozen value objects, validated when built."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.testing.simulator.catalog import DEFAULT_MODELS, ModelLimits
from prismq_llmtools.testing.simulator.faults import Fault, FaultProfile

__all__ = [
    "Accounting",
    "AdmissionMode",
    "BatchTiming",
    "LatencyModel",
    "ModelLimits",
    "SimulatorConfig",
]

AdmissionMode = Literal["exact", "chars"]
"""How a request is charged against the token bucket at admission: ``exact`` counts the prompt
with tiktoken, ``chars`` estimates it as ceil(characters / 4) like OpenAI; both add the cap."""

PromptMeasure = Literal["exact", "chars", "bytes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Accounting:
    """A server's token charge at admission, for servers that count otherwise than we do.

    The charge is ``ceil(factor * (prompt + cap) + per_request)``, where ``prompt`` is
    measured by ``prompt``: ``exact`` (the token counter), ``chars`` (ceil(characters / 4)
    of the contents, as ``admission="chars"``) or ``bytes`` (ceil(bytes / 4) of the whole
    JSON request body, as a proxy estimating from the body's size would), and ``cap`` is the
    completion cap. ``Accounting()`` charges what ``admission="exact"`` charges.

    Args:
        prompt: how the prompt is measured.
        factor: multiplies prompt + cap (another tokenizer, a proxy's markup); finite, > 0.
        per_request: tokens added to every request (a chat template, a system prompt the
            server adds); finite, >= 0.
    """

    prompt: PromptMeasure = "exact"
    factor: float = 1.0
    per_request: float = 0.0

    def __post_init__(self) -> None:
        if self.prompt not in ("exact", "chars", "bytes"):
            raise ConfigurationError(
                f"Accounting.prompt must be 'exact', 'chars' or 'bytes', not {self.prompt!r}"
            )
        for name, low in (("factor", 0.0), ("per_request", 0.0)):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < low
                or (name == "factor" and value == low)
            ):
                bound = "> 0" if name == "factor" else ">= 0"
                raise ConfigurationError(
                    f"Accounting.{name} must be a finite number {bound}, got {value!r}"
                )

    def charge(self, *, tokens: int, chars: int, body_bytes: int, cap: int) -> int:
        """The tokens admission takes for one request."""
        if self.prompt == "exact":
            prompt = tokens
        else:
            prompt = math.ceil((chars if self.prompt == "chars" else body_bytes) / 4)
        return math.ceil(self.factor * (prompt + cap) + self.per_request - 1e-9)


def _non_negative(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise ConfigurationError(f"{owner}.{name} must not be negative, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyModel:
    """Time to answer: ``base_s + per_output_token_s * completion tokens + U(0, jitter_s)``.

    The jitter is seeded. Streams spread the per-token part over their chunks.
    """

    base_s: float = 0.0
    per_output_token_s: float = 0.0
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(
            "LatencyModel",
            base_s=self.base_s,
            per_output_token_s=self.per_output_token_s,
            jitter_s=self.jitter_s,
        )

    @property
    def is_zero(self) -> bool:
        """Whether every response is immediate."""
        return self.base_s == 0 and self.per_output_token_s == 0 and self.jitter_s == 0

    def first_byte_s(self, rng: random.Random) -> float:
        """Delay before the first byte of a response."""
        jitter = rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0
        return self.base_s + jitter


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchTiming:
    """How long each Batch API phase takes, in simulated seconds (divided by the time scale).

    Args:
        validating_s: From creation to ``in_progress``.
        per_request_s: In progress, per input line.
        finalizing_s: From the last line processed to ``completed``.
        cancelling_s: From a cancel request to ``cancelled``.
        time_scale: Simulated seconds per real second (1000: a 1000-second batch takes 1 s).
    """

    validating_s: float = 2.0
    per_request_s: float = 0.05
    finalizing_s: float = 2.0
    cancelling_s: float = 1.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        _non_negative(
            "BatchTiming",
            validating_s=self.validating_s,
            per_request_s=self.per_request_s,
            finalizing_s=self.finalizing_s,
            cancelling_s=self.cancelling_s,
        )
        if self.time_scale <= 0:
            raise ConfigurationError("BatchTiming.time_scale must be positive")

    def real_s(self, simulated_s: float) -> float:
        """Real seconds that ``simulated_s`` lasts at this time scale."""
        return simulated_s / self.time_scale


def _default_models() -> Mapping[str, ModelLimits]:
    return DEFAULT_MODELS


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """Everything the simulator does, fixed when it starts.

    Args:
        models: The models served (default: the current OpenAI chat, reasoning and
            embedding models). Another model gets 404 ``model_not_found``.
        rpm: Requests per minute of every model that sets none (None: unlimited).
        tpm: Tokens per minute of every model that sets none (None: unlimited).
        admission: How requests are charged against the token bucket: ``exact``, ``chars``,
            or an :class:`Accounting` (another factor, a per-request constant, body bytes).
        seed: Seeds content, embeddings, faults and jitter.
        output_tokens: Range of completion lengths (before the request's cap), picked per
            request from the seed and the request.
        prompt_caching: Report ``cached_tokens`` for repeated prompt prefixes (OpenAI's
            rule: prompts of 1024 tokens or more, in 128-token increments).
        faults: Fault probabilities of every model without its own profile.
        model_faults: Fault profiles per model.
        script: Faults the next matching requests get, in order.
        latency: Response latency (default: none).
        batch: Batch API phase durations and time scale.
    """

    models: Mapping[str, ModelLimits] = field(default_factory=_default_models)
    rpm: int | None = None
    tpm: int | None = None
    admission: AdmissionMode | Accounting = "exact"
    seed: int = 0
    output_tokens: tuple[int, int] = (16, 96)
    prompt_caching: bool = True
    faults: FaultProfile = field(default_factory=FaultProfile)
    model_faults: Mapping[str, FaultProfile] = field(default_factory=dict)
    script: tuple[Fault, ...] = ()
    latency: LatencyModel = field(default_factory=LatencyModel)
    batch: BatchTiming = field(default_factory=BatchTiming)

    def __post_init__(self) -> None:
        if not isinstance(self.admission, Accounting) and self.admission not in ("exact", "chars"):
            raise ConfigurationError(
                f"admission must be 'exact', 'chars' or an Accounting, not {self.admission!r}"
            )
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigurationError(f"SimulatorConfig.{name} must be a positive int or None")
        low, high = self.output_tokens
        if not 1 <= low <= high:
            raise ConfigurationError("output_tokens must be (low, high) with 1 <= low <= high")
        if not self.models:
            raise ConfigurationError("the simulator needs at least one model")
        unknown = set(self.model_faults) - set(self.models)
        if unknown:
            raise ConfigurationError(f"model_faults names unknown models: {sorted(unknown)}")
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        object.__setattr__(self, "model_faults", MappingProxyType(dict(self.model_faults)))
        object.__setattr__(self, "script", tuple(self.script))

    def limits_for(self, model: str) -> ModelLimits:
        """The limits of a configured model, with the config-wide rpm/tpm filled in."""
        limits = self.models[model]
        return ModelLimits(
            rpm=limits.rpm if limits.rpm is not None else self.rpm,
            tpm=limits.tpm if limits.tpm is not None else self.tpm,
            context_window=limits.context_window,
            max_output_tokens=limits.max_output_tokens,
            reasoning=limits.reasoning,
            embedding_dimensions=limits.embedding_dimensions,
            encoding=limits.encoding,
        )
