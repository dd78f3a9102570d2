"""The models the simulator serves by default, with their published context windows.

Rate limits are deliberately absent here: they depend on the account's tier, so a test or a
run states the limits it wants (``SimulatorConfig(rpm=..., tpm=...)`` or per model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prismq_llmtools.errors import ConfigurationError

__all__ = ["DEFAULT_MODELS", "ModelLimits", "base_model_name"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLimits:
    """What the simulator knows about one model: its rate limits and its sizes.

    Args:
        rpm: Requests per minute (None: the config's ``rpm``, else unlimited).
        tpm: Tokens per minute (None: the config's ``tpm``, else unlimited).
        context_window: Most prompt plus completion tokens one request may use.
        max_output_tokens: Most completion tokens one request may ask for (None: no limit).
        reasoning: Part of each output is reasoning tokens (o-series, gpt-5).
        embedding_dimensions: Set for embedding models: their default vector size.
        encoding: Tokenizer encoding for a model the token counter does not know.
    """

    rpm: int | None = None
    tpm: int | None = None
    context_window: int = 128_000
    max_output_tokens: int | None = 16_384
    reasoning: bool = False
    embedding_dimensions: int | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "context_window", "max_output_tokens", "embedding_dimensions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigurationError(f"ModelLimits.{name} must be a positive int or None")

    @property
    def is_embedding(self) -> bool:
        """Whether the model serves ``/v1/embeddings`` (and nothing else)."""
        return self.embedding_dimensions is not None


_GPT4O = ModelLimits(context_window=128_000, max_output_tokens=16_384)
_GPT41 = ModelLimits(context_window=1_047_576, max_output_tokens=32_768)
_O_SERIES = ModelLimits(context_window=200_000, max_output_tokens=100_000, reasoning=True)
_GPT5 = ModelLimits(context_window=400_000, max_output_tokens=128_000, reasoning=True)

DEFAULT_MODELS: Mapping[str, ModelLimits] = {
    "gpt-4o": _GPT4O,
    "gpt-4o-mini": _GPT4O,
    "gpt-4.1": _GPT41,
    "gpt-4.1-mini": _GPT41,
    "gpt-4.1-nano": _GPT41,
    "gpt-4-turbo": ModelLimits(context_window=128_000, max_output_tokens=4_096),
    "gpt-4": ModelLimits(context_window=8_192, max_output_tokens=8_192),
    "gpt-3.5-turbo": ModelLimits(context_window=16_385, max_output_tokens=4_096),
    "o1": _O_SERIES,
    "o1-mini": ModelLimits(context_window=128_000, max_output_tokens=65_536, reasoning=True),
    "o3": _O_SERIES,
    "o3-mini": _O_SERIES,
    "o4-mini": _O_SERIES,
    "gpt-5": _GPT5,
    "gpt-5-mini": _GPT5,
    "gpt-5-nano": _GPT5,
    "text-embedding-3-small": ModelLimits(
        context_window=8_191, max_output_tokens=None, embedding_dimensions=1_536
    ),
    "text-embedding-3-large": ModelLimits(
        context_window=8_191, max_output_tokens=None, embedding_dimensions=3_072
    ),
    "text-embedding-ada-002": ModelLimits(
        context_window=8_191, max_output_tokens=None, embedding_dimensions=1_536
    ),
}

# Dated snapshots: gpt-4o-2024-08-06, gpt-4-0613, gpt-3.5-turbo-0125.
_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def base_model_name(model: str, known: Mapping[str, object]) -> str | None:
    """The configured name ``model`` resolves to (itself or its snapshot's base), else None."""
    if model in known:
        return model
    match = _SNAPSHOT.match(model)
    if match and match.group("base") in known:
        return match.group("base")
    return None
