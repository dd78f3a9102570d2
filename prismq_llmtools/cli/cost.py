"""``prismq-llmtools cost --model M --input-tokens N ...``: the USD cost of some usage."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from prismq_llmtools.cost import format_usd

if TYPE_CHECKING:
    from prismq_llmtools.cost import Cost, PriceMatch, PriceTable, Rates
    from prismq_llmtools.usage import Usage

__all__ = ["register", "run"]


def _tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``cost`` subcommand to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cost",
        help="print the USD cost of a request's token usage",
        description=(
            "Print what OpenAI bills for some token usage, from the bundled price snapshot "
            "plus the [prices] table of your settings file. Cached tokens are part of the "
            "input tokens and reasoning tokens part of the output tokens, as OpenAI reports them."
        ),
    )
    parser.add_argument("--model", required=True, help="model name, e.g. gpt-4o-mini")
    parser.add_argument("--input-tokens", type=_tokens, required=True, metavar="N")
    parser.add_argument("--output-tokens", type=_tokens, default=0, metavar="N")
    parser.add_argument(
        "--cached-tokens", type=_tokens, default=0, metavar="N", help="input tokens from cache"
    )
    parser.add_argument(
        "--reasoning-tokens",
        type=_tokens,
        default=0,
        metavar="N",
        help="output tokens spent on reasoning",
    )
    parser.add_argument("--batch", action="store_true", help="price as a Batch API request")
    parser.add_argument(
        "--service-tier", metavar="T", help="service_tier the response reported, e.g. flex"
    )
    parser.add_argument(
        "--unknown",
        choices=("raise", "zero", "estimate"),
        default="raise",
        help="what to do for a model with no known price (default: raise, exit status 1)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=(
            "TOML file whose [prices] table overrides prices (default: the decorators' settings"
            " file, $PRISMQ_LLMTOOLS_CONFIG or [tool.prismq_llmtools] in ./pyproject.toml)"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="print the breakdown as JSON"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Cost the usage described by ``args`` and print it; return the exit status."""
    from prismq_llmtools.cost import cost_of
    from prismq_llmtools.errors import ConfigurationError, UnknownPriceError
    from prismq_llmtools.openai.prices import openai_prices
    from prismq_llmtools.usage import Usage

    try:
        usage = Usage(
            input_tokens=args.input_tokens,
            output_tokens=args.output_tokens,
            cached_input_tokens=args.cached_tokens,
            reasoning_tokens=args.reasoning_tokens,
        )
    except ValueError as error:
        print(f"prismq-llmtools cost: {error}", file=sys.stderr)
        return 2
    try:
        table = openai_prices().with_overrides(_overrides(args.config))
        price = table.price_for(args.model, unknown=args.unknown)
    except (ConfigurationError, UnknownPriceError) as error:
        print(f"prismq-llmtools cost: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigurationError) else 1
    if not price.known:
        print(
            f"prismq-llmtools cost: warning: no price is known for {args.model!r};"
            f" costed with the {args.unknown} stand-in price",
            file=sys.stderr,
        )
    name, rates = price.rates_for(batch=args.batch, service_tier=args.service_tier)
    rates = rates.for_input_tokens(usage.input_tokens)
    cost = cost_of(usage, price, batch=args.batch, service_tier=args.service_tier)
    match = table.resolve(args.model) if price.known else None
    if args.as_json:
        print(json.dumps(_breakdown(args.model, match, name, rates, usage, cost, table), indent=2))
    else:
        print(_text(args.model, match, name, rates, usage, cost, table))
    return 0


def _overrides(config: str | None) -> Any:
    """The [prices] table of ``config``, else of the settings file the decorators read."""
    if config:
        from prismq_llmtools.cost import read_price_overrides

        return read_price_overrides(config)
    from prismq_llmtools.settings import load_settings

    return load_settings().sections.get("prices") or {}


def _breakdown(
    model: str,
    match: PriceMatch | None,
    rates_name: str,
    rates: Rates,
    usage: Usage,
    cost: Cost,
    table: PriceTable,
) -> dict[str, Any]:
    return {
        "model": model,
        "priced_as": None if match is None else match.model,
        "match": "unknown" if match is None else match.how,
        "rates": rates_name,
        "usd_per_million_tokens": {
            "input": format_usd(rates.input),
            "cached_input": format_usd(rates.cached_input_rate),
            "output": format_usd(rates.output),
        },
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        **cost.as_dict(),
        "prices_checked_on": table.checked_on.isoformat(),
        "price_source": table.source,
    }


def _text(
    model: str,
    match: PriceMatch | None,
    rates_name: str,
    rates: Rates,
    usage: Usage,
    cost: Cost,
    table: PriceTable,
) -> str:
    if match is None:
        priced_as = "no known price, stand-in"
    elif match.model == model.strip().lower():
        priced_as = match.how
    else:
        priced_as = f"priced as {match.model} ({match.how})"
    reasoning = f" (of which {usage.reasoning_tokens} reasoning)" if usage.reasoning_tokens else ""
    rows = [
        ("uncached input", usage.uncached_input_tokens, rates.input, cost.uncached_input_usd, ""),
        (
            "cached input",
            usage.cached_input_tokens,
            rates.cached_input_rate,
            cost.cached_input_usd,
            "",
        ),
        ("output", usage.output_tokens, rates.output, cost.output_usd, reasoning),
    ]
    lines = [f"{model}: {priced_as}, {rates_name} rates (USD per 1M tokens)"]
    for label, tokens, rate, usd, note in rows:
        lines.append(
            f"  {label:<15}{tokens:>12} tokens at {format_usd(rate):>8}  ${format_usd(usd)}{note}"
        )
    lines.append(f"  {'total':<15}{'':>31}  ${format_usd(cost.total_usd)}")
    lines.append(f"prices checked {table.checked_on.isoformat()} ({table.source})")
    return "\n".join(lines)
