"""Exceptions raised by prismq_llmtools.

The tree::

    LLMToolsError
    ├── ConfigurationError (also ValueError)    bad settings, raised at decoration or load time
    │   └── UnknownModelError (also KeyError)   a model with no known tokenizer encoding
    └── VocabularyError (also RuntimeError)     a tokenizer vocabulary is missing or corrupt

Errors from the OpenAI client itself are never wrapped: callers keep catching
``openai.*Error`` as they already do.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "LLMToolsError",
    "UnknownModelError",
    "VocabularyError",
]


class LLMToolsError(Exception):
    """Root of every error this library raises."""


class ConfigurationError(LLMToolsError, ValueError):
    """A setting is invalid; raised as early as possible (decoration or load time)."""


class UnknownModelError(ConfigurationError, KeyError):
    """The model maps to no known tokenizer encoding and no fallback is configured."""

    def __init__(self, model: str, hint: str = "") -> None:
        self.model = model
        message = f"no tokenizer encoding is known for model {model!r}"
        super().__init__(f"{message}; {hint}" if hint else message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class VocabularyError(LLMToolsError, RuntimeError):
    """A tokenizer vocabulary file could not be found or failed its checksum."""
