"""OpenAI's prices: the dated snapshot of :mod:`prismq_llmtools.pricing.snapshot`, under the
name the documentation uses (``from prismq_llmtools.openai.prices import openai_prices``)."""

from __future__ import annotations

from prismq_llmtools.pricing.snapshot import load_openai_prices, openai_prices

__all__ = ["load_openai_prices", "openai_prices"]
