"""Costing a finished Call from its actual usage, with the process's price table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from prismq_llmtools import _state, events
from prismq_llmtools.call import Call
from prismq_llmtools.pricing.money import total_usd_of
from prismq_llmtools.settings import register_section, settings

if TYPE_CHECKING:
    from prismq_llmtools.pricing.money import Price
    from prismq_llmtools.pricing.table import PriceTable

__all__ = ["UnknownPrice", "cost_call", "price_table", "set_price_table"]

UnknownPrice = Literal["raise", "zero", "estimate"]

register_section("prices")  # the settings file's [prices."model"] tables

ESTIMATE_MODEL = "gpt-4o"
"""The model whose standard rates price an unknown model under the ``estimate`` policy."""


def _default_table() -> PriceTable:
    from prismq_llmtools.pricing.snapshot import openai_prices

    table = openai_prices()
    overrides = settings().sections.get("prices")
    return table.with_overrides(overrides) if overrides else table


_table: _state.Slot[PriceTable] = _state.Slot("price table", _default_table)
_resolved: _state.Memo[tuple[int, str], Price | None] = _state.Memo("known prices")


def price_table() -> PriceTable:
    """The price table in use: the maintained snapshot plus the settings file's ``[prices]``."""
    return _table.get()


def set_price_table(table: PriceTable | None) -> None:
    """Install ``table`` for every site (``None``: reload the default on next use)."""
    _table.set(table)
    _resolved.clear()


def _known_price(table: PriceTable, model: str) -> Price | None:
    """The table's price for ``model`` (None if unknown), resolved once per model name."""
    key = (id(table), model)
    try:
        return _resolved[key]
    except KeyError:
        pass
    if len(_resolved) > 4096:  # model names are few; bound it anyway
        _resolved.clear()
    price = _resolved[key] = table.get(model)
    return price


def cost_call(call: Call, *, unknown: UnknownPrice = "estimate") -> None:
    """Set ``call.cost_usd`` from ``call.usage``; an unknown model emits ``llm.price.unknown``."""
    usage = call.usage
    answered, asked = call.response_model, call.model
    if usage is None or not (answered or asked) or call.usage_source == "cache":
        return
    table = price_table()
    # The model that answered, else the one asked for.
    price = _known_price(table, answered) if answered else None
    model = answered
    if price is None and asked:
        price = _known_price(table, asked)
        if price is not None or not answered:
            model = asked
    if price is None:
        price = table.price_for(model or "", unknown=unknown)
    call.cost_usd = total_usd_of(usage, price, batch=call.batch_api, service_tier=call.service_tier)
    call.price_known = price.known
    if not price.known:
        call.price_stand_in = _stand_in(table, price)
        if _first_warning(model or ""):
            events.emit(
                call,
                events.PRICE_UNKNOWN,
                level="warning",
                **{
                    "gen_ai.request.model": model,
                    "policy": unknown,
                    "price_stand_in": call.price_stand_in,
                    "fix": f'[prices."{model}"] input = ..., output = ... (USD per 1M tokens)'
                    " in the settings file",
                },
            )


def _stand_in(table: PriceTable, price: Price) -> str:
    """What an unknown model was priced as: ``gpt-4o`` (the default estimate), ``zero``, or
    ``estimate`` (a table's own stand-in)."""
    from prismq_llmtools.pricing.money import ESTIMATE_PRICE

    if price is table.estimate:
        return ESTIMATE_MODEL if price == ESTIMATE_PRICE else "estimate"
    return "zero"


_warned: _state.Memo[str, object] = _state.Memo("unknown prices warned")
"""The models already warned about in this process: one warning per model."""


def _first_warning(model: str) -> bool:
    token = object()
    return _warned.setdefault(model, token) is token  # atomic: one thread wins
