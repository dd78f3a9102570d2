"""prismq_llmtools: stackable decorators that make OpenAI calls cheaper, safer and observable.

Importing this package does no work: it loads neither ``openai`` nor ``tiktoken``,
touches no file and opens no connection.
"""

from __future__ import annotations

from typing import Any

from prismq_llmtools.batch import batched
from prismq_llmtools.batch.items import Args
from prismq_llmtools.budget import token_budgeted
from prismq_llmtools.cache import bypass_cache, cached, refresh_cache
from prismq_llmtools.call import Call, Request
from prismq_llmtools.cost.tracking import cost_tracked, usage_totals
from prismq_llmtools.errors import (
    BatchError,
    BatchItemError,
    BudgetExceeded,
    ConfigurationError,
    IncompleteStreamError,
    ItemNotRun,
    LLMToolsError,
    RateLimitTimeout,
    RequestFormatError,
    RequestTooLarge,
    StateStoreError,
    TokenizerError,
    UnknownModelError,
    UnknownPriceError,
    VocabularyError,
)
from prismq_llmtools.events import configure_logging
from prismq_llmtools.ratelimit import rate_limited
from prismq_llmtools.retry import retried
from prismq_llmtools.settings import SettingsWarning
from prismq_llmtools.usage import Usage

__all__ = [
    "Args",
    "BatchError",
    "BatchItemError",
    "BudgetExceeded",
    "Call",
    "ConfigurationError",
    "IncompleteStreamError",
    "ItemNotRun",
    "LLMToolsError",
    "RateLimitTimeout",
    "Request",
    "RequestFormatError",
    "RequestTooLarge",
    "SettingsWarning",
    "StateStoreError",
    "TokenizerError",
    "UnknownModelError",
    "UnknownPriceError",
    "Usage",
    "VocabularyError",
    "batched",
    "bypass_cache",
    "cached",
    "configure_logging",
    "cost_tracked",
    "rate_limited",
    "refresh_cache",
    "retried",
    "token_budgeted",
    "usage_totals",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("prismq_llmtools")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
