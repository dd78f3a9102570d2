"""Parse user price overrides (a TOML ``[prices]`` table) into :class:`Price` values.

The shape, in USD per 1M tokens::

    [prices."my-model"]
    input = 1.0
    cached_input = 0.5        # optional; default: the input price
    output = 4.0
    batch_discount = 0.5      # optional; or a [prices."my-model".batch] rates table
    [prices."my-model".service_tiers.flex]
    input = 0.5
    output = 2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.pricing.money import _EXACT, Price, Rates, usd_per_million

__all__ = ["parse_price_overrides"]

_RATE_KEYS = ("input", "output", "cached_input")
_PRICE_KEYS = (*_RATE_KEYS, "batch", "batch_discount", "service_tiers")


def parse_price_overrides(overrides: Mapping[str, Any]) -> dict[str, Price]:
    """Return lowercase model name -> price for every entry of a ``[prices]`` table.

    Raises:
        ConfigurationError: a bad entry; the message names the model and the key.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigurationError(f"prices must be a table of model names, got {overrides!r}")
    parsed: dict[str, Price] = {}
    for model, table in overrides.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(f"prices: a model name must be a non-empty string: {model!r}")
        name = model.strip().lower()
        if name in parsed:
            raise ConfigurationError(f'prices."{model}": given twice (names are case-insensitive)')
        parsed[name] = _price(f'prices."{model}"', table)
    return parsed


def _price(where: str, table: object) -> Price:
    table = _table(where, table)
    standard = _rates(where, table, allowed=_PRICE_KEYS)
    if "batch" in table and "batch_discount" in table:
        raise ConfigurationError(f"{where}: give batch or batch_discount, not both")
    batch = None
    if "batch" in table:
        batch = _rates(f"{where}.batch", table["batch"])
    elif "batch_discount" in table:
        discount = _usd(where, "batch_discount", table["batch_discount"])
        if discount > 1:
            raise ConfigurationError(
                f"{where}.batch_discount: the fraction taken off must be between 0 and 1,"
                f" got {table['batch_discount']!r}"
            )
        batch = standard.scaled(_EXACT.subtract(Decimal(1), discount))
    tiers = _table(f"{where}.service_tiers", table.get("service_tiers", {}))
    service_tiers = {
        str(name): _rates(f"{where}.service_tiers.{name}", rates) for name, rates in tiers.items()
    }
    return Price(standard=standard, batch=batch, service_tiers=service_tiers)


def _rates(where: str, table: object, *, allowed: tuple[str, ...] = _RATE_KEYS) -> Rates:
    table = _table(where, table)
    _reject_unknown_keys(where, table, allowed)
    for key in ("input", "output"):
        if key not in table:
            raise ConfigurationError(f"{where}.{key}: missing (USD per 1M tokens)")
    cached = table.get("cached_input")
    return Rates(
        input=_usd(where, "input", table["input"]),
        output=_usd(where, "output", table["output"]),
        cached_input=None if cached is None else _usd(where, "cached_input", cached),
    )


def _table(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: expected a table, got {value!r}")
    return value


def _reject_unknown_keys(where: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigurationError(
                f"{where}.{key}: unknown key (expected one of: {', '.join(allowed)})"
            )


def _usd(where: str, key: str, value: object) -> Decimal:
    try:
        return usd_per_million(value)
    except ValueError as error:
        raise ConfigurationError(f"{where}.{key}: {error}") from None
