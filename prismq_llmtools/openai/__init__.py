"""Everything that knows OpenAI: token counting, model encodings, offline vocabularies.

Importing this package loads neither ``openai`` nor ``tiktoken``; the names below are
imported from their modules on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prismq_llmtools.openai.models import ModelInfo, encoding_for, model_info
    from prismq_llmtools.openai.tokens import (
        Endpoint,
        TokenCounter,
        TokenEstimate,
        count_request,
        count_text,
        default_counter,
    )
    from prismq_llmtools.openai.vocab import VocabularyLoader, get_encoding

__all__ = [
    "Endpoint",
    "ModelInfo",
    "TokenCounter",
    "TokenEstimate",
    "VocabularyLoader",
    "count_request",
    "count_text",
    "default_counter",
    "encoding_for",
    "get_encoding",
    "model_info",
]

_HOMES = {
    "Endpoint": "tokens",
    "ModelInfo": "models",
    "TokenCounter": "tokens",
    "TokenEstimate": "tokens",
    "VocabularyLoader": "vocab",
    "count_request": "tokens",
    "count_text": "tokens",
    "default_counter": "tokens",
    "encoding_for": "models",
    "get_encoding": "vocab",
    "model_info": "models",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
