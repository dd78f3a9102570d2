"""OpenAI prices from the maintained ``genai-prices`` data, as a :class:`PriceTable`.

genai-prices ships a snapshot of its price database inside the package and reads it
offline; it reaches the network only when an application starts its ``UpdatePrices``
thread itself. This module never does: :func:`openai_prices` maps the OpenAI part of the
current snapshot (the bundled one, or the one ``UpdatePrices`` fetched, if the application
opted in) into our frozen table at first use, and keeps it.

What the mapping keeps: per model the input, cached input and output prices in force on the
day of the mapping, long-context tiers, Batch API rates and each service tier with rates of
its own; the source's model names (exact aliases such as dated snapshots, then its prefix and
regex rules, in its order). Models billed in other units only (audio hours, characters) are
left out, so they count as unknown rather than free.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.pricing.money import ContextTier, Price, Rates
from prismq_llmtools.pricing.table import ModelPattern, PriceTable

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = ["load_openai_prices", "openai_prices"]

PROVIDER_ID = "openai"

# The day each genai-prices release we have read was published: its prices were checked
# then. A release we do not know yet is at least as recent as the newest one listed.
_RELEASED = {"0.2.3": date(2026, 11, 10)}
_TOKEN_KEYS = ("input_mtok", "cache_read_mtok", "output_mtok")


@functools.cache
def openai_prices() -> PriceTable:
    """Return the OpenAI price table: built from genai-prices at first use, then shared.

    ``openai_prices.cache_clear()`` rebuilds it on the next call, e.g. after the
    application started ``genai_prices.UpdatePrices`` to fetch newer prices (network opt-in).
    """
    return load_openai_prices()


def load_openai_prices(*, as_of: datetime | None = None) -> PriceTable:
    """Build a fresh OpenAI price table from genai-prices' current snapshot.

    Args:
        as_of: the moment whose prices apply where the source dates its prices (price
            changes, tier rates); default now.

    Raises:
        ConfigurationError: genai-prices is not installed.
    """
    try:
        import genai_prices
        from genai_prices.data_snapshot import get_snapshot
    except ImportError as error:  # pragma: no cover - a packaging error
        raise ConfigurationError(
            "OpenAI prices need the genai-prices package: pip install genai-prices"
        ) from error
    when = as_of if as_of is not None else datetime.now(UTC)
    snapshot = get_snapshot()
    provider = next((p for p in snapshot.providers if p.id == PROVIDER_ID), None)
    if provider is None:  # pragma: no cover - the data always has OpenAI
        raise LookupError(f"genai-prices {genai_prices.__version__} has no {PROVIDER_ID} prices")

    prices: dict[str, Price] = {}
    for model in provider.models:
        price = _price(model, when)
        if price is not None:
            prices[model.id.lower()] = price
    aliases, patterns = _names(provider, frozenset(prices))

    version = genai_prices.__version__
    if snapshot.from_auto_update:
        checked_on = snapshot.timestamp.date()
        source = f"genai-prices {version}, fetched {snapshot.timestamp:%Y-%m-%d %H:%M}"
    elif version in _RELEASED:
        checked_on, source = _RELEASED[version], f"genai-prices {version}"
    else:
        checked_on = max(_RELEASED.values())
        source = f"genai-prices {version} (checked on or after {checked_on})"
    return PriceTable(
        prices=prices,
        checked_on=checked_on,
        source=source,
        aliases=aliases,
        patterns=tuple(patterns),
    )


def _price(model: ModelInfo, when: datetime) -> Price | None:
    standard_source = model.get_prices(when)
    standard = _rates(standard_source)
    if standard is None:
        return None
    # Ask the source for each context's prices and keep those that differ from standard:
    # its own rules decide which variants apply on the day (and `default` changes nothing).
    batch_source = model.get_prices(when, {"processing": "batch"})
    batch = _rates(batch_source) if batch_source != standard_source else None
    tiers: dict[str, Rates] = {}
    for name in _service_tier_names(model):
        tier_source = model.get_prices(when, {"service_tier": name})
        tier = _rates(tier_source) if tier_source != standard_source else None
        if tier is not None:
            tiers[name] = tier
    return Price(standard=standard, batch=batch, service_tiers=tiers)


def _service_tier_names(model: ModelInfo) -> list[str]:
    names = {
        variant.when["service_tier"]
        for variant in model.price_variants or ()
        if variant.when.keys() == {"service_tier"}
    }
    return sorted(names)


def _rates(source: ModelPrice) -> Rates | None:
    """Our rates for a source price, or ``None`` when it is not priced per token."""
    priced = {key: value for key, value in vars(source).items() if value is not None}
    if not any(key in priced for key in _TOKEN_KEYS):
        # No token price: free (moderation) unless billed in another unit.
        return None if priced else Rates(input=Decimal(0), output=Decimal(0))
    values = {key: priced.get(key) for key in _TOKEN_KEYS}
    thresholds = sorted({start for value in values.values() for start in _tier_starts(value)})
    tiers = tuple(
        ContextTier(above_input_tokens=start, rates=_rates_at(values, start))
        for start in thresholds
    )
    return _rates_at(values, None, long_context=tiers)


def _tier_starts(value: Any) -> Iterator[int]:
    for tier in getattr(value, "tiers", ()):
        yield int(tier.start)


def _rates_at(
    values: dict[str, Any], start: int | None, long_context: tuple[ContextTier, ...] = ()
) -> Rates:
    cached = values["cache_read_mtok"]
    return Rates(
        input=_at(values["input_mtok"], start) or Decimal(0),
        output=_at(values["output_mtok"], start) or Decimal(0),
        cached_input=None if cached is None else _at(cached, start),
        long_context=long_context,
    )


def _at(value: Any, start: int | None) -> Decimal | None:
    """The price of one key for requests above ``start`` input tokens (``None``: base)."""
    if value is None or isinstance(value, Decimal):
        return value
    # A cliff: above a tier's start the whole request pays that tier's price.
    price: Decimal = value.base
    for tier in sorted(value.tiers, key=lambda tier: tier.start):
        if start is not None and tier.start <= start:
            price = tier.price
    return price


def _names(provider: Provider, priced: frozenset[str]) -> tuple[dict[str, str], list[ModelPattern]]:
    """The source's model-name rules: exact names as aliases, the rest as ordered patterns."""
    aliases: dict[str, str] = {}
    patterns: list[ModelPattern] = []
    for model in provider.models:
        model_id = model.id.lower()
        if model_id not in priced:
            continue
        for kind, value in _clauses(model.match):
            if kind == "equals":
                # Resolve the name the source's way: an earlier model's rule may claim it.
                owner = provider.find_model(value)
                owner_id = None if owner is None else owner.id.lower()
                if owner_id in priced and owner_id != value.lower():
                    aliases.setdefault(value.lower(), owner_id)
            else:
                patterns.append(ModelPattern(kind=kind, value=value, model=model_id))
    return aliases, patterns


def _clauses(clause: Any) -> Iterator[tuple[Any, str]]:
    """Flatten the source's match logic; an ``and`` clause (unused for OpenAI) is skipped."""
    kinds = {
        "ClauseEquals": ("equals", "equals"),
        "ClauseStartsWith": ("prefix", "starts_with"),
        "ClauseEndsWith": ("suffix", "ends_with"),
        "ClauseContains": ("contains", "contains"),
        "ClauseRegex": ("regex", "regex"),
    }
    name = type(clause).__name__
    if name == "ClauseOr":
        for inner in clause.or_:
            yield from _clauses(inner)
    elif name in kinds:
        kind, attribute = kinds[name]
        yield kind, getattr(clause, attribute)
