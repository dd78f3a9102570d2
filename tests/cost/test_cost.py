"""Prices as data, exact Decimal costs, model-name resolution, policies and overrides."""

from __future__ import annotations

import decimal
import subprocess
import sys
from dataclasses import replace
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools.cost import (
    ESTIMATE_PRICE,
    UNKNOWN_PRICE_POLICIES,
    ContextTier,
    Cost,
    ModelPattern,
    Price,
    PriceMatch,
    PriceTable,
    Rates,
    cost_of,
    format_usd,
    read_price_overrides,
    usd_per_million,
)
from prismq_llmtools.errors import ConfigurationError, LLMToolsError, UnknownPriceError
from prismq_llmtools.pricing.money import total_usd_of
from prismq_llmtools.usage import Usage

D = Decimal

GPT_4O = Price(
    standard=Rates(input=D("2.5"), cached_input=D("1.25"), output=D("10")),
    batch=Rates(input=D("1.25"), cached_input=D("1.25"), output=D("5")),
    service_tiers={"priority": Rates(input=D("4.25"), cached_input=D("2.125"), output=D("17"))},
)
LONG = Price(
    standard=Rates(
        input=D("2.5"),
        cached_input=D("0.25"),
        output=D("15"),
        long_context=(
            ContextTier(
                above_input_tokens=272_000,
                rates=Rates(input=D("5"), cached_input=D("0.5"), output=D("22.5")),
            ),
        ),
    )
)
EMBEDDING = Price(standard=Rates(input=D("0.02"), output=D("0")))


def small_table(**changes: Any) -> PriceTable:
    table = PriceTable(
        prices={"gpt-4o": GPT_4O, "ft:gpt-4o-mini": EMBEDDING, "gpt-4o-mini": EMBEDDING},
        checked_on=date(2026, 11, 10),
        source="test",
        aliases={"gpt-4o-2024-08-06": "gpt-4o", "gpt-4o-mini-2024-07-18": "gpt-4o-mini"},
        patterns=(
            ModelPattern(kind="prefix", value="ft:gpt-4o-mini-2024-", model="ft:gpt-4o-mini"),
        ),
    )
    return replace(table, **changes) if changes else table


# --- hand-computed costs -------------------------------------------------------------------


def test_cost_splits_uncached_cached_and_output() -> None:
    """1000 input tokens of which 200 cached, 500 output: each part at its own rate."""
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    cost = cost_of(usage, GPT_4O)
    assert cost.uncached_input_usd == D("0.002")
    assert cost.cached_input_usd == D("0.00025")
    assert cost.output_usd == D("0.005")
    assert cost.total_usd == D("0.00725")
    assert cost.input_usd == D("0.00225")
    assert cost.price_known


def test_reasoning_tokens_are_billed_once_as_output() -> None:
    """Reasoning tokens are part of the output tokens and add nothing on top."""
    with_reasoning = Usage(input_tokens=10, output_tokens=3000, reasoning_tokens=2500)
    without = Usage(input_tokens=10, output_tokens=3000)
    assert cost_of(with_reasoning, GPT_4O) == cost_of(without, GPT_4O)
    assert cost_of(with_reasoning, GPT_4O).output_usd == D("0.03")


def test_batch_rates_apply_to_batch_usage() -> None:
    """Batch usage is costed at the batch rates, cached input included."""
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=1_000_000)
    assert cost_of(usage, GPT_4O, batch=True).total_usd == D("0.75") + D("0.5") + D("5")


def test_batch_without_batch_rates_costs_standard() -> None:
    """A model with no batch price costs the standard rates under batch."""
    usage = Usage(input_tokens=1_000_000)
    assert cost_of(usage, EMBEDDING, batch=True).total_usd == D("0.02")


def test_service_tier_rates_apply_when_priced() -> None:
    """A priced service tier uses its rates; an unpriced or default one costs standard."""
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_of(usage, GPT_4O, service_tier="priority").total_usd == D("21.25")
    assert cost_of(usage, GPT_4O, service_tier="flex").total_usd == D("12.5")
    assert cost_of(usage, GPT_4O, service_tier="default").total_usd == D("12.5")


def test_batch_wins_over_service_tier() -> None:
    """Batch results report a service tier too; the batch rates apply."""
    usage = Usage(input_tokens=1_000_000)
    assert cost_of(usage, GPT_4O, batch=True, service_tier="priority").total_usd == D("1.25")
    assert GPT_4O.rates_for(batch=True, service_tier="priority")[0] == "batch"


def test_long_context_tier_is_a_cliff_on_input_tokens() -> None:
    """Above the threshold the whole request pays the tier rates; at it, the base rates."""
    at = Usage(input_tokens=272_000, output_tokens=1000)
    above = Usage(input_tokens=300_000, output_tokens=1000)
    assert cost_of(at, LONG).total_usd == D("0.68") + D("0.015")
    assert cost_of(above, LONG).total_usd == D("1.5") + D("0.0225")


def test_embeddings_cost_input_only() -> None:
    """An embedding request is billed for its input tokens."""
    assert cost_of(Usage(input_tokens=1234), EMBEDDING).total_usd == D("0.00002468")


def test_costs_are_exact_whatever_the_callers_decimal_context() -> None:
    """A low-precision thread context cannot round a cost."""
    usage = Usage(input_tokens=123_456_789, output_tokens=987_654_321)
    with decimal.localcontext(prec=3):
        cost = cost_of(usage, GPT_4O)
        total = cost.total_usd
    assert total == D("10185.1851825")


def test_cost_sum_and_unknown_flag() -> None:
    """sum() adds costs exactly and one stand-in price marks the total as not known."""
    known = Cost(uncached_input_usd=D("0.1"), output_usd=D("0.2"))
    stand_in = Cost(cached_input_usd=D("0.3"), price_known=False)
    total = sum([known, known, stand_in])
    assert isinstance(total, Cost)
    assert total.total_usd == D("0.9")
    assert not total.price_known
    assert (known + known).price_known


def test_cost_as_dict_is_exact_text() -> None:
    """The breakdown writes amounts as plain decimal strings, never floats or exponents."""
    cost = cost_of(Usage(input_tokens=10, output_tokens=1_000_000), GPT_4O)
    assert cost.as_dict() == {
        "uncached_input_usd": "0.000025",
        "cached_input_usd": "0",
        "output_usd": "10",
        "total_usd": "10.000025",
        "price_known": True,
    }
    assert format_usd(D("1E+2")) == "100"


def test_rates_reject_floats_and_negative_prices() -> None:
    """Prices are Decimal and non-negative; tiers must be sorted."""
    with pytest.raises(TypeError):
        Rates(input=0.1, output=D("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        Rates(input=D("-1"), output=D("1"))
    with pytest.raises(ValueError, match="non-negative"):
        Rates(input=D("NaN"), output=D("1"))
    tier = ContextTier(above_input_tokens=10, rates=Rates(input=D(1), output=D(1)))
    with pytest.raises(ValueError, match="sorted"):
        Rates(input=D(1), output=D(1), long_context=(tier, tier))
    with pytest.raises(ValueError, match="negative"):
        Cost(output_usd=D("-0.1"))


def test_usd_per_million_reads_what_people_write() -> None:
    """Ints, floats (by their shortest repr), strings and Decimals become exact Decimals."""
    assert usd_per_million(0.15) == D("0.15")
    assert usd_per_million("0.075") == D("0.075")
    assert usd_per_million(2) == D(2)
    for bad in (True, -1, "abc", float("inf"), None):
        with pytest.raises(ValueError, match="expected a"):
            usd_per_million(bad)


# --- properties ----------------------------------------------------------------------------

rates_values = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    input_tokens = draw(st.integers(0, 10**9))
    output_tokens = draw(st.integers(0, 10**9))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=draw(st.integers(0, input_tokens)),
        reasoning_tokens=draw(st.integers(0, output_tokens)),
    )


@st.composite
def prices(draw: st.DrawFn) -> Price:
    def rates() -> Rates:
        cached = draw(st.none() | rates_values)
        return Rates(input=draw(rates_values), output=draw(rates_values), cached_input=cached)

    return Price(
        standard=rates(),
        batch=draw(st.none()) if draw(st.booleans()) else rates(),
        service_tiers={"flex": rates()} if draw(st.booleans()) else {},
    )


@given(usages(), usages(), prices(), st.booleans(), st.sampled_from([None, "flex", "priority"]))
def test_costs_add_exactly(
    a: Usage, b: Usage, price: Price, batch: bool, service_tier: str | None
) -> None:
    """cost(a) + cost(b) == cost(a + b), to the last digit."""
    apart = cost_of(a, price, batch=batch, service_tier=service_tier) + cost_of(
        b, price, batch=batch, service_tier=service_tier
    )
    together = cost_of(a + b, price, batch=batch, service_tier=service_tier)
    assert apart == together
    assert apart.total_usd == together.total_usd


@given(usages(), prices())
def test_cached_and_reasoning_tokens_are_never_double_counted(usage: Usage, price: Price) -> None:
    """The total equals uncached x input + cached x cached rate + output x output rate."""
    rates = price.standard
    expected = (
        Fraction(usage.input_tokens - usage.cached_input_tokens) * Fraction(rates.input)
        + Fraction(usage.cached_input_tokens) * Fraction(rates.cached_input_rate)
        + Fraction(usage.output_tokens) * Fraction(rates.output)
    ) / 1_000_000
    cost = cost_of(usage, price)
    assert Fraction(cost.total_usd) == expected
    assert cost == cost_of(replace(usage, reasoning_tokens=0), price)


@given(usages(), prices(), st.booleans(), st.sampled_from([None, "flex", "priority"]))
def test_total_without_breakdown_is_the_breakdowns_total(
    usage: Usage, price: Price, batch: bool, service_tier: str | None
) -> None:
    """total_usd_of (what each call is priced with) is cost_of's total, digit for digit."""
    total = total_usd_of(usage, price, batch=batch, service_tier=service_tier)
    expected = cost_of(usage, price, batch=batch, service_tier=service_tier).total_usd
    assert (total, str(total)) == (expected, str(expected))


@given(usages(), prices(), st.booleans())
def test_costs_are_never_negative(usage: Usage, price: Price, batch: bool) -> None:
    """Every part of a cost is zero or more."""
    cost = cost_of(usage, price, batch=batch)
    assert min(cost.uncached_input_usd, cost.cached_input_usd, cost.output_usd) >= 0


# --- price tables --------------------------------------------------------------------------


def test_resolution_order_and_how() -> None:
    """Ids, aliases, patterns, fine-tuned names and unknown snapshots resolve as documented."""
    table = small_table()
    assert table.resolve("GPT-4o") == PriceMatch(model="gpt-4o", how="exact")
    assert table.resolve("gpt-4o-2024-08-06") == PriceMatch(model="gpt-4o", how="alias")
    assert table.resolve("gpt-4o-20240806") == PriceMatch(model="gpt-4o", how="alias")
    assert table.resolve("ft:gpt-4o-mini-2024-07-18:org::abc") == PriceMatch(
        model="ft:gpt-4o-mini", how="pattern"
    )
    assert table.resolve("ft:gpt-4o-mini:org::abc") == PriceMatch(
        model="ft:gpt-4o-mini", how="fine-tune"
    )
    assert table.resolve("ft:gpt-4o:org::abc") == PriceMatch(model="gpt-4o", how="base")
    assert table.resolve("gpt-4o-2031-01-01") == PriceMatch(model="gpt-4o", how="base")
    assert table.resolve("gpt-4o-0613") == PriceMatch(model="gpt-4o", how="base")
    assert table.resolve("ft:nothing:org::abc") is None
    assert table.resolve("gpt-9") is None


def test_table_is_a_frozen_mapping_of_canonical_ids() -> None:
    """Iteration lists the canonical ids; lookup resolves; the data cannot be changed."""
    table = small_table()
    assert sorted(table) == ["ft:gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert len(table) == 3
    assert table["gpt-4o-2024-08-06"] is GPT_4O
    assert "gpt-4o-2024-08-06" in table
    assert table.get("gpt-9") is None
    with pytest.raises(TypeError):
        table.prices["x"] = GPT_4O  # type: ignore[index]


def test_table_rejects_dangling_aliases() -> None:
    """An alias must point to a priced model."""
    with pytest.raises(ValueError, match="no price"):
        PriceTable(prices={}, checked_on=date(2026, 1, 1), aliases={"a": "b"})


def test_unknown_model_raises_by_default() -> None:
    """The raise policy raises UnknownPriceError, a KeyError naming the model."""
    with pytest.raises(UnknownPriceError, match="gpt-9") as raised:
        small_table().price_for("gpt-9")
    assert isinstance(raised.value, KeyError)
    assert isinstance(raised.value, LLMToolsError)
    assert raised.value.model == "gpt-9"
    assert 'prices."gpt-9"' in str(raised.value)


def test_unknown_model_zero_policy_is_flagged_not_silent() -> None:
    """The zero policy costs $0 and says the price was not known."""
    cost = cost_of(
        Usage(input_tokens=5000, output_tokens=10), small_table().price_for("gpt-9", unknown="zero")
    )
    assert cost.total_usd == 0
    assert not cost.price_known


def test_unknown_model_estimate_policy_uses_the_documented_estimate() -> None:
    """The estimate policy costs at gpt-4o's standard rates, flagged as not known."""
    price = small_table().price_for("gpt-9", unknown="estimate")
    assert price.standard == ESTIMATE_PRICE.standard
    cost = cost_of(Usage(input_tokens=1_000_000, output_tokens=1_000_000), price)
    assert cost.total_usd == D("12.5")
    assert not cost.price_known


def test_custom_estimate_is_always_marked_unknown() -> None:
    """An estimate price supplied as known is still reported as a stand-in."""
    table = small_table(estimate=EMBEDDING)
    assert table.estimate.known is False
    assert table.price_for("gpt-9", unknown="estimate").standard == EMBEDDING.standard


def test_known_model_ignores_the_policy_and_bad_policy_fails() -> None:
    """A known model gets its price under every policy; a misspelt policy is an error."""
    table = small_table()
    for policy in UNKNOWN_PRICE_POLICIES:
        assert table.price_for("gpt-4o", unknown=policy) is GPT_4O
    with pytest.raises(ValueError, match="unknown must be one of"):
        table.price_for("gpt-4o", unknown="ignore")  # type: ignore[arg-type]


# --- overrides -----------------------------------------------------------------------------


def test_override_adds_a_model() -> None:
    """A [prices."my-model"] table prices a new model, cached input included."""
    table = small_table().with_overrides(
        {"My-Model": {"input": 1.0, "cached_input": 0.5, "output": 4.0}}
    )
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=500_000, output_tokens=1_000_000)
    assert cost_of(usage, table["my-model"]).total_usd == D("0.5") + D("0.25") + D("4")
    assert table.resolve("my-model") == PriceMatch(model="my-model", how="override")
    assert table.overrides == {"my-model"}
    assert table.checked_on == date(2026, 11, 10)


def test_override_of_a_canonical_id_applies_to_its_aliases() -> None:
    """Overriding gpt-4o reprices its dated snapshots too, and drops its batch rates."""
    table = small_table().with_overrides({"gpt-4o": {"input": "3", "output": "12"}})
    price = table["gpt-4o-2024-08-06"]
    assert price.standard == Rates(input=D(3), output=D(12))
    assert price.batch is None
    assert small_table()["gpt-4o"] is GPT_4O  # the original table is unchanged


def test_override_batch_discount_and_service_tiers() -> None:
    """batch_discount takes a fraction off every rate; service tiers get their own rates."""
    price = small_table().with_overrides(
        {
            "m": {
                "input": 2,
                "cached_input": 1,
                "output": 8,
                "batch_discount": 0.5,
                "service_tiers": {"flex": {"input": 1, "output": 4}},
            }
        }
    )["m"]
    assert price.batch == Rates(input=D(1), cached_input=D("0.5"), output=D(4))
    assert price.service_tiers["flex"] == Rates(input=D(1), output=D(4))


def test_override_batch_rates_table() -> None:
    """A batch table gives explicit batch rates."""
    price = small_table().with_overrides(
        {"m": {"input": 2, "output": 8, "batch": {"input": 1.5, "output": 6}}}
    )["m"]
    assert price.batch == Rates(input=D("1.5"), output=D(6))


def test_empty_overrides_return_the_same_table() -> None:
    """No overrides, no new table."""
    table = small_table()
    assert table.with_overrides({}) is table


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"inptu": 1, "output": 1}, 'prices."m".inptu: unknown key'),
        ({"input": 1}, 'prices."m".output: missing'),
        ({"input": -1, "output": 1}, 'prices."m".input: expected a finite, non-negative'),
        ({"input": True, "output": 1}, 'prices."m".input: expected a number'),
        ({"input": "abc", "output": 1}, 'prices."m".input: expected a number'),
        ({"input": float("nan"), "output": 1}, 'prices."m".input: expected a finite'),
        ({"input": 1, "output": 1, "batch_discount": 1.5}, 'prices."m".batch_discount'),
        (
            {"input": 1, "output": 1, "batch_discount": 0.5, "batch": {"input": 1, "output": 1}},
            "not both",
        ),
        ({"input": 1, "output": 1, "batch": {"input": 1}}, 'prices."m".batch.output: missing'),
        (
            {"input": 1, "output": 1, "service_tiers": {"flex": {"input": 1, "outptu": 1}}},
            'prices."m".service_tiers.flex.outptu: unknown key',
        ),
        ({"input": 1, "output": 1, "service_tiers": 3}, 'prices."m".service_tiers: expected a'),
        (3, 'prices."m": expected a table'),
    ],
)
def test_bad_overrides_name_the_model_and_key(entry: Any, message: str) -> None:
    """Every invalid override raises ConfigurationError naming the model and the key."""
    with pytest.raises(ConfigurationError) as raised:
        small_table().with_overrides({"m": entry})
    assert message in str(raised.value)


def test_overrides_must_be_a_table_of_distinct_names() -> None:
    """The [prices] value must be a table; names differing only in case clash."""
    with pytest.raises(ConfigurationError, match="table of model names"):
        small_table().with_overrides([("m", {})])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="given twice"):
        small_table().with_overrides(
            {"M": {"input": 1, "output": 1}, "m": {"input": 1, "output": 1}}
        )


def test_read_price_overrides_from_settings_and_pyproject(tmp_path: Path) -> None:
    """The [prices] table is read from a settings file or pyproject's tool section."""
    settings = tmp_path / "llmtools.toml"
    settings.write_text('[prices."my-model"]\ninput = 1.0\ncached_input = 0.5\noutput = 4.0\n')
    assert read_price_overrides(settings) == {
        "my-model": {"input": 1.0, "cached_input": 0.5, "output": 4.0}
    }
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.prismq_llmtools.prices."x"]\ninput = 1\noutput = 2\n')
    assert read_price_overrides(pyproject) == {"x": {"input": 1, "output": 2}}
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert read_price_overrides(empty) == {}


def test_read_price_overrides_errors_name_the_file(tmp_path: Path) -> None:
    """A missing or malformed file, or a non-table [prices], is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"missing\.toml"):
        read_price_overrides(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[prices\n")
    with pytest.raises(ConfigurationError, match=r"broken\.toml"):
        read_price_overrides(broken)
    scalar = tmp_path / "scalar.toml"
    scalar.write_text("prices = 3\n")
    with pytest.raises(ConfigurationError, match="must be a table"):
        read_price_overrides(scalar)


def test_importing_cost_loads_no_openai_tokenizer_or_price_source() -> None:
    """prismq_llmtools.cost imports neither openai, tiktoken nor genai_prices."""
    code = (
        "import sys, prismq_llmtools.cost, prismq_llmtools.cli.cost\n"
        "loaded = {'openai', 'tiktoken', 'genai_prices'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
