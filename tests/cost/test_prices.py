"""The OpenAI price table built from genai-prices: same costs, same names, offline, dated."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import Provider

from prismq_llmtools.cost import PriceMatch, PriceTable, cost_of
from prismq_llmtools.openai.prices import load_openai_prices, openai_prices
from prismq_llmtools.usage import Usage

D = Decimal
AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

MATRIX_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "gpt-3.5-turbo",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18",
    "gpt-4.1-2025-04-14",
    "o3-2025-04-16",
    "gpt-5-2025-08-07",
    "gpt-3.5-turbo-0125",
    "ft:gpt-4o-mini-2024-07-18:acme::abc123",
    "gpt-5.4",
]
USAGES = {
    "plain": Usage(input_tokens=1200, output_tokens=300),
    "cached": Usage(input_tokens=5000, cached_input_tokens=3968, output_tokens=250),
    "reasoning": Usage(input_tokens=900, output_tokens=4000, reasoning_tokens=3500),
    "long": Usage(input_tokens=300_000, cached_input_tokens=100_000, output_tokens=2000),
}
CONTEXTS: dict[str, tuple[bool, str | None]] = {
    "standard": (False, None),
    "batch": (True, None),
    "flex": (False, "flex"),
    "priority": (False, "priority"),
    "default": (False, "default"),
}


@cache
def table() -> PriceTable:
    return load_openai_prices(as_of=AS_OF)


@cache
def source_provider() -> Provider:
    return next(p for p in get_snapshot().providers if p.id == "openai")


def source_usage(usage: Usage) -> genai_prices.Usage:
    return genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


def source_context(batch: bool, service_tier: str | None) -> dict[str, str] | None:
    context = {"processing": "batch"} if batch else {}
    if service_tier is not None:
        context["service_tier"] = service_tier
    return context or None


def source_total(
    usage: Usage, model: str, batch: bool, service_tier: str | None
) -> genai_prices.types.PriceCalculation:
    return genai_prices.calc_price(
        source_usage(usage),
        model,
        provider_id="openai",
        genai_request_timestamp=AS_OF,
        price_context=source_context(batch, service_tier),
    )


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("shape", list(USAGES))
@pytest.mark.parametrize("model", MATRIX_MODELS)
def test_costs_equal_the_price_source(model: str, shape: str, context: str) -> None:
    """For each model, usage shape, batch and service tier our cost is the source's, exactly."""
    usage = USAGES[shape]
    batch, service_tier = CONTEXTS[context]
    ours = cost_of(usage, table()[model], batch=batch, service_tier=service_tier)
    theirs = source_total(usage, model, batch, service_tier)
    assert ours.total_usd == theirs.total_price
    assert ours.input_usd == theirs.input_price
    assert ours.output_usd == theirs.output_price
    assert ours.price_known


def test_every_token_priced_openai_model_costs_what_the_source_says() -> None:
    """Every model in the table, in every context it prices, matches the source."""
    contexts = [(False, None), (True, None), (False, "flex"), (False, "priority"), (False, "fast")]
    provider = source_provider()
    by_id = {model.id.lower(): model for model in provider.models}
    for model_id in table():
        for usage in USAGES.values():
            for batch, tier in contexts:
                ours = cost_of(usage, table()[model_id], batch=batch, service_tier=tier)
                theirs = by_id[model_id].calc_price(
                    source_usage(usage),
                    provider,
                    genai_request_timestamp=AS_OF,
                    price_context=source_context(batch, tier),
                )
                assert ours.total_usd == theirs.total_price, (model_id, usage, batch, tier)


@pytest.mark.parametrize(
    ("model", "usage", "batch", "tier", "expected"),
    [
        (
            "gpt-4o",
            Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500),
            False,
            None,
            "0.00725",
        ),
        ("gpt-4o-mini", Usage(input_tokens=10**6, output_tokens=10**6), True, None, "0.375"),
        ("o3", Usage(input_tokens=10**6, output_tokens=10**6), False, "flex", "5"),
        (
            "gpt-5",
            Usage(
                input_tokens=2000,
                cached_input_tokens=1000,
                output_tokens=3000,
                reasoning_tokens=2500,
            ),
            False,
            None,
            "0.031375",
        ),
        ("text-embedding-3-small", Usage(input_tokens=1234), False, None, "0.00002468"),
        ("gpt-5.4", Usage(input_tokens=300_000, output_tokens=1000), False, None, "1.5225"),
    ],
)
def test_hand_computed_costs(
    model: str, usage: Usage, batch: bool, tier: str | None, expected: str
) -> None:
    """A few costs worked out by hand from the published per-1M-token prices."""
    assert cost_of(usage, table()[model], batch=batch, service_tier=tier).total_usd == D(expected)


def source_names() -> list[str]:
    names: set[str] = set()

    def walk(clause: object) -> None:
        for inner in getattr(clause, "or_", ()):
            walk(inner)
        if (equals := getattr(clause, "equals", None)) is not None:
            names.add(equals)

    for model in source_provider().models:
        names.add(model.id)
        walk(model.match)
    return sorted(names)


PATTERN_NAMES = [
    "ft:gpt-4o-2024-08-06:acme:support:abc",
    "ft:gpt-3.5-turbo-0125:acme::abc",
    "ft:gpt-4-0613:acme::abc",
    "gpt-4o-audio-preview-2024-12-17",
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-5-nano-2025-08-07",
    "gpt-5.6-sol-2026-09-01",
    "gpt-5.2-20251211",
    "omni-moderation-latest",
    "gpt-4.5-preview-2025-02-27",
    "computer-use-preview",
]


def test_model_names_resolve_as_the_source_resolves_them() -> None:
    """Every name the source lists, and names its rules cover, lead to the same model."""
    for name in [*source_names(), *PATTERN_NAMES]:
        source_model = source_provider().find_model(name)
        match = table().resolve(name)
        if source_model is None:
            # An id no rule of the source covers (e.g. ``ft:gpt-4o``): it names itself here.
            assert match == PriceMatch(model=name.lower(), how="exact"), name
            continue
        expected = source_model.id.lower() if source_model.id.lower() in table().prices else None
        assert (None if match is None else match.model) == expected, name


def test_names_the_source_does_not_know_fall_back_to_the_base_model() -> None:
    """Unknown dated snapshots and fine-tuned names get the base (or fine-tuning) price."""
    assert table().resolve("gpt-4.1-mini-2031-01-01") == PriceMatch(
        model="gpt-4.1-mini", how="base"
    )
    assert table().resolve("ft:gpt-4o-mini:acme::abc") == PriceMatch(
        model="ft:gpt-4o-mini", how="fine-tune"
    )
    assert table().resolve("ft:gpt-4.1-2025-04-14:acme::abc") == PriceMatch(
        model="gpt-4.1", how="base"
    )


def test_models_billed_in_other_units_are_unknown_not_free() -> None:
    """Speech and transcription models (characters, audio hours) have no token price here."""
    for model in ("tts-1", "whisper-1"):
        assert model not in table()
    assert cost_of(Usage(input_tokens=10**6), table()["omni-moderation-latest"]).total_usd == 0


def test_snapshot_date_and_source() -> None:
    """The table says which genai-prices release it comes from and when it was checked."""
    version = genai_prices.__version__
    assert table().source.startswith(f"genai-prices {version}")
    assert table().checked_on >= date(2026, 11, 10)
    if version == "0.2.3":
        assert table().checked_on == date(2026, 11, 10)


def test_default_table_is_built_once() -> None:
    """openai_prices() builds the table at first use and then returns the same object."""
    assert openai_prices() is openai_prices()
    assert openai_prices().prices.keys() == table().prices.keys()


def test_prices_are_read_offline_and_lazily() -> None:
    """Importing the adapter loads no price data; building the table opens no connection."""
    code = """
import socket, sys, threading

def refuse(*args, **kwargs):
    raise AssertionError("network used")

socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

import prismq_llmtools.openai.prices as prices
assert "genai_prices" not in sys.modules
table = prices.openai_prices()
assert "gpt-4o" in table
assert threading.active_count() == 1, threading.enumerate()
"""
    subprocess.run([sys.executable, "-c", code], check=True)
