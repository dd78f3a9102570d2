"""prismq_llmtools: stackable decorators that make OpenAI calls cheaper, safer and observable.

Importing this package does no work: it loads neither ``openai`` nor ``tiktoken``,
touches no file and opens no connection.
"""

from __future__ import annotations

from typing import Any

from prismq_llmtools.budget import token_budgeted
from prismq_llmtools.call import Call, Request
from prismq_llmtools.errors import (
    BudgetExceeded,
    ConfigurationError,
    IncompleteStreamError,
    LLMToolsError,
    RateLimitTimeout,
    RequestTooLarge,
    StateStoreError,
    UnknownModelError,
    VocabularyError,
)
from prismq_llmtools.events import configure_logging
from prismq_llmtools.ratelimit import rate_limited
from prismq_llmtools.retry import retried
from prismq_llmtools.tracking import cost_tracked, usage_totals
from prismq_llmtools.usage import Usage

__all__ = [
    "BudgetExceeded",
    "Call",
    "ConfigurationError",
    "IncompleteStreamError",
    "LLMToolsError",
    "RateLimitTimeout",
    "Request",
    "RequestTooLarge",
    "StateStoreError",
    "UnknownModelError",
    "Usage",
    "VocabularyError",
    "configure_logging",
    "cost_tracked",
    "rate_limited",
    "retried",
    "token_budgeted",
    "usage_totals",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("prismq_llmtools")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
