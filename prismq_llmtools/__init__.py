"""prismq_llmtools: stackable decorators that make OpenAI calls cheaper, safer and observable.

Importing this package does no work: it loads neither ``openai`` nor ``tiktoken``,
touches no file and opens no connection.
"""

from __future__ import annotations

from typing import Any

from prismq_llmtools.errors import (
    ConfigurationError,
    LLMToolsError,
    UnknownModelError,
    VocabularyError,
)

__all__ = [
    "ConfigurationError",
    "LLMToolsError",
    "UnknownModelError",
    "VocabularyError",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("prismq_llmtools")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
