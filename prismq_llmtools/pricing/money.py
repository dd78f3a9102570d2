"""Rates, prices and exact Decimal costs (re-exported by :mod:`prismq_llmtools.cost`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from types import MappingProxyType
from typing import Any, Literal

from prismq_llmtools.usage import Usage

__all__ = [
    "BATCH",
    "ESTIMATE_PRICE",
    "STANDARD",
    "UNKNOWN_PRICE_POLICIES",
    "ZERO_PRICE",
    "ContextTier",
    "Cost",
    "Price",
    "Rates",
    "UnknownPricePolicy",
    "cost_of",
    "format_usd",
    "total_usd_of",
    "usd_per_million",
]

UnknownPricePolicy = Literal["raise", "zero", "estimate"]
"""What to do for a model with no known price: raise ``UnknownPriceError``, cost it at $0,
or cost it at the table's estimate price. Zero and estimate give ``Cost.price_known=False``."""

UNKNOWN_PRICE_POLICIES: tuple[UnknownPricePolicy, ...] = ("raise", "zero", "estimate")

STANDARD = "standard"
"""Name of the rates used when neither the Batch API nor a priced service tier applies."""
BATCH = "batch"
"""Name of the Batch API rates."""

# Every cost is computed in this private context, never the caller's thread-local one: 60
# digits hold any token count times any price, and trapping Inexact turns a rounding (which
# would silently break exact sums) into an error.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])
_ZERO = Decimal(0)


def _check_rate(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {value!r}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative USD amount, got {value!r}")


def usd_per_million(value: object) -> Decimal:
    """Convert a price written by a person (int, float, str or Decimal) to an exact Decimal.

    Floats go through their shortest ``repr``, so ``0.15`` becomes ``Decimal("0.15")``.

    Raises:
        ValueError: not a number, not finite, or negative (``bool`` is not a number here).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number of USD per 1M tokens, got {value!r}")
    try:
        rate = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"expected a number of USD per 1M tokens, got {value!r}") from None
    if not rate.is_finite() or rate < 0:
        raise ValueError(f"expected a finite, non-negative USD amount, got {value!r}")
    return rate


@dataclass(frozen=True, slots=True, kw_only=True)
class Rates:
    """Prices in USD per 1M tokens for one way of buying a model.

    Args:
        input: price of an uncached input token.
        output: price of an output token, reasoning tokens included.
        cached_input: price of an input token served from the prompt cache; ``None`` means
            no cache discount (the input price).
        long_context: higher rates for requests whose input exceeds a threshold. The whole
            request pays the tier's rates, as OpenAI bills long prompts.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    long_context: tuple[ContextTier, ...] = ()

    def __post_init__(self) -> None:
        _check_rate("Rates.input", self.input)
        _check_rate("Rates.output", self.output)
        if self.cached_input is not None:
            _check_rate("Rates.cached_input", self.cached_input)
        thresholds = [tier.above_input_tokens for tier in self.long_context]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("Rates.long_context must be sorted by distinct thresholds")
        if any(tier.rates.long_context for tier in self.long_context):
            raise ValueError("the rates of a long-context tier cannot have tiers themselves")

    @property
    def cached_input_rate(self) -> Decimal:
        """Price of a cached input token (the input price when there is no discount)."""
        return self.input if self.cached_input is None else self.cached_input

    def for_input_tokens(self, input_tokens: int) -> Rates:
        """Return the rates that apply to one request with this many input tokens."""
        chosen = self
        for tier in self.long_context:
            if input_tokens > tier.above_input_tokens:
                chosen = tier.rates
        return chosen

    def scaled(self, factor: Decimal) -> Rates:
        """Return these rates (tiers included) multiplied by ``factor``, exactly."""
        return Rates(
            input=_EXACT.multiply(self.input, factor),
            output=_EXACT.multiply(self.output, factor),
            cached_input=(
                None if self.cached_input is None else _EXACT.multiply(self.cached_input, factor)
            ),
            long_context=tuple(
                ContextTier(above_input_tokens=t.above_input_tokens, rates=t.rates.scaled(factor))
                for t in self.long_context
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextTier:
    """Rates for a request with more than ``above_input_tokens`` input tokens."""

    above_input_tokens: int
    rates: Rates

    def __post_init__(self) -> None:
        value = self.above_input_tokens
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"above_input_tokens must be a non-negative int, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """Everything needed to cost a model's usage.

    Args:
        standard: the ordinary rates.
        batch: Batch API rates; ``None`` when the model has no batch price (standard applies).
        service_tiers: rates per ``service_tier`` as OpenAI reports it in the response
            (``flex``, ``priority``, ...). A tier not listed here costs the standard rates.
        known: ``False`` for a stand-in price used because the model's price is unknown.
    """

    standard: Rates
    batch: Rates | None = None
    service_tiers: Mapping[str, Rates] = field(default_factory=dict)
    known: bool = True

    def __post_init__(self) -> None:
        for name, rates in self.service_tiers.items():
            if not isinstance(name, str) or not isinstance(rates, Rates):
                raise TypeError("Price.service_tiers must map tier names to Rates")
        object.__setattr__(self, "service_tiers", MappingProxyType(dict(self.service_tiers)))

    def rates_for(
        self, *, batch: bool = False, service_tier: str | None = None
    ) -> tuple[str, Rates]:
        """Return the name and the rates that apply to one way of buying this model.

        Batch API rates win over a service tier: OpenAI reports ``service_tier="default"``
        for batch results. A tier with no price of its own (``default``, ``auto``, or one
        this model does not offer) costs the standard rates, as the price source does.
        """
        if batch and self.batch is not None:
            return BATCH, self.batch
        if not batch and service_tier is not None and service_tier in self.service_tiers:
            return service_tier, self.service_tiers[service_tier]
        return STANDARD, self.standard


ZERO_PRICE = Price(standard=Rates(input=_ZERO, output=_ZERO), known=False)
"""The stand-in for an unknown model under the ``zero`` policy."""

ESTIMATE_PRICE = Price(
    standard=Rates(input=Decimal("2.5"), cached_input=Decimal("1.25"), output=Decimal("10")),
    known=False,
)
"""The default stand-in for an unknown model under the ``estimate`` policy: gpt-4o's standard
rates (USD 2.50 input, 1.25 cached input, 10 output per 1M tokens). A mid-to-high chat price,
so an unknown model's spend shows in totals and budgets instead of vanishing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """The exact cost of some usage, in Decimal USD, split the way OpenAI bills it.

    ``price_known`` is ``False`` when any part was costed with a stand-in price (an
    unknown model under the ``zero`` or ``estimate`` policy). Costs add exactly, and
    ``sum(costs)`` works.
    """

    uncached_input_usd: Decimal = _ZERO
    cached_input_usd: Decimal = _ZERO
    output_usd: Decimal = _ZERO
    price_known: bool = True

    def __post_init__(self) -> None:
        _check_rate("Cost.uncached_input_usd", self.uncached_input_usd)
        _check_rate("Cost.cached_input_usd", self.cached_input_usd)
        _check_rate("Cost.output_usd", self.output_usd)

    @property
    def input_usd(self) -> Decimal:
        """Cost of all input tokens, cached and uncached."""
        return _EXACT.add(self.uncached_input_usd, self.cached_input_usd)

    @property
    def total_usd(self) -> Decimal:
        """Cost of everything."""
        return _EXACT.add(self.input_usd, self.output_usd)

    def as_dict(self) -> dict[str, Any]:
        """Return the breakdown with amounts as plain decimal strings (JSON-ready, exact)."""
        return {
            "uncached_input_usd": format_usd(self.uncached_input_usd),
            "cached_input_usd": format_usd(self.cached_input_usd),
            "output_usd": format_usd(self.output_usd),
            "total_usd": format_usd(self.total_usd),
            "price_known": self.price_known,
        }

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            uncached_input_usd=_EXACT.add(self.uncached_input_usd, other.uncached_input_usd),
            cached_input_usd=_EXACT.add(self.cached_input_usd, other.cached_input_usd),
            output_usd=_EXACT.add(self.output_usd, other.output_usd),
            price_known=self.price_known and other.price_known,
        )

    def __radd__(self, other: object) -> Cost:
        # Lets the builtin sum() start from its default 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented


def format_usd(amount: Decimal) -> str:
    """Write an amount exactly, without trailing zeros or an exponent: ``"0.0025"``."""
    text = format(amount.normalize(_EXACT), "f")
    return "0" if text in ("-0", "0") else text


def _usd(tokens: int, usd_per_million_tokens: Decimal) -> Decimal:
    return _EXACT.scaleb(_EXACT.multiply(tokens, usd_per_million_tokens), -6)


def cost_of(
    usage: Usage, price: Price, *, batch: bool = False, service_tier: str | None = None
) -> Cost:
    """Return the exact cost of ``usage`` at ``price``.

    Args:
        usage: tokens billed for one request (or a sum of requests when the price has no
            long-context tiers: tiers apply per request).
        price: the model's price, e.g. from ``PriceTable.price_for(model)``.
        batch: the usage came from the Batch API.
        service_tier: the ``service_tier`` the response reported (``flex``, ``priority``...).

    Returns:
        The cost split into uncached input, cached input and output (reasoning included).
    """
    uncached, cached, output = _parts(usage, price, batch, service_tier)
    return Cost(
        uncached_input_usd=uncached,
        cached_input_usd=cached,
        output_usd=output,
        price_known=price.known,
    )


def total_usd_of(
    usage: Usage, price: Price, *, batch: bool = False, service_tier: str | None = None
) -> Decimal:
    """``cost_of(...).total_usd``, without building the breakdown (every call is priced)."""
    uncached, cached, output = _parts(usage, price, batch, service_tier)
    return _EXACT.add(_EXACT.add(uncached, cached), output)


def _parts(
    usage: Usage, price: Price, batch: bool, service_tier: str | None
) -> tuple[Decimal, Decimal, Decimal]:
    """Uncached input, cached input and output, in USD, at the rates that apply."""
    _, rates = price.rates_for(batch=batch, service_tier=service_tier)
    rates = rates.for_input_tokens(usage.input_tokens)
    return (
        _usd(usage.uncached_input_tokens, rates.input),
        _usd(usage.cached_input_tokens, rates.cached_input_rate),
        _usd(usage.output_tokens, rates.output),
    )
