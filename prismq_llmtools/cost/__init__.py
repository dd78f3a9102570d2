"""Money for OpenAI calls: prices as frozen data and exact costs in Decimal USD.

This module only computes: it imports neither ``openai`` nor a price source. The default
:class:`PriceTable` is built from maintained price data by
``prismq_llmtools.openai.prices``; users override it from a TOML ``[prices]`` table.

Cached input tokens are part of the input tokens and reasoning tokens part of the output
tokens (see :class:`~prismq_llmtools.usage.Usage`), so a cost has exactly three parts:
uncached input, cached input and output (reasoning is billed as output).
"""

from __future__ import annotations

from prismq_llmtools.errors import UnknownPriceError
from prismq_llmtools.pricing.money import (
    BATCH,
    ESTIMATE_PRICE,
    STANDARD,
    UNKNOWN_PRICE_POLICIES,
    ZERO_PRICE,
    ContextTier,
    Cost,
    Price,
    Rates,
    UnknownPricePolicy,
    cost_of,
    format_usd,
    usd_per_million,
)
from prismq_llmtools.pricing.table import (
    MatchKind,
    ModelPattern,
    PatternKind,
    PriceMatch,
    PriceTable,
    read_price_overrides,
)

__all__ = [
    "BATCH",
    "ESTIMATE_PRICE",
    "STANDARD",
    "UNKNOWN_PRICE_POLICIES",
    "ZERO_PRICE",
    "ContextTier",
    "Cost",
    "MatchKind",
    "ModelPattern",
    "PatternKind",
    "Price",
    "PriceMatch",
    "PriceTable",
    "Rates",
    "UnknownPriceError",
    "UnknownPricePolicy",
    "cost_of",
    "format_usd",
    "read_price_overrides",
    "usd_per_million",
]
